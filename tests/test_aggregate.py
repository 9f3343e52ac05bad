"""The kriging aggregation: backends against the unfold reference and a direct loop."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from scaleeq._checks import exporting
from scaleeq.ops import axis_queries, distance_kernel, kriging_aggregate
from scaleeq.ops._shifted import shifted_backward, shifted_forward, shifted_sum


def aggregate_loop(x, kernel, dist):
    """The defining sum, one neighbour at a time (tiny sizes only)."""
    _b, c, h, w = x.shape
    g, kk = kernel.shape[1:3]
    k = math.isqrt(kk)
    y = torch.zeros_like(x)
    for j in range(kk):
        oy, ox = j // k - k // 2, j % k - k // 2
        for i in range(h):
            for jj in range(w):
                if 0 <= i + oy < h and 0 <= jj + ox < w:
                    wgt = kernel[:, :, j, i, jj].repeat_interleave(c // g, dim=1)
                    if dist is not None:
                        wgt = wgt * dist[:, j, i, jj, None]
                    y[:, :, i, jj] += wgt * x[:, :, i + oy, jj + ox]
    return y


def random_inputs(b, g, cg, h, w, k, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, g * cg, h, w, generator=gen, dtype=dtype)
    kernel = torch.randn(b, g, k * k, h, w, generator=gen, dtype=dtype)
    dist = torch.rand(b, k * k, h, w, generator=gen, dtype=dtype)
    return x, kernel, dist


@pytest.mark.parametrize("backend", ["reference", "shifted"])
@pytest.mark.parametrize("with_dist", [True, False])
def test_backends_match_direct_loop(backend, with_dist):
    x, kernel, dist = random_inputs(2, 2, 3, 5, 6, 3, dtype=torch.float64)
    dist = dist if with_dist else None
    torch.testing.assert_close(
        kriging_aggregate(x, kernel, dist, backend=backend), aggregate_loop(x, kernel, dist)
    )


@given(
    b=st.integers(1, 2),
    g=st.integers(1, 3),
    cg=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    k=st.sampled_from([1, 3, 5]),
    seed=st.integers(0, 1000),
)
def test_shifted_matches_reference_forward_and_backward(b, g, cg, h, w, k, seed):
    x, kernel, dist = random_inputs(b, g, cg, h, w, k, seed=seed)
    inputs = [t.requires_grad_() for t in (x, kernel, dist)]
    y_ref = kriging_aggregate(*inputs, backend="reference")
    y = kriging_aggregate(*inputs, backend="shifted")
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    gy = torch.randn_like(y)
    for got, ref in zip(
        torch.autograd.grad(y, inputs, gy), torch.autograd.grad(y_ref, inputs, gy), strict=True
    ):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_shifted_noncontiguous_inputs():
    x, kernel, dist = random_inputs(2, 2, 2, 6, 5, 3)
    xt = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, other strides
    assert not xt.is_contiguous()
    torch.testing.assert_close(
        kriging_aggregate(xt, kernel, dist, backend="shifted"),
        kriging_aggregate(x, kernel, dist, backend="reference"),
    )


@pytest.mark.parametrize("with_dist", [True, False])
def test_shifted_gradcheck_float64(with_dist):
    x, kernel, dist = random_inputs(1, 2, 2, 4, 3, 3, dtype=torch.float64)
    inputs = [x.requires_grad_(), kernel.requires_grad_()] + (
        [dist.requires_grad_()] if with_dist else []
    )
    fn = (
        (lambda x, k, d: kriging_aggregate(x, k, d, backend="shifted"))
        if with_dist
        else (lambda x, k: kriging_aggregate(x, k, None, backend="shifted"))
    )
    assert torch.autograd.gradcheck(fn, inputs, fast_mode=True)


def test_distance_kernel_matches_direct_distances():
    n, N, M = 5, 13, 11  # LR 5x5 -> HR 13x11
    k, m = 3, 1
    qy = axis_queries(n, torch.tensor([N]), torch.tensor([-m]), N + 2 * m, dtype=torch.float64)
    qx = axis_queries(n, torch.tensor([M]), torch.tensor([-m]), M + 2 * m, dtype=torch.float64)
    ell = torch.tensor(0.8, dtype=torch.float64)
    r = distance_kernel(qy, qx, ell, k)
    assert r.shape == (1, 9, N, M)
    for i in range(N):
        for j in range(M):
            py = (i + 0.5) * n / N - 0.5
            px = (j + 0.5) * n / M - 0.5
            for t in range(9):
                ni, nj = i + t // 3 - 1, j + t % 3 - 1
                cy = min(max(round((ni + 0.5) * n / N - 0.5), 0), n - 1)  # no ties at these sizes
                cx = min(max(round((nj + 0.5) * n / M - 0.5), 0), n - 1)
                d2 = (py - cy) ** 2 + (px - cx) ** 2
                assert abs(r[0, t, i, j].item() - math.exp(-d2 / (2 * 0.8**2))) < 1e-12


class TestErrors:
    def test_unknown_backend(self):
        x, kernel, dist = random_inputs(1, 1, 2, 3, 3, 3)
        with pytest.raises(ValueError, match="backend must be one of"):
            kriging_aggregate(x, kernel, dist, backend="cuda")

    def test_shapes(self):
        x, kernel, dist = random_inputs(1, 2, 2, 3, 3, 3)
        with pytest.raises(ValueError, match="kernel dim 2 must be k\\*k"):
            kriging_aggregate(x, kernel[:, :, :8], None)
        with pytest.raises(ValueError, match="kernel must have shape"):
            kriging_aggregate(x, kernel[..., :2], None)
        with pytest.raises(ValueError, match="groups G=3 must divide"):
            kriging_aggregate(x, torch.randn(1, 3, 9, 3, 3), None)
        with pytest.raises(ValueError, match="dist must have shape"):
            kriging_aggregate(x, kernel, dist[:, :4])
        with pytest.raises(ValueError, match="x must be a 4-D"):
            kriging_aggregate(x[0], kernel, dist)


def test_torch_compile_fullgraph_with_shifted_backend():
    # fullgraph=True raises on any graph break: the op must be one opaque custom-op node,
    # with a fake implementation (shape propagation) and registered autograd.
    def loss(x, kernel, dist):
        return kriging_aggregate(x, kernel, dist, backend="shifted").sin().sum()

    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    x, kernel, dist = random_inputs(2, 2, 3, 6, 5, 3)
    inputs = [t.requires_grad_() for t in (x, kernel, dist)]
    eager_val = loss(*inputs)
    eager_grads = torch.autograd.grad(eager_val, inputs)
    val = compiled(*inputs)
    grads = torch.autograd.grad(val, inputs)
    torch.testing.assert_close(val, eager_val)
    for got, want in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.slow
def test_torch_compile_inductor_with_shifted_backend():
    def loss(x, kernel, dist):
        return kriging_aggregate(x, kernel, dist, backend="shifted").sin().sum()

    compiled = torch.compile(loss, fullgraph=True)
    x, kernel, dist = random_inputs(1, 2, 2, 5, 5, 3)
    inputs = [t.requires_grad_() for t in (x, kernel, dist)]
    torch.testing.assert_close(compiled(*inputs), loss(*inputs))
    for got, want in zip(
        torch.autograd.grad(compiled(*inputs), inputs),
        torch.autograd.grad(loss(*inputs), inputs),
        strict=True,
    ):
        torch.testing.assert_close(got, want)


def test_library_imports_and_runs_without_triton():
    # A fresh interpreter in which `import triton` fails, as on a machine without the package.
    code = textwrap.dedent(
        """
        import sys
        sys.modules["triton"] = None  # makes `import triton` raise ImportError
        import importlib.util
        real_find_spec = importlib.util.find_spec
        importlib.util.find_spec = (
            lambda name, *a: None if name == "triton" else real_find_spec(name, *a)
        )
        import torch, scaleeq
        from scaleeq.ops.aggregate import select_backend
        up = scaleeq.NeuralKrigingUpsampler(4, hidden=16, blocks=1)
        y = up(torch.randn(1, 4, 5, 5), scale=2.5)
        assert y.shape == (1, 3, 13, 13)
        assert select_backend("auto", torch.device("cuda")) == "shifted"
        try:
            select_backend("triton", torch.device("cuda"))
        except ValueError as e:
            assert "needs the triton package" in str(e)
        else:
            raise AssertionError("backend='triton' without triton must raise")
        assert "triton" not in sys.modules or sys.modules["triton"] is None
        print("ok")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")


