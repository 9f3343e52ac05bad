"""scaleeq: scale-equivariant operators for arbitrary-scale super-resolution (EQSR, CVPR 2023)."""

from .evaluate import evaluate
from .geometry import RenderPlan, render_plan
from .infer import upscale
from .layers import AdaptiveConv2d, AFEBlock, AFETokenBlock, NeuralKrigingUpsampler
from .ops import kriging_aggregate
from .pretrained import pretrained
from .retrofit import ArbitraryScaleSR, load, retrofit
from .scale import (
    ScaleEncoding,
    as_scale_tensor,
    current_scale,
    output_size,
    resolve_scale_and_size,
    scale_context,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "AFEBlock",
    "AFETokenBlock",
    "AdaptiveConv2d",
    "ArbitraryScaleSR",
    "NeuralKrigingUpsampler",
    "RenderPlan",
    "ScaleEncoding",
    "__version__",
    "as_scale_tensor",
    "current_scale",
    "evaluate",
    "kriging_aggregate",
    "load",
    "output_size",
    "pretrained",
    "render_plan",
    "resolve_scale_and_size",
    "retrofit",
    "scale_context",
    "upscale",
]
