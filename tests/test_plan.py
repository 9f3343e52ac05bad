"""The render plan: the scale as an argument, activation checkpointing, torch.compile."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo.testing
from torch import nn
from torch.utils.checkpoint import checkpoint

import scaleeq
from scaleeq import AFEBlock, AFETokenBlock, retrofit
from scaleeq.geometry import RenderPlan, render_plan
from scaleeq.models import EDSR, EQSR, RCAN, SwinIR
from scaleeq.scale import ScaleCondition

from ._helpers import perturbed
from ._standins import BasicSREDSR, EDSRPyTorch, SwinLike, basicsr_rcan

MODELS = {
    "edsr": lambda: retrofit(EDSR.from_preset("tiny")),
    "rcan": lambda: retrofit(RCAN.from_preset("tiny")),
    "swinir": lambda: retrofit(SwinIR.from_preset("tiny", upscale=2)),
    "basicsr-edsr": lambda: retrofit(BasicSREDSR()),
    "basicsr-rcan": lambda: retrofit(basicsr_rcan()),
    "edsr-pytorch": lambda: retrofit(EDSRPyTorch(group=True)),
    "swinir-standin": lambda: retrofit(SwinLike()),
    "hat-standin": lambda: retrofit(SwinLike(hat=True)),
    "eqsr": lambda: EQSR.from_preset("tiny"),
}


class TestPlan:
    def test_float_pair_size_and_tensor(self):
        p = render_plan((10, 12), 2, scale=2.33)
        assert p.out_size == (23, 28) and p.scale.tolist() == [[2.33, 2.33]]
        assert p.whole and p.sizes.tolist() == [[23, 28], [23, 28]]
        p = render_plan((10, 12), 2, size=(25, 18))
        assert p.scale.tolist() == [[2.5, 1.5]] and p.out_size == (25, 18)
        p = render_plan((10, 12), 2, scale=torch.tensor([2.0, 3.3]), window=(1, 2, 5, 6))
        assert p.sizes.tolist() == [[20, 24], [33, 40]] and p.out_size is None
        assert not p.whole and (p.height, p.width) == (5, 6) and p.top.tolist() == [1, 1]

    def test_halves_round_up(self):
        # 5 * 2.5 = 12.5 and 3 * 1.5 = 4.5 exactly: the rule rounds halves up
        p = render_plan((5, 3), 1, scale=(2.5, 1.5))
        assert p.out_size == (13, 5)
        q = render_plan((5, 3), 1, scale=torch.tensor([[2.5, 1.5]]))
        assert q.out_size == (13, 5)

    def test_errors_named(self):
        with pytest.raises(TypeError, match="give scale"):
            render_plan((4, 4), 1)
        with pytest.raises(ValueError, match="scale and size disagree"):
            render_plan((4, 4), 1, scale=2.0, size=(9, 8))
        with pytest.raises(ValueError, match="output sizes differ"):
            render_plan((4, 4), 2, scale=torch.tensor([2.0, 3.0]))
        with pytest.raises(ValueError, match="lies outside"):
            render_plan((4, 4), 1, scale=2.0, window=(5, 0, 4, 4))
        with pytest.raises(ValueError, match="output size"):
            render_plan((4, 4), 1, scale=0.01)

    def test_plan_passed_directly(self):
        torch.manual_seed(0)
        asr = perturbed(retrofit(EDSR.from_preset("tiny"), skip="bicubic")).eval()
        lr = torch.rand(2, 3, 9, 7)
        plan = render_plan((9, 7), 2, scale=2.6, window=(2, 3, 8, 6))
        with torch.no_grad():
            torch.testing.assert_close(asr(lr, plan=plan), asr(lr, scale=2.6, window=(2, 3, 8, 6)))
        with pytest.raises(TypeError, match="not both"):
            asr(lr, plan=plan, scale=2.6)
        with pytest.raises(ValueError, match="does not match the plan"):
            asr(torch.rand(1, 3, 9, 7), plan=plan)
        with pytest.raises(TypeError, match="RenderPlan"):
            asr(lr, plan=(2, 3))  # type: ignore[arg-type]
        assert isinstance(plan.with_window(None), RenderPlan) and plan.with_window(None).whole


def _afe_scales(model: nn.Module, call) -> list[torch.Tensor]:
    seen = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args, kw: seen.append(args[-1]), with_kwargs=True)
        for m in model.modules()
        if isinstance(m, AFEBlock | AFETokenBlock)
    ]
    try:
        with torch.no_grad():
            call()
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.mark.parametrize(
    "factory",
    [
        lambda: retrofit(EDSR.from_preset("tiny")),
        lambda: EQSR.from_preset("tiny"),
        lambda: scaleeq.demo.demo_model(),
    ],
    ids=["retrofit", "eqsr", "demo"],
)
def test_every_afe_layer_sees_the_requested_scale(factory):
    import scaleeq.demo  # noqa: F401

    model = factory().eval()
    lr = torch.rand(1, 3, 10, 10)
    for kw, expected in (
        ({"scale": 2.33}, [[2.33, 2.33]]),  # 23.3 -> 23 pixels: still conditioned on 2.33
        ({"size": (23, 17)}, [[2.3, 1.7]]),
        ({"scale": (2.5, 1.5), "window": (1, 2, 4, 4)}, [[2.5, 1.5]]),
    ):
        seen = _afe_scales(model, lambda kw=kw: model(lr, **kw))
        assert seen, "no AFE block was called"
        for s in seen:
            assert isinstance(s, ScaleCondition)  # parsed once by the model, handed down
            assert s.value.dtype == torch.float64
            torch.testing.assert_close(s.value, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("reentrant", [False, True], ids=["non_reentrant", "reentrant"])
@pytest.mark.parametrize("name", list(MODELS))
def test_activation_checkpointing_gives_the_same_loss_and_gradients(name, reentrant):
    torch.manual_seed(0)
    model = perturbed(MODELS[name]()).train()
    lr = torch.rand(2, 3, 8, 8)
    scale = torch.tensor([2.0, 3.3], dtype=torch.float64)
    window = (torch.tensor([0, 5]), torch.tensor([3, 1]), 8, 8)
    target = torch.rand(2, 3, 8, 8)

    def loss_and_grads():  # .backward(): reentrant checkpointing does not support .grad()
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same drop-path draws in both runs (EQSR trains with them)
        loss = (model(lr, scale=scale, window=window) - target).abs().mean()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    ref_loss, ref_grads = loss_and_grads()
    assert len(ref_grads) == len([p for p in model.parameters() if p.requires_grad])
    assert model.set_grad_checkpointing(True, use_reentrant=reentrant) > 0
    loss, grads = loss_and_grads()
    model.set_grad_checkpointing(False)
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=1e-6)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)


def test_user_checkpointing_of_afe_blocks_with_the_scale_as_argument():
    """What a user writes around a single block: checkpoint(afe, x, scale)."""
    torch.manual_seed(0)
    blk = perturbed(AFEBlock(8))
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    scale = torch.tensor([2.0, 3.5])

    def grads(run):
        x.grad = None
        blk.zero_grad(set_to_none=True)
        run().square().sum().backward()
        return x.grad.clone(), blk.conv.to_style.weight.grad.clone()

    ref = grads(lambda: blk(x, scale))
    for reentrant in (False, True):
        got = grads(lambda r=reentrant: checkpoint(blk, x, scale, use_reentrant=r))
        for g, r in zip(got, ref, strict=True):
            torch.testing.assert_close(g, r)


def test_scale_context_under_checkpointing_fails_with_a_clear_error():
    blk = perturbed(AFEBlock(8))
    x = torch.randn(1, 8, 6, 6, requires_grad=True)
    with scaleeq.scale_context(2.0):
        y = checkpoint(blk, x, use_reentrant=False)
    with pytest.raises(ValueError, match="checkpoint"):
        y.sum().backward()


@pytest.mark.parametrize("hat", [False, True], ids=["swinir", "hat"])
def test_swin_models_built_with_use_checkpoint_train_after_retrofit(hat):
    torch.manual_seed(0)
    asr = retrofit(SwinLike(hat=hat, use_checkpoint=True))
    opt = torch.optim.Adam(asr.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in asr.state_dict().items()}
    lr, target = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    loss = (asr(lr, scale=torch.tensor([2.0, 2.5]), window=(0, 0, 8, 8)) - target).abs().mean()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    changed = [k for k, v in asr.state_dict().items() if not torch.equal(v, before[k])]
    assert any("afe" in k for k in changed) and any(
        "layers" in k and "afe" not in k for k in changed
    )


def test_swin_layout_refuses_a_forward_features_it_cannot_reproduce():
    class Different(SwinLike):
        def forward_features(self, x):
            return super().forward_features(x) * 2  # more than the standard loop

    with pytest.raises(
        ValueError, match="cannot reproduce the features of Different at its cut point"
    ):
        retrofit(Different())


# -- torch.compile ------------------------------------------------------------------------------
WIN = (torch.tensor([0, 3]), torch.tensor([1, 2]), 8, 8)
CALLS = {
    "float": {"scale": 2.5},
    "pair": {"scale": (2.5, 1.5)},
    "per-sample": {"scale": torch.tensor([2.0, 3.3]), "window": WIN},
}


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize(
    "factory",
    [lambda: retrofit(EDSR.from_preset("tiny"), skip="bicubic"), lambda: EQSR.from_preset("tiny")],
    ids=["retrofit-edsr", "eqsr"],
)
def test_dynamo_traces_a_forward_without_graph_breaks(factory, call):
    model = factory().eval()
    explanation = torch._dynamo.explain(model)(torch.rand(2, 3, 10, 12), **CALLS[call])
    assert explanation.graph_break_count == 0, explanation.break_reasons


@pytest.mark.parametrize("backend", ["eager", pytest.param("aot_eager", marks=pytest.mark.slow)])
def test_compiled_training_call_equals_eager_and_compiles_once(backend):
    """fullgraph + dynamic, forward and backward, three per-sample scale draws, one compile.

    ``eager``: dynamo's capture (guards, graph breaks, recompiles) with autograd through the
    captured graph (12 s on 2 cores); ``aot_eager`` (slow run, about 55 s) also traces the
    backward with AOTAutograd, as inductor does."""
    torch.manual_seed(0)
    up = scaleeq.NeuralKrigingUpsampler(16, hidden=16, blocks=1)  # small: compile time
    model = perturbed(retrofit(EDSR.from_preset("tiny"), skip="bicubic", upsampler=up))
    counter = torch._dynamo.testing.CompileCounterWithBackend(backend)
    compiled = torch.compile(model, backend=counter, fullgraph=True, dynamic=True)
    lr = torch.rand(2, 3, 10, 12)
    params = list(model.parameters())
    frames = None
    for s in (2.0, 3.3, 1.5):
        scale = torch.tensor([s, s + 0.1], dtype=torch.float64)
        out = compiled(lr, scale=scale, window=WIN)
        ref = model(lr, scale=scale, window=WIN)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        got = torch.autograd.grad(out.square().mean(), params)
        want = torch.autograd.grad(ref.square().mean(), params)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
        frames = counter.frame_count if frames is None else frames
        assert counter.frame_count == frames, "a new scale value recompiled the model"


@pytest.mark.slow
def test_compiled_inference_at_five_output_sizes_stays_compiled():
    """Sizes are dynamic ints. PyTorch's own convolution shape logic guards on the size of the
    HR tensor (a small / large split, e.g. ``64*H*W > 20480``), so crossing it may compile once
    more; the scale itself never causes a recompile."""
    torch.manual_seed(0)
    for model in (
        perturbed(retrofit(EDSR.from_preset("tiny"), skip="bicubic")).eval(),
        perturbed(EQSR.from_preset("tiny")).eval(),
    ):
        counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
        compiled = torch.compile(model, backend=counter, fullgraph=True, dynamic=True)
        lr = torch.rand(1, 3, 10, 12)
        first = None
        for s in (2.5, 3.7, 1.5, 8.0, 2.25):
            size = (round(10 * s), round(12 * s))
            with torch.no_grad():
                torch.testing.assert_close(
                    compiled(lr, size=size), model(lr, size=size), rtol=1e-5, atol=1e-5
                )
            first = counter.frame_count if first is None else first
        assert counter.frame_count <= 2 * first  # at most one more compile per frame, not five


@pytest.mark.slow
@pytest.mark.parametrize("call", list(CALLS))
def test_inductor_matches_eager(call):
    """Inductor with PyTorch's default dynamic-shape policy. (``dynamic=True`` under inductor
    fails inside PyTorch 2.13's sympy reasoning on sizes derived from a float scale, e.g.
    "cannot determine truth value of Relational: 9*FloorToInt(2.5*ToFloat(s73) + 0.5) < 9";
    the aot_eager tests cover ``dynamic=True``.)"""
    torch.manual_seed(0)
    up = scaleeq.NeuralKrigingUpsampler(16, hidden=16, blocks=1)
    model = perturbed(retrofit(EDSR.from_preset("tiny"), skip="bicubic", upsampler=up))
    compiled = torch.compile(model, fullgraph=True)
    lr = torch.rand(2, 3, 10, 12, requires_grad=True)
    out, ref = compiled(lr, **CALLS[call]), model(lr, **CALLS[call])
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    g1 = torch.autograd.grad(out.square().mean(), [lr])[0]
    g2 = torch.autograd.grad(ref.square().mean(), [lr])[0]
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-5)
