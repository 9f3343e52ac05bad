"""Backbones and official-checkpoint support."""

from .official import convert_dsf_state_dict

__all__ = ["convert_dsf_state_dict"]
