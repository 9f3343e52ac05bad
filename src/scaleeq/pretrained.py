"""Built-in pretrained models shipped inside the package.

``scaleeq.pretrained("edsr-star-cbsd")`` returns a ready :class:`~scaleeq.ArbitraryScaleSR`;
``scaleeq upscale`` uses it when no ``--checkpoint`` is given. The weights are package data
(safetensors, fp16 storage, loaded as fp32); reading them needs the ``safetensors`` package.
See docs/pretrained.md for the model card (data, recipe, quality, limits).
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .retrofit import ArbitraryScaleSR

__all__ = ["DEFAULT_MODEL", "PRETRAINED", "pretrained"]

#: name -> (file in scaleeq/weights, one-line description)
PRETRAINED: dict[str, tuple[str, str]] = {
    "edsr-star-cbsd": (
        "edsr_star_cbsd.safetensors",
        "EDSR* (48 channels, 12 blocks, 4 AFE blocks, Neural Kriging tail over a bicubic skip), "
        "trained on the CPU on CBSD68 + scikit-image photographs, r ~ U(1, 4)",
    ),
}
DEFAULT_MODEL = "edsr-star-cbsd"


def pretrained(
    name: str = DEFAULT_MODEL, *, map_location: str | torch.device = "cpu"
) -> ArbitraryScaleSR:
    """Load a built-in pretrained arbitrary-scale model (in eval mode).

    Args:
        name: one of :data:`PRETRAINED` (default ``"edsr-star-cbsd"``).
        map_location: device to load onto.

    Raises:
        ValueError: unknown ``name``.
        ImportError: the ``safetensors`` package is missing (``pip install safetensors``, or
            ``pip install 'scaleeq[examples]'``).

    Example:
        >>> import torch, scaleeq
        >>> model = scaleeq.pretrained()
        >>> scaleeq.upscale(model, torch.rand(1, 3, 16, 12), scale=3.3).shape
        torch.Size([1, 3, 53, 40])
    """
    if name not in PRETRAINED:
        raise ValueError(f"name must be one of {sorted(PRETRAINED)}, got {name!r}")
    try:
        import safetensors  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "the built-in models are stored as safetensors: pip install safetensors "
            "(or pip install 'scaleeq[examples]')"
        ) from e
    from .retrofit import load

    ref = resources.files("scaleeq") / "weights" / PRETRAINED[name][0]
    with resources.as_file(ref) as path:
        return load(path, map_location=map_location).eval()
