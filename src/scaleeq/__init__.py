"""scaleeq: scale-equivariant operators for arbitrary-scale super-resolution (EQSR, CVPR 2023)."""

from . import data as data  # scaleeq.data and scaleeq.images without importing them by name
from . import functional as functional
from . import images as images
from .context import current_scale, scale_context
from .evaluate import evaluate
from .geometry import RenderPlan, render_plan, resolve_scale_and_size
from .infer import upscale
from .layers import AdaptiveConv2d, AFEBlock, AFETokenBlock, NeuralKrigingUpsampler, ScaleEncoding
from .ops import kriging_aggregate
from .pretrained import pretrained
from .retrofit import ArbitraryScaleSR, load, retrofit
from .scale import as_scale_tensor, output_size

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
