"""Fused Triton kernels against the unfold reference.

Without a GPU these run on CPU tensors through Triton's interpreter (conftest sets
``TRITON_INTERPRET=1`` before triton is imported); the interpreter costs a few ms per program
instance, so the shapes are tiny and the kernels use large tiles there.
"""

from __future__ import annotations

import pytest
import torch

triton = pytest.importorskip("triton")

from scaleeq import NeuralKrigingUpsampler  # noqa: E402
from scaleeq.ops import kriging_aggregate  # noqa: E402
from scaleeq.ops._triton import interpreting  # noqa: E402
from scaleeq.ops.aggregate import select_backend  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if DEVICE.type == "cpu" and not interpreting():
    pytest.skip("no CUDA device and TRITON_INTERPRET is not set", allow_module_level=True)

SHAPES = [  # (B, G, C/G, H, W, k)
    (1, 1, 1, 1, 1, 3),
    (2, 2, 3, 5, 7, 3),
    (1, 4, 4, 1, 9, 3),
    (1, 2, 8, 9, 1, 3),
    (2, 3, 5, 6, 4, 5),
    (1, 1, 16, 24, 24, 3),
    (1, 2, 3, 7, 6, 1),
]


def _inputs(b, g, cg, h, w, k, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, g * cg, h, w, generator=gen, dtype=dtype).to(DEVICE)
    kernel = torch.randn(b, g, k * k, h, w, generator=gen, dtype=dtype).to(DEVICE)
    dist = torch.rand(b, k * k, h, w, generator=gen, dtype=dtype).to(DEVICE)
    return x, kernel, dist


def _check(x, kernel, dist, rtol=1e-5, atol=1e-5):
    inputs = [t.detach().requires_grad_() for t in (x, kernel, dist) if t is not None]

    def run(backend):
        x_, k_, *d = inputs
        return kriging_aggregate(x_, k_, d[0] if d else None, backend=backend)

    y_ref, y = run("reference"), run("triton")
    torch.testing.assert_close(y, y_ref, rtol=rtol, atol=atol)
    gy = torch.randn_like(y_ref)
    g_ref = torch.autograd.grad(y_ref, inputs, gy)
    g_tri = torch.autograd.grad(y, inputs, gy)
    for name, got, want in zip(("dx", "dkernel", "ddist"), g_tri, g_ref, strict=False):
        torch.testing.assert_close(
            got, want, rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}"
        )


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_and_gradients_match_reference_fp32(shape):
    _check(*_inputs(*shape))


def test_without_distance_kernel():
    x, kernel, _ = _inputs(2, 2, 3, 6, 5, 3)
    _check(x, kernel, None)


def test_noncontiguous_inputs():
    x, kernel, dist = _inputs(2, 2, 4, 8, 6, 3)
    xt = x.transpose(2, 3).contiguous().transpose(2, 3)
    kt = kernel.permute(0, 1, 2, 4, 3).contiguous().permute(0, 1, 2, 4, 3)
    dt = dist[:, :, :, :].transpose(0, 1).contiguous().transpose(0, 1)
    assert not (xt.is_contiguous() or kt.is_contiguous() or dt.is_contiguous())
    _check(xt, kt, dt)


def test_gradcheck_float64():
    x, kernel, dist = _inputs(1, 2, 2, 4, 3, 3, dtype=torch.float64)
    inputs = [t.requires_grad_() for t in (x, kernel, dist)]
    assert torch.autograd.gradcheck(
        lambda *a: kriging_aggregate(*a, backend="triton"), inputs, fast_mode=True
    )


def test_fp16_with_fp32_accumulation():
    x, kernel, dist = _inputs(1, 2, 4, 9, 7, 3)
    xh, kh, dh = x.half(), kernel.half(), dist.half()
    y = kriging_aggregate(xh, kh, dh, backend="triton")
    assert y.dtype == torch.float16
    ref = kriging_aggregate(xh.float(), kh.float(), dh.float(), backend="reference")
    torch.testing.assert_close(y.float(), ref, rtol=1e-2, atol=1e-2)


@pytest.mark.skipif(
    interpreting(), reason="the Triton interpreter's bf16 arithmetic is known to be wrong"
)
def test_bf16_with_fp32_accumulation():
    x, kernel, dist = _inputs(1, 2, 4, 9, 7, 3)
    xb, kb, db = x.bfloat16(), kernel.bfloat16(), dist.bfloat16()
    y = kriging_aggregate(xb, kb, db, backend="triton")
    assert y.dtype == torch.bfloat16
    ref = kriging_aggregate(xb.float(), kb.float(), db.float(), backend="reference")
    torch.testing.assert_close(y.float(), ref, rtol=3e-2, atol=3e-2)


def test_upsampler_on_triton_backend_matches_shifted():
    shifted = NeuralKrigingUpsampler(4, hidden=16, blocks=1, backend="shifted").to(DEVICE)
    tri = NeuralKrigingUpsampler(4, hidden=16, blocks=1, backend="triton").to(DEVICE)
    tri.load_state_dict(shifted.state_dict())
    feat = torch.randn(1, 4, 5, 6, device=DEVICE, requires_grad=True)
    y_l, y_t = shifted(feat, scale=2.5), tri(feat, scale=2.5)
    torch.testing.assert_close(y_t, y_l, rtol=1e-5, atol=1e-5)
    (g_l,) = torch.autograd.grad(y_l.square().sum(), feat)
    (g_t,) = torch.autograd.grad(y_t.square().sum(), feat)
    torch.testing.assert_close(g_t, g_l, rtol=1e-4, atol=1e-5)


def test_auto_picks_triton_only_for_cuda():
    assert select_backend("auto", torch.device("cpu")) == "shifted"
    assert select_backend("auto", torch.device("cuda")) == "triton"
