"""CUDA paths: Triton kernels, torch.compile, AMP training and tiled rendering on a GPU.

Marked ``cuda`` and deselected in the default run; ``benchmarks/gpu_check.py`` runs them with
``pytest -m cuda`` on a GPU. Its ``--dry`` mode runs the same tests on the CPU (Triton's
interpreter, tiny shapes; ``SCALEEQ_CHECK_DEVICE=cpu SCALEEQ_CHECK_SIZE=tiny``) inside the
default test run, so the GPU check cannot rot while no GPU is around.

Tolerances against the fp32 unfold reference (computed from the same, upcast inputs), stated
per dtype: fp32 ``rtol=atol=1e-4`` (sums of ``k*k`` products in a different order), fp16
``2e-2``, bf16 ``6e-2`` (8 mantissa bits; the kernels accumulate in fp32).
"""

from __future__ import annotations

import os

import pytest
import torch

import scaleeq
from scaleeq.models import EDSR, EQSR
from scaleeq.ops import kriging_aggregate

DEVICE = torch.device(os.environ.get("SCALEEQ_CHECK_DEVICE", "cuda"))
TINY = os.environ.get("SCALEEQ_CHECK_SIZE", "full") == "tiny"
pytestmark = [
    pytest.mark.cuda,  # deselected in the default run; gpu_check.py selects them (-m cuda)
    pytest.mark.skipif(
        DEVICE.type == "cuda" and not torch.cuda.is_available(),
        reason="no CUDA device (run benchmarks/gpu_check.py --dry for the CPU rehearsal)",
    ),
]
triton = pytest.importorskip("triton")

TOL = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 6e-2}
# the Triton interpreter's bf16 arithmetic is wrong (see test_triton.py): fp32 / fp16 there
DTYPES = [torch.float32, torch.float16] + ([] if DEVICE.type == "cpu" else [torch.bfloat16])
SHAPES = [(1, 1, 1, 1, 1, 3), (2, 2, 3, 5, 7, 3), (2, 3, 5, 6, 4, 5), (1, 2, 3, 7, 6, 1)]
if TINY:  # the rehearsal runs each test once or twice; tests/test_triton.py has every shape
    SHAPES = SHAPES[:2]
else:
    SHAPES += [(16, 32, 8, 48, 48, 3)]  # the training shape: B=16, C=256, 48x48


def _inputs(b, g, cg, h, w, k, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, g * cg, h, w, generator=gen)
    kernel = torch.randn(b, g, k * k, h, w, generator=gen)
    dist = torch.rand(b, k * k, h, w, generator=gen)
    return [t.to(DEVICE, dtype) for t in (x, kernel, dist)]


def _compare(inputs, dtype):
    leaves = [t.detach().requires_grad_() for t in inputs]
    ref_leaves = [t.detach().float().requires_grad_() for t in inputs]
    y = kriging_aggregate(*leaves, backend="triton")
    y_ref = kriging_aggregate(*ref_leaves, backend="reference")
    assert y.dtype == dtype
    tol = TOL[dtype]
    torch.testing.assert_close(y.float(), y_ref, rtol=tol, atol=tol)
    gy = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    got = torch.autograd.grad(y, leaves, gy.to(dtype))
    want = torch.autograd.grad(y_ref, ref_leaves, gy)
    for name, g, w in zip(("dx", "dkernel", "ddist"), got, want, strict=True):
        torch.testing.assert_close(
            g.float(), w, rtol=tol, atol=tol * 10, msg=lambda m, n=name: f"{n}: {m}"
        )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_triton_forward_and_gradients(shape, dtype):
    _compare(_inputs(*shape, dtype), dtype)


@pytest.mark.parametrize("layout", ["noncontiguous", "channels_last"])
def test_triton_strided_inputs(layout):
    x, kernel, dist = _inputs(2, 2, 4, 8, 6, 3, torch.float32)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
        dist = dist.contiguous(memory_format=torch.channels_last)
    else:
        x = x.transpose(2, 3).contiguous().transpose(2, 3)
        kernel = kernel.permute(0, 1, 2, 4, 3).contiguous().permute(0, 1, 2, 4, 3)
    assert not x.is_contiguous()
    _compare([x, kernel, dist], torch.float32)


@pytest.mark.skipif(TINY, reason="inference shape: GPU only")
def test_triton_inference_shape():
    x, kernel, dist = _inputs(1, 32, 8, 1024, 1024, 3, torch.float32)
    with torch.no_grad():
        y = kriging_aggregate(x, kernel, dist, backend="triton")
        ref = kriging_aggregate(x, kernel, dist, backend="shifted")
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)


def _edsr_star():
    if TINY:  # small upsampler: the rehearsal must stay fast
        up = scaleeq.NeuralKrigingUpsampler(16, hidden=16, blocks=1)
        return scaleeq.retrofit(EDSR.from_preset("tiny", upscale=2), skip="bicubic", upsampler=up)
    return scaleeq.retrofit(EDSR.from_preset("baseline", upscale=2), skip="bicubic").to(DEVICE)


@pytest.mark.parametrize("which", ["upsampler", "edsr_star"])
def test_compile_matches_eager_forward_and_backward(which):
    if TINY:
        pytest.skip(
            "CPU rehearsal: the default run's tests/test_plan.py compiles the upsampler and "
            "EDSR* (dynamo, fullgraph, dynamic) on the CPU; the GPU run compiles with inductor"
        )
    torch.manual_seed(0)
    if which == "upsampler":
        model = scaleeq.NeuralKrigingUpsampler(16, hidden=32, blocks=2).to(DEVICE)
        x = torch.randn(2, 16, 12, 10, device=DEVICE, requires_grad=True)
    else:
        model = _edsr_star()
        x = torch.rand(2, 3, 12, 10, device=DEVICE, requires_grad=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    kw = {
        "scale": torch.tensor([2.0, 3.3]),
        "window": (torch.tensor([0, 5]), torch.tensor([2, 0]), 16, 16),
    }
    compiled = torch.compile(model, backend="inductor", fullgraph=True, dynamic=True)
    out, ref = compiled(x, **kw), model(x, **kw)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    (g1,) = torch.autograd.grad(out.square().mean(), [x])
    (g2,) = torch.autograd.grad(ref.square().mean(), [x])
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("which", ["edsr_star", "eqsr_tiny"])
def test_amp_training_step(which):
    torch.manual_seed(0)
    model = _edsr_star() if which == "edsr_star" else EQSR.from_preset("tiny").to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    before = [p.detach().clone() for p in model.parameters()]
    lr = torch.rand(4, 3, 16, 16, device=DEVICE)
    hr = torch.rand(4, 3, 16, 16, device=DEVICE)
    scale = torch.tensor([1.5, 2.0, 3.3, 4.0])
    window = (torch.tensor([0, 3, 9, 20]), torch.tensor([1, 0, 5, 30]), 16, 16)
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        loss = (model(lr, scale=scale, window=window).float() - hr).abs().mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    opt.step()
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


def test_tiled_upscale_equals_whole_render():
    torch.manual_seed(0)
    model = _edsr_star().eval()
    with torch.no_grad():
        for p in model.upsampler.parameters():
            p.add_(0.02 * torch.randn_like(p))
    lr = torch.rand(1, 3, 20, 17, device=DEVICE)
    with torch.no_grad():
        whole = model(lr, scale=3.7)
    tiled = scaleeq.upscale(model, lr, scale=3.7, max_window_pixels=400)
    torch.testing.assert_close(tiled, whole, rtol=1e-4, atol=1e-4)
