"""Drop-in scale-aware layers."""

from .adaptive_conv import AdaptiveConv2d
from .afe import AFEBlock, AFETokenBlock, LayerNorm2d, SqueezeExcitation
from .baselines import BicubicFeatureUpsampler, LIIFUpsampler
from .encoding import ScaleEncoding
from .kriging import KrigingBlock, NeuralKrigingUpsampler, OffsetEncoding

__all__ = [
    "AFEBlock",
    "AFETokenBlock",
    "AdaptiveConv2d",
    "BicubicFeatureUpsampler",
    "KrigingBlock",
    "LIIFUpsampler",
    "LayerNorm2d",
    "NeuralKrigingUpsampler",
    "OffsetEncoding",
    "ScaleEncoding",
    "SqueezeExcitation",
]
