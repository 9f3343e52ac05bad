"""Drop-in scale-aware layers."""

from .adaptive_conv import AdaptiveConv2d
from .afe import AFEBlock, AFETokenBlock, LayerNorm2d, SqueezeExcitation

__all__ = ["AFEBlock", "AFETokenBlock", "AdaptiveConv2d", "LayerNorm2d", "SqueezeExcitation"]
