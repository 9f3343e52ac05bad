"""Official EQSR checkpoints: the key maps from their format to scaleeq modules, and the loader.

The model-side quirks these checkpoints need (the float32 cell encoding, the float32 query
rounding, the ECA channel attention, the official upsampler's settings) are gathered in
:mod:`scaleeq.layers.official`; ``EQSR(official=True)`` combines them. This module only
renames and re-arranges tensors, and reads hyper-parameters off their shapes:

- :func:`convert_dsf_state_dict`: the ``upsample.*`` entries (the official "DSF") to a state
  dict for :meth:`NeuralKrigingUpsampler.official`;
- :func:`convert_eqsr_state_dict`: a whole official EQSR state dict to one for
  ``EQSR(official=True, ...)``;
- :func:`load_official_eqsr`: build that model from a checkpoint, with its hyper-parameters
  read off the tensor shapes.

The caller's dict is never modified.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any

import torch

from .eqsr import EQSR

__all__ = ["convert_dsf_state_dict", "convert_eqsr_state_dict", "load_official_eqsr"]


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
        for ours, theirs in _DSF_BLOCK_KEYS.items():
            out[f"blocks.{i}.{ours}"] = get(f"{name}.{theirs}").clone()
    return out


# official DSF involution block (``inv1``, ``inv2``) -> scaleeq KrigingBlock (``blocks.i``);
# ``attn.weight`` is the ECA convolution (scaleeq.layers.official.OfficialECA)
_DSF_BLOCK_KEYS = {
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


# official ModMBConv (``mbconv``) -> scaleeq AFETokenBlock (``afe``), per parameter
_MBCONV_TO_AFE = {
    "net1.weight": "pw_in.weight",
    "net1.bias": "pw_in.bias",
    "norm1.0.weight": "norm1.weight",
    "norm1.0.bias": "norm1.bias",
    "net2.weight": "conv.weight",
    "net2.to_style.weight": "conv.to_style.weight",
    "net2.to_style.bias": "conv.to_style.bias",
    "norm2.0.weight": "norm2.weight",
    "norm2.0.bias": "norm2.bias",
    "net3.0.gate.1.weight": "se.fc1.weight",
    "net3.0.gate.3.weight": "se.fc2.weight",
    "net3.1.weight": "pw_out.weight",
    "net3.1.bias": "pw_out.bias",
}
# derived buffers of the official model; scaleeq computes them
_DERIVED = ("relative_position_index_SA", "relative_position_index_OCA")
_MARKERS = (
    "conv_first.weight",
    "layers.0.residual_group.mbconv.net2.to_style.weight",
    "layers.0.residual_group.overlap_attn.relative_position_bias_table",
    "upsample.head.0.weight",
)
_MBCONV_KEY = re.compile(r"^(layers\.\d+\.residual_group\.)mbconv\.(.+)$")


def _unwrap(state: Any) -> dict[str, torch.Tensor]:
    """A flat state dict from a checkpoint: ``params_ema`` (preferred) or ``params`` wrappers
    of training frameworks are opened and ``module.`` prefixes (DataParallel) stripped. Returns
    a new dict."""
    if not isinstance(state, Mapping):
        raise TypeError(f"state_dict must be a mapping of tensors, got {type(state).__name__}")
    for key in ("params_ema", "params"):
        if key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if not isinstance(k, str):
            raise TypeError(f"state_dict keys must be str, got {type(k).__name__} ({k!r})")
        out[k.removeprefix("module.")] = v
    return out


def _check_official(sd: Mapping[str, torch.Tensor]) -> None:
    missing = [k for k in _MARKERS if k not in sd]
    if missing:
        some = sorted(sd)[:5]
        raise ValueError(
            "state_dict is not an official EQSR checkpoint: expected keys such as "
            f"{list(_MARKERS)}, missing {missing}; it starts with {some}"
        )


def convert_eqsr_state_dict(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Map a full official EQSR state dict onto :class:`~scaleeq.models.EQSR` with
    ``official=True``.

    ``layers.g.residual_group.mbconv.*`` become ``...afe.*`` (ModMBConv -> AFETokenBlock),
    ``upsample.*`` become ``upsampler.*`` (:func:`convert_dsf_state_dict`), the derived
    ``relative_position_index_*`` buffers are dropped (scaleeq computes them), and every other
    key (stem, window attention, OCAB, group convs, norms) keeps its name.

    Args:
        state_dict: official state dict; ``params`` / ``params_ema`` wrappers and ``module.``
            prefixes are accepted.

    Returns:
        A new state dict (tensors are not copied except the re-arranged upsampler ones).

    Raises:
        TypeError: not a mapping of tensors.
        ValueError: not an official EQSR state dict (the missing keys are named).
    """
    sd = _unwrap(state_dict)
    _check_official(sd)
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key in _DERIVED or key.startswith("upsample."):
            continue
        m = _MBCONV_KEY.match(key)
        if m is not None:
            group, rest = m.groups()
            if rest not in _MBCONV_TO_AFE:
                raise ValueError(f"state_dict has an unknown ModMBConv parameter {key!r}")
            key = f"{group}afe.{_MBCONV_TO_AFE[rest]}"
        out[key] = value
    for key, value in convert_dsf_state_dict(sd, prefix="upsample.").items():
        out["upsampler." + key] = value
    return out


