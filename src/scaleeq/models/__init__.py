"""Backbones and official-checkpoint support."""

from .edsr import EDSR
from .eqsr import EQSR
from .official import convert_dsf_state_dict, convert_eqsr_state_dict, load_official_eqsr
from .rcan import RCAN
from .swinir import SwinIR

__all__ = [
    "EDSR",
    "EQSR",
    "RCAN",
    "SwinIR",
    "convert_dsf_state_dict",
    "convert_eqsr_state_dict",
    "load_official_eqsr",
]
