"""spandrel integration: load scaleeq's own files in spandrel-based applications.

spandrel (the model loader behind chaiNNer and ComfyUI) reads a state dict and asks each
registered architecture whether it recognises it. :func:`register` adds scaleeq's files to a
registry (spandrel's ``MAIN_REGISTRY`` by default), following the pattern of
spandrel_extra_arches: afterwards ``spandrel.ModelLoader().load_from_file("model.safetensors")``
returns an ``ImageModelDescriptor`` for a file written by :meth:`scaleeq.ArbitraryScaleSR.save`.

The descriptor's model renders at one nominal integer scale (spandrel's contract: an output of
``scale`` times the input); :func:`scaleeq.upscale` accepts the descriptor itself and renders
it at any scale::

    import spandrel, scaleeq, scaleeq.spandrel
    scaleeq.spandrel.register()
    desc = spandrel.ModelLoader().load_from_file("edsr_star.safetensors")
    y4 = desc(x)                                   # spandrel's call: the nominal x4
    y = scaleeq.upscale(desc, x, scale=3.3)        # any scale

Needs the ``spandrel`` package (``pip install spandrel``); scaleeq itself does not.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .retrofit.format import META_KEY, meta_from_tensor
from .retrofit.io import from_parts
from .retrofit.model import ArbitraryScaleSR

__all__ = ["ARCH_ID", "FixedScale", "register", "unwrap"]

#: The architecture id scaleeq's files get in spandrel.
ARCH_ID = "ScaleEQ"


class FixedScale(nn.Module):
    """An arbitrary-scale model called at one fixed scale: ``forward(x)`` is
    ``model(x, scale=scale)`` (what a spandrel descriptor calls).

    Shape:
        - x: ``(B, 3, h, w)`` in [0, 1].
        - output: ``(B, 3, round(h * scale), round(w * scale))``.
    """

    def __init__(self, model: ArbitraryScaleSR, scale: int) -> None:
        super().__init__()
        self.model = model
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, scale=self.scale)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load a scaleeq file's state dict (its ``backbone.*`` / ``upsampler.*`` keys; the
        metadata tensor and the stored source tail are not weights of this module)."""
        weights = {
            k: v for k, v in state_dict.items() if k != META_KEY and not k.startswith("source.")
        }
        return self.model.load_state_dict(weights, strict=strict, assign=assign)


def _spandrel() -> Any:
    from ._torchvision import import_spandrel

    return import_spandrel("scaleeq.spandrel")


def _make_arch(spandrel: Any, scale: int) -> Any:
    from spandrel import Architecture, ImageModelDescriptor, ModelTiling

    class _ScaleEQArch(Architecture[FixedScale]):
        """scaleeq's ``ArbitraryScaleSR`` files (recognised by their metadata tensor)."""

        def __init__(self) -> None:
            super().__init__(
                id=ARCH_ID, name="scaleeq ArbitraryScaleSR", detect=lambda sd: META_KEY in sd
            )

        def load(self, state_dict: dict[str, torch.Tensor]) -> ImageModelDescriptor[FixedScale]:
            meta = meta_from_tensor(state_dict[META_KEY])
            asr = from_parts(meta, state_dict, where="<state dict read by spandrel>")
            model = FixedScale(asr.eval(), scale)
            return ImageModelDescriptor(
                model,
                state_dict,
                architecture=self,
                purpose="SR",
                tags=[str(meta.get("layout")), f"x{scale} nominal, any scale via scaleeq"],
                supports_half=False,  # fp16 is not tested end to end yet
                supports_bfloat16=True,
                scale=scale,
                input_channels=3,
                output_channels=3,
                tiling=ModelTiling.SUPPORTED,
            )

    return _ScaleEQArch()


def register(registry: Any = None, *, scale: int = 4) -> Any:
    """Register scaleeq's files with spandrel (once per registry; later calls do nothing).

    Args:
        registry: a ``spandrel.ArchRegistry``; default spandrel's ``MAIN_REGISTRY``.
        scale: the nominal integer scale of the descriptors (what ``desc(x)`` renders).

    Returns:
        The registered ``spandrel.Architecture``.
    """
    spandrel = _spandrel()
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an int >= 1, got {scale!r}")
    registry = spandrel.MAIN_REGISTRY if registry is None else registry
    if ARCH_ID in registry:
        return registry.get(ARCH_ID).architecture
    arch = _make_arch(spandrel, scale)
    registry.add(spandrel.ArchSupport.from_architecture(arch))
    return arch


def unwrap(model: Any) -> Any:
    """The scaleeq model inside a spandrel descriptor (or a :class:`FixedScale`); anything
    else unchanged."""
    inner = getattr(model, "model", None) if not isinstance(model, nn.Module) else model
    if inner is not None and not isinstance(model, nn.Module):
        try:
            spandrel = _spandrel()
        except ImportError:
            return model
        if isinstance(model, spandrel.ImageModelDescriptor):
            model = inner
    return model.model if isinstance(model, FixedScale) else model
