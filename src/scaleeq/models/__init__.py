"""Backbones and official-checkpoint support."""

from .edsr import EDSR
from .rcan import RCAN
from .official import convert_dsf_state_dict

__all__ = ["EDSR", "RCAN", "convert_dsf_state_dict"]
