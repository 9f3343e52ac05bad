"""Scale arguments, output sizes, ScaleEncoding and the scale context."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import scaleeq
from scaleeq import (
    ScaleEncoding,
    as_scale_tensor,
    output_size,
    resolve_scale_and_size,
    scale_context,
)
from scaleeq.geometry import render_plan

from ._helpers import FUZZ, SCALE_WORDS, SIZE_ARG, WINDOW_ARG, _check_hw, _expected_hw, scale_args


class TestAsScaleTensor:
    def test_number_broadcasts_to_batch(self):
        t = as_scale_tensor(2.5, 3)
        assert t.shape == (3, 2)
        assert t.tolist() == [[2.5, 2.5]] * 3

    def test_int_and_pair(self):
        assert as_scale_tensor(3).tolist() == [[3.0, 3.0]]
        assert as_scale_tensor((2.5, 1.5), 2).tolist() == [[2.5, 1.5], [2.5, 1.5]]

    def test_tensor_forms(self):
        assert as_scale_tensor(torch.tensor(2.0), 2).tolist() == [[2.0, 2.0], [2.0, 2.0]]
        assert as_scale_tensor(torch.tensor([2.0, 3.0])).tolist() == [[2.0, 2.0], [3.0, 3.0]]
        per_axis = torch.tensor([[2.0, 1.0], [3.0, 4.0]])
        assert torch.equal(as_scale_tensor(per_axis, 2), per_axis)
        assert as_scale_tensor(torch.tensor([2, 3])).dtype == torch.get_default_dtype()

    def test_dtype_and_device(self):
        t = as_scale_tensor(1.7, 2, dtype=torch.float64, device="cpu")
        assert t.dtype == torch.float64 and t.device.type == "cpu"
        assert t[0, 0].item() == 1.7  # exact in float64

    @pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 0, 0.0, -1.5])
    def test_bad_number_values(self, bad):
        with pytest.raises(ValueError, match=r"scale.*finite and > 0"):
            as_scale_tensor(bad)

    @pytest.mark.parametrize(
        "bad", [torch.tensor([2.0, float("nan")]), torch.tensor([[1.0, 0.0]]), torch.tensor([-2.0])]
    )
    def test_bad_tensor_values(self, bad):
        with pytest.raises(ValueError, match=r"scale must be finite and > 0"):
            as_scale_tensor(bad)

    @pytest.mark.parametrize(
        "bad", [True, "2", [1.0, 2.0, 3.0], (2.0,), None, torch.tensor([True])]
    )
    def test_bad_types(self, bad):
        with pytest.raises(TypeError, match="scale"):
            as_scale_tensor(bad)

    def test_bad_tensor_shape(self):
        with pytest.raises(ValueError, match=r"\(B, 2\).*got shape \(2, 3\)"):
            as_scale_tensor(torch.ones(2, 3))

    def test_batch_mismatch(self):
        with pytest.raises(ValueError, match="3 per-sample scales but the input batch has 2"):
            as_scale_tensor(torch.tensor([2.0, 3.0, 4.0]), 2)

    def test_pair_items_are_named(self):
        with pytest.raises(ValueError, match=r"scale\[1\]"):
            as_scale_tensor((2.0, -1.0))


class TestOutputSize:
    def test_rule_rounds_halves_up(self):
        assert output_size((5, 5), 1.5) == (8, 8)  # 7.5 -> 8
        assert output_size((3, 10), (2.5, 0.25)) == (8, 3)  # 7.5 -> 8, 2.5 -> 3
        assert output_size((16, 16), 3.7) == (59, 59)  # 59.2

    @given(
        h=st.integers(1, 500), w=st.integers(1, 500), H=st.integers(1, 5000), W=st.integers(1, 5000)
    )
    def test_size_round_trips(self, h, w, H, W):
        r, size = resolve_scale_and_size((h, w), 2, size=(H, W))
        assert size == (H, W)
        assert output_size((h, w), r) == (H, W)

    def test_per_sample_sizes_must_agree(self):
        with pytest.raises(ValueError, match="different output sizes"):
            output_size((10, 10), torch.tensor([2.0, 3.0]))
        assert output_size((10, 10), torch.tensor([2.0, 2.01])) == (20, 20)

    def test_too_small(self):
        with pytest.raises(ValueError, match=r"output size \(0, 1\)"):
            output_size((1, 4), (0.2, 0.3))

    def test_scale_and_size_must_agree(self):
        r, size = resolve_scale_and_size((10, 20), 1, scale=2.0, size=(20, 40))
        assert size == (20, 40) and r.tolist() == [[2.0, 2.0]]
        with pytest.raises(ValueError, match="scale and size disagree"):
            resolve_scale_and_size((10, 20), 1, scale=2.0, size=(21, 40))
        with pytest.raises(TypeError, match="give scale"):
            resolve_scale_and_size((10, 20), 1)
        with pytest.raises(TypeError, match="size must be a pair of ints"):
            resolve_scale_and_size((10, 20), 1, size=(20.0, 40))
        with pytest.raises(ValueError, match="size must be >= 1"):
            resolve_scale_and_size((10, 20), 1, size=(0, 40))


def _encoding_float64_reference(r: np.ndarray, n: int) -> np.ndarray:
    """Eq. 2 evaluated in numpy float64, written independently of the module."""
    out = []
    for axis in range(2):
        v = r[:, axis]
        out.append(v[:, None])
        out.append(
            np.stack(
                [np.sin(2.0**i * np.pi * v / 10) for i in range(n)] or [v[:0]], axis=1
            ).reshape(len(v), n)
        )
        out.append(
            np.stack(
                [np.cos(2.0**i * np.pi * v / 10) for i in range(n)] or [v[:0]], axis=1
            ).reshape(len(v), n)
        )
    return np.concatenate(out, axis=1)


class TestScaleEncoding:
    def test_hand_values(self):
        enc = ScaleEncoding(2)(5.0, dtype=torch.float64)
        # r = 5: angles pi/2 and pi -> sin = (1, 0), cos = (0, -1), for both axes
        expected = torch.tensor([[5.0, 1.0, 0.0, 0.0, -1.0] * 2], dtype=torch.float64)
        torch.testing.assert_close(enc, expected, atol=1e-15, rtol=0)
        assert ScaleEncoding(2).out_features == 10

    def test_axes_are_separate(self):
        enc = ScaleEncoding(3)((2.0, 3.0), dtype=torch.float64)
        torch.testing.assert_close(enc[:, :7], ScaleEncoding(3)(2.0, dtype=torch.float64)[:, :7])
        torch.testing.assert_close(enc[:, 7:], ScaleEncoding(3)(3.0, dtype=torch.float64)[:, 7:])

    @given(st.lists(st.floats(0.05, 40.0), min_size=1, max_size=6), st.integers(0, 24))
    def test_float32_output_is_accurate_not_noise(self, values, n):
        r = np.asarray(values, dtype=np.float64)[:, None].repeat(2, axis=1)
        ref = _encoding_float64_reference(r, n)
        got = ScaleEncoding(n)(torch.from_numpy(r), dtype=torch.float32)
        assert got.dtype == torch.float32
        np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=5e-7 * max(1.0, r.max()))

    def test_naive_float32_is_noise(self):
        # The check above can fail: evaluating the high frequencies in float32 is noise.
        r = torch.tensor([3.7], dtype=torch.float32)
        naive = torch.sin(2.0**22 * math.pi * r / 10)
        exact = math.sin(2.0**22 * math.pi * 3.7 / 10)
        assert abs(naive.item() - exact) > 1e-2

    @given(st.floats(0.1, 30.0))
    def test_default_encoding_robust_to_float32_inputs(self, r):
        # The same scale given as float32 or float64 gives nearly the same features.
        enc = ScaleEncoding()
        f32 = enc(torch.tensor([r], dtype=torch.float32), dtype=torch.float64)
        f64 = enc(torch.tensor([r], dtype=torch.float64), dtype=torch.float64)
        torch.testing.assert_close(f32, f64, rtol=0, atol=1e-4)

    def test_bad_num_freqs(self):
        with pytest.raises(ValueError, match="num_freqs"):
            ScaleEncoding(-1)


class TestScaleContext:
    def test_set_nested_and_reset(self):
        assert scaleeq.current_scale() is None
        with scale_context(2.0):
            assert scaleeq.current_scale() == 2.0
            with scale_context((3.0, 1.5)):
                assert scaleeq.current_scale() == (3.0, 1.5)
            assert scaleeq.current_scale() == 2.0
        assert scaleeq.current_scale() is None

    def test_reset_on_error(self):
        with pytest.raises(RuntimeError), scale_context(2.0):
            raise RuntimeError("boom")
        assert scaleeq.current_scale() is None

    def test_validated_on_entry(self):
        with pytest.raises(ValueError, match="scale_context"), scale_context(-1.0):
            pass

    def test_thread_safe(self):
        conv = scaleeq.AdaptiveConv2d(4, 4, 3, zero_init=False)
        x = torch.randn(1, 4, 8, 8)
        expected = {r: conv(x, r) for r in (1.5, 3.5)}
        barrier = threading.Barrier(2)
        results: dict[float, list[torch.Tensor]] = {1.5: [], 3.5: []}

        def worker(r: float) -> None:
            with scale_context(r):
                for _ in range(20):
                    barrier.wait()  # both threads inside their contexts at the same time
                    with torch.no_grad():
                        results[r].append(conv(x))

        threads = [threading.Thread(target=worker, args=(r,)) for r in (1.5, 3.5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not torch.allclose(expected[1.5], expected[3.5])
        for r in (1.5, 3.5):
            assert len(results[r]) == 20
            for y in results[r]:
                torch.testing.assert_close(y, expected[r].detach())


def test_a_meta_device_scale_is_a_named_error_everywhere():
    """A shape-only tensor has no values to render at: one named error, not torch's
    'Cannot copy out of meta tensor' from deep inside."""
    from scaleeq import AdaptiveConv2d, AFEBlock, NeuralKrigingUpsampler, scale_context

    meta = torch.tensor(2.0, device="meta")
    x = torch.rand(1, 4, 5, 5)
    calls = {
        "upsampler": lambda: NeuralKrigingUpsampler(4, hidden=8, blocks=1)(x, scale=meta),
        "adaptive conv": lambda: AdaptiveConv2d(4, 4, 3)(x, scale=meta),
        "AFE block": lambda: AFEBlock(4)(x, scale=meta),
        "scale_context": lambda: scale_context(meta).__enter__(),
    }
    for call in calls.values():
        with pytest.raises(ValueError, match="must hold values; got a tensor on the meta device"):
            call()


# -- Tests written for surviving mutants of the mutation-testing run (docs/testing.md) ----------
# Each states an invariant or compares with an independent reference; none takes its expected
# value from the code under test.


def test_largest_side_is_accepted_and_one_more_doubling_is_not():
    assert as_scale_tensor(float(2**53)).tolist() == [[2.0**53, 2.0**53]]
    plan = render_plan((1, 1), 1, scale=float(2**53), max_pixels=2**200)
    assert plan.out_size == (2**53, 2**53)
    with pytest.raises(
        ValueError,
        match=r"^scale maps input size \(2, 1\) to output size "
        r"\(18014398509481984, 9007199254740992\), beyond the largest supported side 2\*\*53",
    ):
        render_plan((2, 1), 1, scale=float(2**53), max_pixels=2**200)


@pytest.mark.parametrize("scale", [(0.4, 0.5), (0.5, 0.04)])
def test_a_uniform_scale_that_empties_either_side_is_refused(scale):
    with pytest.raises(ValueError, match=r"^scale maps input size \(1, 10\) to output size"):
        render_plan((1, 10), 1, scale=scale)


def test_as_scale_tensor_names_its_argument_and_honours_device():
    with pytest.raises(ValueError, match=r"^factor must be finite and > 0"):
        as_scale_tensor(-1.0, name="factor")
    with pytest.raises(ValueError, match=r"^factor holds 3 per-sample scales"):
        as_scale_tensor(torch.ones(3), 2, name="factor")
    assert as_scale_tensor(2.5, 2, device="meta").device.type == "meta"


# -- Property-based fuzzing of the public API (issue 12) ----------------------------------------
# For random good and bad argument values a call either raises ValueError / TypeError whose
# message names the argument, or returns a finite output of the documented size; any other
# exception, a silent NaN, a wrong size or a slow example fails. Strategies, settings and checks:
# tests/_helpers.py.


@FUZZ
@given(
    lr=st.tuples(st.integers(-1, 9), st.integers(-1, 9)),
    batch=st.integers(-1, 3),
    scale=scale_args(batch=2),
    size=SIZE_ARG,
    window=WINDOW_ARG,
    max_pixels=st.one_of(st.none(), st.sampled_from([100, 10**6])),
)
def test_render_plan(lr, batch, scale, size, window, max_pixels):
    if size is None and scale is None:
        scale = 2.0
    try:
        plan = render_plan(lr, batch, scale=scale, size=size, window=window, max_pixels=max_pixels)
    except (ValueError, TypeError) as e:
        words = (*SCALE_WORDS, "batch", "input", "plan", "max_pixels")
        assert any(w in str(e) for w in words), f"{type(e).__name__}: {e}"
        return
    assert plan.batch == batch >= 1 and min(lr) >= 1
    assert plan.sizes.shape == (batch, 2) and bool((plan.sizes >= 1).all())
    assert plan.batch * plan.height * plan.width <= (max_pixels or 2**28)
    expected = _expected_hw(scale, size, None, lr)
    if expected is not None and plan.out_size is not None:
        _check_hw(expected, torch.empty(0, 0, *plan.out_size))


def test_the_python_number_rule_refuses_an_empty_output_while_traced_too(monkeypatch):
    """``rule_output_size`` (Python numbers, symbolic under ``torch.compile``) checks sizes
    below 1 also while traced, so a compiled call cannot render an empty output silently;
    only the bound at 2**53 is left to eager calls."""
    from scaleeq.scale import MAX_SIDE, rule_output_size

    for traced in (False, True):
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda traced=traced: traced)
        with pytest.raises(ValueError, match=r"output size \(0, 1\); both sides must be >= 1"):
            rule_output_size((3, 4), (0.1, 0.25))
        assert rule_output_size((3, 4), (0.5, 0.25)) == (2, 1)
    big = (float(MAX_SIDE), 1.0)
    assert rule_output_size((4, 4), big) == (4 * MAX_SIDE, 4)  # traced: the bound is skipped
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: False)
    with pytest.raises(ValueError, match="beyond the largest supported side"):
        rule_output_size((4, 4), big)
