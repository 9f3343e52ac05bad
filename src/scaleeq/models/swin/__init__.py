"""Swin / HAT building blocks and the trunk (:class:`SwinTrunk`) shared by
:class:`~scaleeq.models.SwinIR` and :class:`~scaleeq.models.EQSR`, written from the papers'
descriptions.

Vocabulary (shapes in docstrings):

- ``B`` batch, ``C`` channels, ``(H, W)`` the feature map size (a multiple of the window);
- tokens ``(B, L, C)`` with ``L = H * W`` in row-major pixel order;
- ``ws`` the window side, ``N = ws * ws`` tokens per window, ``nW = (H / ws) * (W / ws)``
  windows per image, in row-major window order;
- ``nH`` attention heads of ``d = C / nH`` channels each (contiguous channel chunks).

Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention` with the
relative position bias (and the shifted-window mask) as an additive float mask, so fused CPU and
GPU kernels are used where the platform has them. Masks and relative position indices are
computed for the runtime size; they are never stored in the state dict (checkpoints of the
original implementations, which store them, still load: see :class:`WindowAttention`).
"""

from __future__ import annotations

from .blocks import DropPath, Mlp, OverlapCrossAttentionBlock, SwinBlock, WindowAttention
from .trunk import (
    PatchEmbed,
    PatchUnEmbed,
    ResidualGroup,
    SwinStage,
    SwinTrunk,
    drop_path_rates,
    residual_conv,
    shifted_window_blocks,
)
from .windows import (
    check_x_size,
    merge_heads,
    overlap_relative_position_index,
    relative_position_index,
    shifted_window_mask,
    to_image,
    to_tokens,
    window_partition,
    window_reverse,
)

__all__ = [
    "DropPath",
    "Mlp",
    "OverlapCrossAttentionBlock",
    "PatchEmbed",
    "PatchUnEmbed",
    "ResidualGroup",
    "SwinBlock",
    "SwinStage",
    "SwinTrunk",
    "WindowAttention",
    "check_x_size",
    "drop_path_rates",
    "merge_heads",
    "overlap_relative_position_index",
    "relative_position_index",
    "residual_conv",
    "shifted_window_blocks",
    "shifted_window_mask",
    "to_image",
    "to_tokens",
    "window_partition",
    "window_reverse",
]
