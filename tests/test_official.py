"""The official EQSR checkpoint format: conversion, loading, and the reference fixture."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch

from scaleeq import upscale
from scaleeq.models import EQSR, SwinIR, convert_eqsr_state_dict, load_official_eqsr
from scaleeq.models.eqsr import OfficialCellEncoding
from scaleeq.models.swin import overlap_relative_position_index, relative_position_index

# ../shared beside the checkout; searched upwards so that a copy of tests/ one level deeper
# (mutmut's mutants/tests) finds it too
FIXTURE = next(
    (
        p / "shared" / "fixtures" / "eqsr_official_tiny"
        for p in Path(__file__).resolve().parents[1:]
        if (p / "shared" / "fixtures" / "eqsr_official_tiny").is_dir()
    ),
    Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "eqsr_official_tiny",
)
ATOL = 1e-4  # the fixture README's recommendation (observed noise ~5e-6)


@pytest.fixture(scope="module")
def official():
    if not FIXTURE.exists():
        pytest.skip("shared/fixtures/eqsr_official_tiny not beside the checkout")
    sd = torch.load(FIXTURE / "state_dict.pt")
    io = torch.load(FIXTURE / "io.pt")
    return sd, io


@pytest.fixture(scope="module")
def model(official):
    return load_official_eqsr(official[0])


def tokens_to_map(t: torch.Tensor, c: int = 24, h: int = 16, w: int = 16) -> torch.Tensor:
    return t.transpose(1, 2).reshape(t.shape[0], c, h, w)


def test_inferred_configuration(model):
    cfg = model.config
    kwargs = {"embed_dim": 24, "depths": (3, 3), "num_heads": (2, 2), "window_size": 8}
    assert {k: cfg[k] for k in kwargs} == kwargs
    assert cfg["overlap_ratio"] == 0.5 and cfg["mlp_ratio"] == 2.0 and cfg["official"]
    assert not model.training


def test_relative_position_indices_match_the_official_buffers(official):
    sd, _ = official
    assert torch.equal(relative_position_index(8), sd["relative_position_index_SA"])
    # the official OCA buffer holds negative values that indexing wraps modulo 361
    oca = sd["relative_position_index_OCA"]
    assert (oca < 0).sum() == 5408
    assert torch.equal(overlap_relative_position_index(8, 12), oca % 361)


def test_cell_encoding_reproduces_modscale(official):
    _, io = official
    enc = OfficialCellEncoding()
    for case, (h_hr, w_hr) in io["meta"]["cases"].items():
        got = enc(torch.tensor([[2 / h_hr, 2 / w_hr]], dtype=torch.float64), dtype=torch.float32)
        torch.testing.assert_close(got, io[case]["modscale"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", ["x2", "x3.5", "x6", "x2.5x1.5"])
def test_reproduces_official_outputs_and_intermediates(official, model, case):
    _, io = official
    ref = io[case]
    h_hr, w_hr = io["meta"]["cases"][case]
    seen: dict[str, torch.Tensor] = {}
    hooks = [model.conv_first.register_forward_hook(lambda m, i, o: seen.update(shallow=o))]
    for g, layer in enumerate(model.layers):
        hooks.append(
            layer.residual_group.afe.register_forward_hook(
                lambda m, i, o, g=g: seen.update({f"mbconv{g}": o})
            )
        )
        hooks.append(
            layer.register_forward_hook(lambda m, i, o, g=g: seen.update({f"group{g}": o}))
        )
    try:
        with torch.no_grad():
            feat = model.features(io["x"], (h_hr / 16, w_hr / 16))
            dsf_out = model.upsampler(feat, size=(h_hr, w_hr))
            out = model(io["x"], size=(h_hr, w_hr))
    finally:
        for hook in hooks:
            hook.remove()

    def check(got: torch.Tensor, want: torch.Tensor) -> None:
        torch.testing.assert_close(got, want, rtol=0, atol=ATOL)

    check(out, ref["out"])
    check(seen["shallow"], ref["shallow"])
    for g in range(2):
        check(tokens_to_map(seen[f"mbconv{g}"]), ref["mbconv_out"][g])
        check(tokens_to_map(seen[f"group{g}"]), ref["group_out"][g])
    check(feat, ref["feat"])
    check(dsf_out, ref["dsf_out"])


def test_scale_argument_gives_the_same_output_as_size(official, model):
    _, io = official
    with torch.no_grad():
        torch.testing.assert_close(model(io["x"], scale=3.5), io["x3.5"]["out"], rtol=0, atol=ATOL)
        torch.testing.assert_close(
            model(io["x"], scale=(2.5, 1.5)), io["x2.5x1.5"]["out"], rtol=0, atol=ATOL
        )
        # whole-image inference renders the official (non-window-exact) tail whole
        torch.testing.assert_close(
            upscale(model, io["x"], scale=6, max_window_pixels=64),
            io["x6"]["out"],
            rtol=0,
            atol=ATOL,
        )
        # an LR size that needs window padding runs and keeps its size
        assert model(io["x"][:, :, :13, :11], scale=2.0).shape == (1, 3, 26, 22)


def test_training_wrappers_and_module_prefix(official, tmp_path):
    sd, io = official
    noisy = {k: v + 1.0 if v.is_floating_point() else v for k, v in sd.items()}
    variants = {
        "params": {"params": sd},
        "params_ema preferred": {"params": noisy, "params_ema": sd},
        "module. prefix": {f"module.{k}": v for k, v in sd.items()},
    }
    torch.save({"params_ema": sd}, tmp_path / "ckpt.pth")
    x, want = io["x"], io["x2"]["out"]
    for name, state in variants.items():
        net = load_official_eqsr(state)
        with torch.no_grad():
            torch.testing.assert_close(net(x, size=(32, 32)), want, rtol=0, atol=ATOL, msg=name)
    net = load_official_eqsr(tmp_path / "ckpt.pth", backend="reference")
    assert net.upsampler.backend == "reference"
    with torch.no_grad():
        torch.testing.assert_close(net(x, size=(32, 32)), want, rtol=0, atol=ATOL)


def test_conversion_covers_the_model_and_leaves_the_input_alone(official):
    sd, _ = official
    before = {k: v.clone() for k, v in sd.items()}
    converted = convert_eqsr_state_dict(sd)
    assert sd.keys() == before.keys()
    assert all(torch.equal(sd[k], before[k]) for k in sd)
    net = EQSR(**{**load_official_eqsr(sd).config})
    assert converted.keys() == net.state_dict().keys()
    afe = "layers.1.residual_group.afe."
    assert torch.equal(
        converted[afe + "se.fc1.weight"], sd["layers.1.residual_group.mbconv.net3.0.gate.1.weight"]
    )
    assert torch.equal(
        converted[afe + "conv.to_style.weight"],
        sd["layers.1.residual_group.mbconv.net2.to_style.weight"],
    )


def test_foreign_state_dicts_are_rejected():
    swinir = SwinIR.from_preset("tiny", upscale=2).state_dict()
    with pytest.raises(ValueError, match="not an official EQSR checkpoint.*missing"):
        load_official_eqsr(swinir)
    with pytest.raises(ValueError, match="not an official EQSR checkpoint"):
        convert_eqsr_state_dict({"params": swinir})
    # scaleeq's own EQSR is not in the official format either
    with pytest.raises(ValueError, match="not an official EQSR checkpoint"):
        load_official_eqsr(EQSR.from_preset("tiny").state_dict())
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        load_official_eqsr([1, 2, 3])  # type: ignore[arg-type]


# -- Tests written for surviving mutants of the mutation-testing run (docs/testing.md) ----------
# Each states an invariant or compares with an independent reference; none takes its expected
# value from the code under test.


# the official names of the backbone entries are scaleeq's own (docstring of
# convert_eqsr_state_dict), so an official-format backbone for any configuration is the state
# dict of an official-mode EQSR built with it (plus the derived index buffer the official model
# stores); the expected configuration is the one the test chose, not one the code computed
OTHER_CONFIGS = [
    dict(in_chans=1, embed_dim=12, depths=(2, 3), num_heads=(3, 2), window_size=4,
         overlap_ratio=0.25, mlp_ratio=3.0, qkv_bias=False, patch_norm=False),
    # first group of depth 1 has no window attention: the window is read off the SA buffer
    dict(in_chans=3, embed_dim=8, depths=(1, 2, 2), num_heads=(2, 4, 1), window_size=6,
         overlap_ratio=0.5, mlp_ratio=1.5, qkv_bias=True, patch_norm=True),
]  # fmt: skip


def _official_backbone(cfg: dict) -> dict[str, torch.Tensor]:
    from scaleeq.models import EQSR

    sd = EQSR(official=True, **cfg).state_dict()
    sd = {k: v for k, v in sd.items() if ".afe." not in k and not k.startswith("upsampler.")}
    w = cfg["window_size"]
    sd["relative_position_index_SA"] = torch.zeros(w * w, w * w, dtype=torch.long)
    return sd


@pytest.mark.parametrize("cfg", OTHER_CONFIGS)
def test_official_configuration_is_read_off_the_shapes_of_other_models(cfg):
    from scaleeq.models.official import _infer_official_config

    got = _infer_official_config(_official_backbone(cfg))
    assert got == {**cfg, "depths": cfg["depths"], "num_heads": cfg["num_heads"]}
    assert isinstance(got["window_size"], int) and isinstance(got["in_chans"], int)


def test_official_window_needs_an_attention_table_or_the_sa_buffer():
    from scaleeq.models.official import _infer_official_config

    sd = _official_backbone(OTHER_CONFIGS[1])  # depth-1 first group: only the buffer is left
    del sd["relative_position_index_SA"]
    with pytest.raises(ValueError, match="cannot infer the window size"):
        _infer_official_config(sd)


@pytest.mark.parametrize(
    "key",
    [
        "layers.0.residual_group.blocks.0.attn.relative_position_bias_table",
        "layers.0.residual_group.overlap_attn.relative_position_bias_table",
    ],
)
def test_a_non_square_position_table_is_named(key):
    from scaleeq.models.official import _infer_official_config

    sd = _official_backbone(OTHER_CONFIGS[0])
    sd[key] = torch.zeros(sd[key].shape[0] + 1, sd[key].shape[1])
    with pytest.raises(ValueError, match=rf"^{re.escape(key)} has \d+ rows, not a square number"):
        _infer_official_config(sd)


def test_a_foreign_state_dict_error_lists_its_first_five_keys():
    from scaleeq.models import load_official_eqsr

    foreign = {f"k{i}": torch.zeros(1) for i in (6, 2, 4, 0, 5, 1, 3)}
    with pytest.raises(ValueError, match=re.escape("starts with ['k0', 'k1', 'k2', 'k3', 'k4']")):
        load_official_eqsr(foreign)


class _NotATensor:  # a pickled object that weights_only loading must refuse
    pass


def test_load_official_eqsr_loads_files_with_weights_only(tmp_path):
    from scaleeq.models import load_official_eqsr

    path = tmp_path / "ckpt.pth"
    torch.save({"conv_first.weight": torch.zeros(1), "payload": _NotATensor()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_official_eqsr(path)


def _official_upsampler_with_head(width: int) -> dict[str, torch.Tensor]:
    if not FIXTURE.exists():
        pytest.skip("shared/fixtures/eqsr_official_tiny not beside the checkout")
    sd = {
        k: v for k, v in torch.load(FIXTURE / "state_dict.pt").items() if k.startswith("upsample.")
    }
    sd["upsample.head.0.weight"] = torch.randn(sd["upsample.head.0.bias"].shape[0], width, 1, 1)
    return sd


def test_dsf_conversion_default_prefix_dtype_and_the_smallest_head():
    from scaleeq.models.official import convert_dsf_state_dict

    # one feature channel + 2 offsets + 4 * 2 encodings: the smallest head that still has a feature
    out = convert_dsf_state_dict(_official_upsampler_with_head(1 + 2 + 8), num_freqs=2)
    assert out["head_feat.weight"].shape[1] == 1
    assert out["head_x.weight"].shape[1] == 1 + 2 * 2
    assert all(v.dtype == torch.float32 for v in out.values())  # float32 in, float32 out
    with pytest.raises(ValueError, match="too few for num_freqs=2"):
        convert_dsf_state_dict(_official_upsampler_with_head(2 + 8), num_freqs=2)


# -- the compatibility module: every official quirk in one place ------------------------------


def test_the_official_quirks_live_in_one_module():
    import scaleeq.models.eqsr as eqsr_mod
    from scaleeq import NeuralKrigingUpsampler
    from scaleeq.layers import official as compat
    from scaleeq.layers.kriging_block import CHANNEL_ATTENTIONS
    from scaleeq.ops.coords import ROUNDINGS, OfficialRounding

    # the cell encoding moved; its old import path still works
    assert eqsr_mod.OfficialCellEncoding is compat.OfficialCellEncoding is OfficialCellEncoding
    assert "OfficialCellEncoding" in eqsr_mod.__all__
    # the strategies the string settings name
    assert compat.OFFICIAL_ROUNDING is ROUNDINGS["official"]
    assert isinstance(compat.OFFICIAL_ROUNDING, OfficialRounding)
    assert CHANNEL_ATTENTIONS["eca"] is compat.OfficialECA
    assert not compat.OfficialECA.window_exact and not compat.OfficialECA.needs_context
    # the preset: NeuralKrigingUpsampler.official builds it, and stores it as before
    up = NeuralKrigingUpsampler.official(24, backend="reference")
    assert up.config == {
        "in_channels": 24,
        "out_channels": 3,
        "scale_mlp": False,
        "backend": "reference",
        **compat.OFFICIAL_UPSAMPLER,
    }
    assert list(up.config) == list(NeuralKrigingUpsampler(24).config)  # signature order
    assert up.attention is compat.OfficialECA and up.query_rounding is compat.OFFICIAL_ROUNDING
    assert all(isinstance(blk.attn, compat.OfficialECA) for blk in up.blocks)
    with pytest.raises(TypeError):
        compat.OFFICIAL_UPSAMPLER["hidden"] = 8  # type: ignore[index]


def test_official_eqsr_conditions_on_the_cell_of_the_output_size():
    sizes = torch.tensor([[32, 48], [7, 9]], dtype=torch.int64)
    cells = OfficialCellEncoding.cells(sizes, torch.float64)
    assert cells.dtype == torch.float64 and torch.equal(cells, 2.0 / sizes.double())
    net = EQSR.from_preset("tiny", official=True)
    afe = net.layers[0].residual_group.afe
    assert isinstance(afe.conv.encoding, OfficialCellEncoding)
