"""What scaleeq needs from the models and upsamplers it drives, written down.

``scaleeq.upscale``, ``scaleeq.evaluate``, ``retrofit(..., upsampler=...)`` and save/load check
these contracts instead of probing attributes one by one; an object that falls short gets a
``TypeError`` that lists what is missing.

- :class:`Upsampler`: renders an image (or a window of it) from an LR feature map. The built-in
  ones are :class:`~scaleeq.NeuralKrigingUpsampler`, ``LIIFUpsampler`` and
  ``BicubicFeatureUpsampler``.
- :class:`SRModel`: an LR image to its LR feature map (``features``) and a plan to pixels
  (``render``), with an ``upsampler``. :class:`~scaleeq.ArbitraryScaleSR` and
  :class:`~scaleeq.models.EQSR` are SR models.
- :class:`Savable`: an upsampler that ``ArbitraryScaleSR.save`` can rebuild from its ``config``.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal, Protocol, runtime_checkable

import torch

from .geometry import RenderPlan
from .ops.coords import Window
from .scale import ScaleLike

__all__ = [
    "SRModel",
    "Savable",
    "Upsampler",
    "check_upsampler",
    "is_sr_model",
    "is_upsampler",
    "model_kind",
]


@runtime_checkable
class Upsampler(Protocol):
    """An arbitrary-scale renderer from an LR feature map ``(B, in_channels, h, w)``.

    Attributes:
        in_channels: channels of the feature map it reads.
        window_exact: whether a window equals the same crop of the whole render (tiled
            rendering needs this; upsamplers whose output reads the whole HR map set False).
        default_window_pixels: the tile budget (HR pixels) ``scaleeq.upscale`` uses by default.

    Call: ``up(feat, *, scale=None, size=None, window=None, plan=None)`` returns
    ``(B, out_channels, H, W)`` or the window; ``plan`` is a
    :class:`~scaleeq.geometry.RenderPlan` made for ``feat`` (then the others are ``None``).
    """

    in_channels: int
    window_exact: bool
    default_window_pixels: int

    def forward(
        self,
        feat: torch.Tensor,
        *,
        scale: ScaleLike | None = None,
        size: tuple[int, int] | None = None,
        window: Window | None = None,
        plan: RenderPlan | None = None,
    ) -> torch.Tensor: ...


@runtime_checkable
class SRModel(Protocol):
    """An arbitrary-scale SR model: LR image -> LR features -> rendered pixels.

    - ``features(lr, scale)``: ``(B, C, h, w)`` features of ``lr`` ``(B, 3, h, w)``, the
      scale-aware layers conditioned on ``scale`` (any scale argument; 1 or ``B`` samples);
    - ``render(feat, *, plan)``: the image (or window) the plan describes, output transform
      applied;
    - ``upsampler``: the :class:`Upsampler` that ``render`` uses (its tile budget and
      window-exactness steer tiled rendering);
    - ``forward(lr, *, scale=None, size=None, window=None, plan=None)``.
    """

    upsampler: Any

    def features(self, lr: torch.Tensor, scale: ScaleLike) -> torch.Tensor: ...

    def render(self, feat: torch.Tensor, *, plan: RenderPlan) -> torch.Tensor: ...


@runtime_checkable
class Savable(Protocol):
    """An upsampler that can be rebuilt as ``type(up)(**up.config)``."""

    config: dict[str, Any]


def _accepts(fn: Any, keyword: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return keyword in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _missing_upsampler(obj: object) -> list[str]:
    missing = [
        a for a in ("in_channels", "window_exact", "default_window_pixels") if not hasattr(obj, a)
    ]
    if not isinstance(obj, torch.nn.Module):
        missing.insert(0, "to be an nn.Module")
    elif not _accepts(obj.forward, "plan"):
        missing.append("forward(feat, *, scale, size, window, plan) (no `plan` keyword)")
    return missing


def _missing_sr_model(obj: object) -> list[str]:
    missing = [] if isinstance(obj, torch.nn.Module) else ["to be an nn.Module"]
    missing += [a for a in ("features", "render", "upsampler") if not hasattr(obj, a)]
    render = getattr(obj, "render", None)
    if render is not None and not _accepts(render, "plan"):
        missing.append("render(feat, *, plan) (no `plan` keyword)")
    return missing


def is_upsampler(obj: object) -> bool:
    """Whether ``obj`` satisfies the :class:`Upsampler` contract."""
    return not _missing_upsampler(obj)


def is_sr_model(obj: object) -> bool:
    """Whether ``obj`` satisfies the :class:`SRModel` contract."""
    return not _missing_sr_model(obj)


def check_upsampler(obj: object, name: str = "upsampler") -> None:
    """Raise ``TypeError`` naming what ``obj`` lacks of the :class:`Upsampler` contract."""
    missing = _missing_upsampler(obj)
    if missing:
        raise TypeError(
            f"{name} ({type(obj).__name__}) does not satisfy scaleeq.contracts.Upsampler: it "
            f"needs {', '.join(missing)}"
        )


def model_kind(obj: object, name: str = "model") -> Literal["sr_model", "upsampler"]:
    """Which contract ``obj`` satisfies: ``"sr_model"`` (:class:`SRModel`, checked first) or
    ``"upsampler"`` (:class:`Upsampler`, whose input is a feature map).

    Raises:
        TypeError: neither, naming what each contract still needs.
    """
    if is_sr_model(obj):
        return "sr_model"
    if is_upsampler(obj):
        return "upsampler"
    raise TypeError(
        f"{name} ({type(obj).__name__}) must be an SR model or an upsampler "
        f"(scaleeq.contracts): as an SR model it needs {', '.join(_missing_sr_model(obj))}; "
        f"as an upsampler it needs {', '.join(_missing_upsampler(obj))}"
    )
