"""Former public names stay accepted: the aggregation backend ``"lean"`` (now ``"shifted"``),
LIIFUpsampler's ``hidden.N.*`` state-dict keys (now ``body.N.*``), and the ``resolve_*``
functions that were not about geometry (now ``select_backend``, ``select_precision``,
``scale_or_context``). Files written under the former names load with identical outputs."""

from __future__ import annotations

import pytest
import torch

import scaleeq
from scaleeq import NeuralKrigingUpsampler
from scaleeq.layers.baselines import LIIFUpsampler
from scaleeq.models import EDSR


def _perturb(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random non-trivial weights (zero-initialised layers would hide a mismatch)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module.eval()


# -- backend "lean" -> "shifted" ------------------------------------------------------------------


def test_upsampler_built_with_backend_lean_renders_as_shifted():
    torch.manual_seed(0)
    lean = _perturb(NeuralKrigingUpsampler(4, hidden=16, blocks=2, backend="lean"))
    assert lean.config["backend"] == "lean"  # what a saved file records is what was given
    assert lean.backend == "shifted" and all(b.backend == "shifted" for b in lean.blocks)
    shifted = NeuralKrigingUpsampler(4, hidden=16, blocks=2, backend="shifted")
    shifted.load_state_dict(lean.state_dict())
    rebuilt = type(lean)(**lean.config)  # a stored config rebuilds it
    rebuilt.load_state_dict(lean.state_dict())
    feat = torch.randn(2, 4, 5, 6)
    scale = torch.tensor([2.2, 3.1])
    window = (torch.tensor([1, 3]), 0, 7, 8)
    with torch.no_grad():
        want = shifted(feat, scale=scale, window=window)
        assert torch.equal(lean(feat, scale=scale, window=window), want)
        assert torch.equal(rebuilt.eval()(feat, scale=scale, window=window), want)


def test_upsampler_refuses_an_unknown_backend_and_names_the_choices():
    with pytest.raises(ValueError, match=r"backend must be one of .*'shifted'.*got 'leaner'"):
        NeuralKrigingUpsampler(4, hidden=16, backend="leaner")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_saved_model_whose_config_says_lean_loads_and_renders_the_same(tmp_path, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    torch.manual_seed(0)
    up = NeuralKrigingUpsampler(16, hidden=16, blocks=1, backend="lean")
    asr = _perturb(scaleeq.retrofit(EDSR.from_preset("tiny", upscale=2), upsampler=up))
    path = tmp_path / f"lean{suffix}"
    asr.save(path)
    from scaleeq.retrofit.format import read_checkpoint

    meta, _ = read_checkpoint(path, "cpu")
    assert meta["upsampler"]["config"]["backend"] == "lean"
    loaded = scaleeq.load(path).eval()
    assert loaded.upsampler.backend == "shifted"
    assert loaded.upsampler.config["backend"] == "lean"  # saving it again writes the same
    lr = torch.rand(1, 3, 7, 9, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(lr, scale=2.5), asr(lr, scale=2.5))


# -- LIIFUpsampler: hidden.N.* -> body.N.* -------------------------------------------------------


def _with_former_keys(state: dict, prefix: str = "") -> dict:
    """``state`` as the code before the rename wrote it: ``body.N.*`` keys named ``hidden.N.*``."""
    former = {}
    for k, v in state.items():
        if k.startswith(prefix + "body."):
            k = prefix + "hidden." + k[len(prefix + "body.") :]
        former[k] = v
    return former


def test_liif_layers_are_named_body():
    up = LIIFUpsampler(6, hidden=16, layers=4)
    assert up.config["hidden"] == 16 and len(up.body) == 3
    assert not hasattr(up, "hidden")
    assert {k.split(".")[0] for k in up.state_dict()} == {
        "first_feat",
        "first_coord",
        "body",
        "tail",
    }


def test_liif_state_dict_with_former_hidden_keys_loads_with_identical_outputs():
    torch.manual_seed(0)
    up = _perturb(LIIFUpsampler(6, hidden=16, layers=4))
    former = _with_former_keys(up.state_dict())
    assert any(k.startswith("hidden.") for k in former)
    assert not any(k.startswith("body.") for k in former)
    fresh = LIIFUpsampler(6, hidden=16, layers=4).eval()
    result = fresh.load_state_dict(former)  # strict: no missing, no unexpected keys
    assert not result.missing_keys and not result.unexpected_keys
    assert list(former) == list(_with_former_keys(up.state_dict()))  # the caller's dict is kept
    feat = torch.randn(2, 6, 5, 4)
    with torch.no_grad():
        assert torch.equal(fresh(feat, scale=2.7), up(feat, scale=2.7))
    # nested under a prefix (a retrofitted model's "upsampler."); current keys load as before
    current = {f"upsampler.{k}": v for k, v in up.state_dict().items()}
    for state in (_with_former_keys(current, "upsampler."), current):
        outer = torch.nn.ModuleDict({"upsampler": LIIFUpsampler(6, hidden=16, layers=4)})
        outer.load_state_dict(state)
        for a, b in zip(outer["upsampler"].parameters(), up.parameters(), strict=True):
            assert torch.equal(a, b)


def test_liif_mismatched_former_keys_are_still_reported():
    up = LIIFUpsampler(6, hidden=16, layers=4)
    former = _with_former_keys(up.state_dict())
    former["hidden.7.weight"] = former.pop("hidden.2.weight")
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*body\.2\.weight"):
        LIIFUpsampler(6, hidden=16, layers=4).load_state_dict(former)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_saved_model_with_liif_upsampler_under_former_keys_loads(tmp_path, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    torch.manual_seed(0)
    up = LIIFUpsampler(16, hidden=16, layers=3)
    asr = _perturb(scaleeq.retrofit(EDSR.from_preset("tiny", upscale=2), upsampler=up))
    # write the file as the code before the rename did: the same module under its former name
    up._modules["hidden"] = up._modules.pop("body")
    try:
        path = tmp_path / f"liif{suffix}"
        asr.save(path)
    finally:
        up._modules["body"] = up._modules.pop("hidden")
    from scaleeq.retrofit.format import read_checkpoint

    _, tensors = read_checkpoint(path, "cpu")
    assert any(k.startswith("upsampler.hidden.") for k in tensors)
    assert not any(k.startswith("upsampler.body.") for k in tensors)
    loaded = scaleeq.load(path).eval()
    lr = torch.rand(1, 3, 7, 9, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(lr, scale=2.5), asr(lr, scale=2.5))


# -- resolve_* that were not about geometry -------------------------------------------------------


def test_former_function_names_are_the_new_functions():
    from scaleeq import context, precision
    from scaleeq.ops import aggregate

    assert aggregate.resolve_backend is aggregate.select_backend
    assert precision.resolve_precision is precision.select_precision
    assert context.resolve_layer_scale is context.scale_or_context
    for module, old in (
        (aggregate, "resolve_backend"),
        (precision, "resolve_precision"),
        (context, "resolve_layer_scale"),
    ):
        assert old in module.__all__


def test_scale_or_context():
    from scaleeq.context import scale_or_context

    assert scale_or_context(2.5, "Layer") == 2.5
    with scaleeq.scale_context(3.0):
        assert scale_or_context(None, "Layer") == 3.0
        assert scale_or_context(1.5, "Layer") == 1.5  # an explicit scale wins
    with pytest.raises(ValueError, match=r"^Layer needs a scale: call it as Layer\(x, scale=r\)"):
        scale_or_context(None, "Layer")


def test_afe_block_takes_skip_as_the_former_name_of_residual():
    """AFEBlock's ``skip`` (which residual stream is added back) is now ``residual``, so that
    ``skip`` only means a retrofitted model's image skip; the old keyword builds the same
    block (same wiring, same parameters)."""
    from scaleeq import AFEBlock

    torch.manual_seed(0)
    new = AFEBlock(8, residual="hidden")
    torch.manual_seed(0)
    old = AFEBlock(8, skip="hidden")
    assert old.residual == new.residual == "hidden"
    assert old.state_dict().keys() == new.state_dict().keys()
    for o, n in zip(old.state_dict().values(), new.state_dict().values(), strict=True):
        assert torch.equal(o, n)
    gelu = torch.nn.functional.gelu
    x = torch.randn(2, 8, 5, 6)
    with torch.no_grad():
        a = new.pw_in(x)
        a = a + new.conv(gelu(new.norm1(a)), 2.5)
        want = a + new.pw_out(new.se(gelu(new.norm2(a))))  # the hidden stream added back
        assert torch.equal(new(x, 2.5), want)
        assert torch.equal(old(x, 2.5), want)