def test_shifted_channels_last_and_mixed_layouts():
    x, kernel, dist = random_inputs(2, 4, 2, 7, 6, 3)
    ref = kriging_aggregate(x, kernel, dist, backend="reference")
    xc = x.contiguous(memory_format=torch.channels_last)
    b, g, kk, h, w = kernel.shape
    kc = kernel.reshape(b, g * kk, h, w).contiguous(memory_format=torch.channels_last)
    for xi, ki in ((xc, kernel), (x, kc.view(b, g, kk, h, w)), (xc, kc.view(b, g, kk, h, w))):
        torch.testing.assert_close(kriging_aggregate(xi, ki, dist, backend="shifted"), ref)


def test_eager_use_does_not_import_the_compiler_stack():
    """Eager forward/backward and tiled rendering stay off torch._dynamo / sympy (whose first
    import, through the custom op's dispatch, costs about 150 MB and a second or two)."""
    code = textwrap.dedent(
        """
        import sys, torch, scaleeq
        up = scaleeq.NeuralKrigingUpsampler(4, hidden=16, blocks=1)
        feat = torch.randn(1, 4, 5, 5, requires_grad=True)
        up(feat, scale=2.5).sum().backward()
        assert feat.grad is not None and up.blocks[0].conv1.weight.grad is not None
        scaleeq.upscale(up, feat.detach(), scale=3.0)
        print(sorted(m for m in ("torch._dynamo", "sympy") if m in sys.modules))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("with_dist", [True, False])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_shifted_sum_the_export_form_matches_the_direct_loop(with_dist, k):
    from scaleeq.ops._shifted import shifted_sum

    x, kernel, dist = random_inputs(2, 2, 3, 4, 7, k, dtype=torch.float64)
    dist = dist if with_dist else None
    torch.testing.assert_close(shifted_sum(x, kernel, dist), aggregate_loop(x, kernel, dist))


# -- Tests written for surviving mutants of the mutation-testing run (docs/testing.md) ----------
# Each states an invariant or compares with an independent reference; none takes its expected
# value from the code under test.


# -- ops/_shifted.py -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "needs", [(True, False, False), (False, True, False), (False, False, True)]
)
def test_shifted_backward_gives_exactly_the_needed_gradients_in_any_layout(needs):
    g = torch.Generator().manual_seed(5)
    b, grp, c, h, w = 2, 2, 4, 5, 6
    x = torch.rand(b, c, h, w, generator=g, dtype=torch.float64).to(
        memory_format=torch.channels_last
    )
    kernel = torch.rand(b, w, h, grp, 9, generator=g, dtype=torch.float64).permute(0, 3, 4, 2, 1)
    dist = torch.rand(b, 9, h, w, generator=g, dtype=torch.float64)
    gy = torch.rand(b, c, h, w, generator=g, dtype=torch.float64)
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, kernel, dist)]
    want = torch.autograd.grad(shifted_sum(*leaves), leaves, gy)  # out-of-place autograd path
    got = shifted_backward(gy, x, kernel, dist, needs)
    for need, gt, wt in zip(needs, got, want, strict=True):
        if need:
            torch.testing.assert_close(gt, wt)
        else:
            assert gt is None


# -- ops/aggregate.py ---------------------------------------------------------------------------


def test_distance_kernel_of_a_5x5_window_matches_direct_distances():
    n, big, k, m = 4, 7, 5, 2  # LR 4x4 -> HR 7x7, a 5x5 neighbourhood
    q = axis_queries(n, torch.tensor([big]), torch.tensor([-m]), big + 2 * m, dtype=torch.float64)
    r = distance_kernel(q, q, torch.tensor(0.7, dtype=torch.float64), k)
    assert r.shape == (1, k * k, big, big)

    def centre(i):  # nearest LR pixel of HR index i (clamped), no ties at these sizes
        return min(max(round((i + 0.5) * n / big - 0.5), 0), n - 1)

    for i in range(big):
        for j in range(big):
            py, px = (i + 0.5) * n / big - 0.5, (j + 0.5) * n / big - 0.5
            for t in range(k * k):
                cy, cx = centre(i + t // k - m), centre(j + t % k - m)
                want = math.exp(-((py - cy) ** 2 + (px - cx) ** 2) / (2 * 0.7**2))
                assert abs(r[0, t, i, j].item() - want) < 1e-12


def test_exporting_is_true_only_while_torch_export_traces():
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(exporting())
            return x + 1

    assert exporting() is False
    torch.export.export(Probe(), (torch.ones(2),), strict=False)
    assert seen and all(s is True for s in seen)


def _aggregate_inputs(dist_grad=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64, generator=g).requires_grad_()
    kernel = torch.randn(2, 2, 9, 5, 6, dtype=torch.float64, generator=g).requires_grad_()
    dist = torch.rand(2, 9, 5, 6, dtype=torch.float64, generator=g).requires_grad_(dist_grad)
    return x, kernel, dist


def _reference_grads(x, kernel, dist, gy):
    from scaleeq.ops._reference import aggregate_reference

    leaves = [t.detach().requires_grad_(t.requires_grad) for t in (x, kernel, dist)]
    aggregate_reference(*leaves).backward(gy)
    return [t.grad for t in leaves]


class _FakeTriton:
    """Stands in for ``scaleeq.ops._triton`` (interpreting, so CPU tensors are allowed): runs
    the shifted kernels and records what it was handed."""

    def __init__(self):
        self.calls = []

    def interpreting(self):
        return True

    def aggregate_triton_forward(self, x, kernel, dist):
        self.calls.append(("forward", x, kernel, dist))
        return shifted_forward(x, kernel, dist)

    def aggregate_triton_backward(self, gy, x, kernel, dist, needs):
        self.calls.append(("backward", gy, x, kernel, dist, needs))
        return shifted_backward(gy, x, kernel, dist, needs)


@pytest.mark.parametrize("path", ["function", "custom_op"])
@pytest.mark.parametrize("dist_grad", [True, False])
def test_triton_backend_hands_the_kernels_exactly_their_inputs(monkeypatch, path, dist_grad):
    """backend="triton" runs the Triton forward and backward (eager autograd.Function, or the
    custom op torch.compile sees) with the caller's tensors, a contiguous output gradient and
    the needed-gradient flags; other backends never touch Triton."""
    import scaleeq.ops.aggregate as agg

    fake = _FakeTriton()
    monkeypatch.setattr(agg, "_triton_module", lambda: fake)
    monkeypatch.setattr(agg, "triton_available", lambda: True)
    if path == "custom_op":
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    x, kernel, dist = _aggregate_inputs(dist_grad)
    gy = torch.randn(2, 6, 5, 4, dtype=torch.float64).transpose(1, 3)  # not contiguous
    y = agg.kriging_aggregate(x, kernel, dist, backend="triton")
    assert [c[0] for c in fake.calls] == ["forward"]
    assert all(a is b for a, b in zip(fake.calls[0][1:], (x, kernel, dist), strict=True))
    y.backward(gy)
    assert [c[0] for c in fake.calls] == ["forward", "backward"]
    _, got_gy, *saved, needs = fake.calls[1]
    assert got_gy.is_contiguous() and torch.equal(got_gy, gy)
    assert all(torch.equal(a, b) for a, b in zip(saved, (x, kernel, dist), strict=True))
    assert needs == (True, True, dist_grad)
    want = _reference_grads(x, kernel, dist, gy)
    torch.testing.assert_close(x.grad, want[0])
    torch.testing.assert_close(kernel.grad, want[1])
    assert (dist.grad is None) if not dist_grad else torch.allclose(dist.grad, want[2])
    fake.calls.clear()
    for backend in ("shifted", "reference", "auto"):  # CPU tensors: no Triton
        agg.kriging_aggregate(x, kernel, dist, backend=backend).sum().backward()
    assert fake.calls == []


def test_export_and_compile_paths_agree_with_the_eager_function(monkeypatch):
    """The shifted-sum form used while exporting and the custom op used under torch.compile give
    the eager function's values and gradients."""
    import scaleeq.ops.aggregate as agg

    x, kernel, dist = _aggregate_inputs()
    gy = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    want_y = agg.kriging_aggregate(x, kernel, dist).detach()  # the default backend, eager
    want = _reference_grads(x, kernel, dist, gy)
    for name in ("is_exporting", "is_compiling"):
        with monkeypatch.context() as m:
            m.setattr(torch.compiler, name, lambda: True)
            leaves = [t.detach().requires_grad_() for t in (x, kernel, dist)]
            y = agg.kriging_aggregate(*leaves, backend="shifted")
            torch.testing.assert_close(y, want_y)
            y.backward(gy)
            for got, ref in zip(leaves, want, strict=True):
                torch.testing.assert_close(got.grad, ref)


def test_eager_calls_do_not_dispatch_through_the_custom_op(monkeypatch):
    import scaleeq.ops.aggregate as agg

    def refuse(*args):
        raise AssertionError("the custom op was called outside torch.compile")

    monkeypatch.setattr(agg, "_aggregate_op", refuse)
    x, kernel, dist = _aggregate_inputs()
    agg.kriging_aggregate(x, kernel, dist, backend="shifted").sum().backward()


def _saved_bytes(fn) -> int:
    sizes = []

    def pack(t):
        sizes.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(sizes)


def test_shifted_saves_only_its_inputs_and_reference_is_plain_autograd():
    """The documented memory contract of "shifted" (saves its inputs for backward, nothing else),
    and "reference" an independent plain-autograd computation (it saves the unfolded input),
    so that comparing the two is not comparing shifted with itself."""
    x, kernel, dist = _aggregate_inputs()
    inputs = sum(t.numel() * t.element_size() for t in (x, kernel, dist))
    assert _saved_bytes(lambda: kriging_aggregate(x, kernel, dist, backend="shifted")) == inputs
    unfolded = x.numel() * 9 * x.element_size()
    assert _saved_bytes(lambda: kriging_aggregate(x, kernel, dist, backend="reference")) >= unfolded


def test_select_backend_rule(monkeypatch):
    import scaleeq.ops.aggregate as agg

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    fake = _FakeTriton()
    monkeypatch.setattr(agg, "_triton_module", lambda: fake)
    for available in (True, False):
        monkeypatch.setattr(agg, "triton_available", lambda a=available: a)
        assert agg.select_backend("auto", cuda) == ("triton" if available else "shifted")
        assert agg.select_backend("auto", cpu) == "shifted"
        assert agg.select_backend("shifted", cuda) == "shifted"
        assert agg.select_backend("reference", cpu) == "reference"
    with pytest.raises(
        ValueError, match=r"needs the triton package \(pip install scaleeq\[triton\]\)"
    ):
        agg.select_backend("triton", cuda)
    monkeypatch.setattr(agg, "triton_available", lambda: True)
    assert agg.select_backend("triton", cuda) == "triton"
    assert agg.select_backend("triton", cpu) == "triton"  # the fake interprets
    monkeypatch.setattr(fake, "interpreting", lambda: False)
    assert agg.select_backend("triton", cuda) == "triton"
    with pytest.raises(ValueError, match="needs CUDA tensors .* got tensors on cpu"):
        agg.select_backend("triton", cpu)


def test_former_backend_name_lean_is_an_alias_of_shifted():
    import scaleeq.ops.aggregate as agg

    assert agg.BACKEND_ALIASES == {"lean": "shifted"}
    assert "lean" not in agg.BACKENDS
    assert agg.check_backend("lean") == "shifted" and agg.check_backend("auto") == "auto"
    assert agg.select_backend("lean", torch.device("cpu")) == "shifted"
    assert agg.resolve_backend is agg.select_backend  # the former name, still importable
    for bad in ("Lean", "unfold", None, ["lean"]):
        with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'reference'"):
            agg.check_backend(bad)
    inputs = random_inputs(2, 2, 3, 5, 6, 3)
    torch.testing.assert_close(
        kriging_aggregate(*inputs, backend="lean"),
        kriging_aggregate(*inputs, backend="shifted"),
        rtol=0,
        atol=0,
    )


def test_kriging_aggregate_errors_name_argument_and_layout():
    x, kernel, dist = (t.detach() for t in _aggregate_inputs())
    cases = [
        ((x[0], kernel, dist), r"^x must be a 4-D tensor of shape \(B, C, H, W\)"),
        ((x, kernel[0], dist), r"^kernel must be a 5-D tensor of shape \(B, G, k\*k, H, W\)"),
        ((x, kernel, dist[0]), r"^dist must be a 4-D tensor of shape \(B, k\*k, H, W\)"),
        ((x, kernel[:, :, :4], dist[:, :4]), "kernel dim 2 must be k\\*k for an odd k, got 4"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            kriging_aggregate(*args)
