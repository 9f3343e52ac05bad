"""Key mapping from the official EQSR checkpoint format to scaleeq modules.

Only the upsampler ("DSF" in the official code) is mapped so far:
:func:`convert_dsf_state_dict` turns the ``upsample.*`` entries of an official state dict into a
state dict for :meth:`NeuralKrigingUpsampler.official`. The caller's dict is not modified.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = ["convert_dsf_state_dict"]


def convert_dsf_state_dict(
    state_dict: Mapping[str, torch.Tensor], *, prefix: str = "upsample.", num_freqs: int = 40
) -> dict[str, torch.Tensor]:
    """Map official DSF weights onto :meth:`NeuralKrigingUpsampler.official`.

    The official head is one 1x1 conv over ``[q_feat (C), rel_x, rel_y, sin(a_0)_x, sin(a_0)_y,
    cos(a_0)_x, cos(a_0)_y, ...]``; scaleeq splits it into a feature projection and per-axis
    offset projections (``[u, sin(a_0..a_n-1), cos(a_0..a_n-1)]`` each). The official RBF
    length-scale is in half-LR-pixel units; scaleeq stores ``log`` of it in LR pixels.

    Args:
        state_dict: official state dict (full model or upsampler only).
        prefix: key prefix of the upsampler entries.
        num_freqs: offset-encoding frequencies of the checkpoint (40 in the official code).

    Returns:
        A new state dict for ``NeuralKrigingUpsampler.official(in_channels)``.

    Raises:
        KeyError: an expected official key is missing (its name is given).
    """

    def get(key: str) -> torch.Tensor:
        full = prefix + key
        if full not in state_dict:
            raise KeyError(f"official state dict has no key {full!r}")
        return state_dict[full]

    head_w = get("head.0.weight").flatten(1)  # (D, C + 2 + 4F)
    c = head_w.shape[1] - 2 - 4 * num_freqs
    if c < 1:
        raise ValueError(
            f"{prefix}head.0.weight has {head_w.shape[1]} input channels, too few for "
            f"num_freqs={num_freqs} (needs C + {2 + 4 * num_freqs})"
        )
    enc = head_w[:, c:]
    freq = torch.arange(num_freqs)

    def axis_cols(axis: int) -> torch.Tensor:  # axis 0 = x, 1 = y in the official order
        sin_cols = 2 + 4 * freq + axis
        cos_cols = 4 + 4 * freq + axis
        return torch.cat([torch.tensor([axis]), sin_cols, cos_cols])

    out: dict[str, torch.Tensor] = {
        "head_feat.weight": head_w[:, :c].clone(),
        "head_feat.bias": get("head.0.bias").clone(),
        "head_x.weight": enc[:, axis_cols(0)].clone(),
        "head_y.weight": enc[:, axis_cols(1)].clone(),
        "log_lengthscale": torch.log(get("rbf1.lengthscale").detach().double() / 2)
        .to(torch.float32)
        .reshape(()),
        "tail.weight": get("to_rgb.1.weight").clone(),
        "tail.bias": get("to_rgb.1.bias").clone(),
    }
    for i, name in enumerate(("inv1", "inv2")):
        pairs = {
            "norm1.weight": "norm1.body.weight",
            "norm1.bias": "norm1.body.bias",
            "conv1.weight": "conv1.weight",
            "conv1.bias": "conv1.bias",
            "kernel_gen.0.weight": "attn.seblock.0.weight",
            "kernel_gen.0.bias": "attn.seblock.0.bias",
            "kernel_gen.2.weight": "attn.seblock.2.weight",
            "kernel_gen.2.bias": "attn.seblock.2.bias",
            "conv2.weight": "conv2.weight",
            "conv2.bias": "conv2.bias",
            "norm2.weight": "norm2.body.weight",
            "norm2.bias": "norm2.body.bias",
            "ffn.0.weight": "ffn.conv1.weight",
            "ffn.0.bias": "ffn.conv1.bias",
            "ffn.2.weight": "ffn.conv2.weight",
            "ffn.2.bias": "ffn.conv2.bias",
            "attn.weight": "ffn.CA.conv.weight",
        }
        for ours, theirs in pairs.items():
            out[f"blocks.{i}.{ours}"] = get(f"{name}.{theirs}").clone()
    return out