def _side_from_table(rows: int, name: str) -> int:
    side = math.isqrt(rows)
    if side * side != rows:
        raise ValueError(f"{name} has {rows} rows, not a square number")
    return side


def _infer_official_config(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """EQSR hyper-parameters read off the official tensor shapes."""
    embed_dim, in_chans = sd["conv_first.weight"].shape[:2]
    groups = sorted({int(k.split(".")[1]) for k in sd if k.startswith("layers.")})
    if groups != list(range(len(groups))):
        raise ValueError(f"state_dict residual groups are not numbered 0..n-1: {groups}")
    depths, heads = [], []
    for g in groups:
        prefix = f"layers.{g}.residual_group."
        blocks = {
            int(k[len(prefix) :].split(".")[1]) for k in sd if k.startswith(prefix + "blocks.")
        }
        depths.append(len(blocks) + 1)  # the ModMBConv counts as one block
        heads.append(sd[prefix + "overlap_attn.relative_position_bias_table"].shape[1])
    table = "layers.0.residual_group.blocks.0.attn.relative_position_bias_table"
    oca = "layers.0.residual_group.overlap_attn.relative_position_bias_table"
    if table in sd:
        window = (_side_from_table(sd[table].shape[0], table) + 1) // 2
    elif "relative_position_index_SA" in sd:
        window = math.isqrt(sd["relative_position_index_SA"].shape[0])
    else:
        raise ValueError("cannot infer the window size: no window-attention block in state_dict")
    overlap = _side_from_table(sd[oca].shape[0], oca) + 1 - 2 * window  # ows - ws
    fc1 = sd["layers.0.residual_group.overlap_attn.mlp.fc1.weight"].shape[0]
    return dict(
        in_chans=int(in_chans),
        embed_dim=int(embed_dim),
        depths=tuple(depths),
        num_heads=tuple(int(h) for h in heads),
        window_size=int(window),
        overlap_ratio=overlap / window,
        mlp_ratio=fc1 / embed_dim,
        qkv_bias="layers.0.residual_group.overlap_attn.qkv.bias" in sd,
        patch_norm="patch_embed.norm.weight" in sd,
    )


def load_official_eqsr(
    state_dict_or_path: Mapping[str, Any] | str | os.PathLike[str], **kwargs: Any
) -> EQSR:
    """Build an :class:`~scaleeq.models.EQSR` (``official=True``) from an official checkpoint.

    ``embed_dim``, ``in_chans``, the groups' ``depths`` and ``num_heads``, ``window_size``,
    ``overlap_ratio``, ``mlp_ratio``, ``qkv_bias`` and ``patch_norm`` are read off the tensor
    shapes; ``kwargs`` override them or set the rest (``img_range``, ``backend``, ...).
    The weights load strictly.

    Args:
        state_dict_or_path: a state dict (``params`` / ``params_ema`` wrappers, preferring
            ``params_ema``, and ``module.`` prefixes accepted) or a path to one saved with
            ``torch.save`` (loaded on the CPU with ``weights_only=True``).
        **kwargs: :class:`~scaleeq.models.EQSR` constructor arguments.

    Returns:
        The model, in eval mode, on the CPU.

    Raises:
        TypeError: not a mapping or a path.
        ValueError: not an official EQSR state dict.
        RuntimeError: the weights do not fit the inferred or given configuration.
    """
    if isinstance(state_dict_or_path, str | os.PathLike):
        state = torch.load(state_dict_or_path, map_location="cpu", weights_only=True)
    else:
        state = state_dict_or_path
    sd = _unwrap(state)
    _check_official(sd)
    config = {**_infer_official_config(sd), **kwargs, "official": True}
    model = EQSR(**config)
    model.load_state_dict(convert_eqsr_state_dict(sd))
    return model.eval()
