"""HR query geometry: exact nearest pixels, offsets, windows, the official float32 rule."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from scaleeq.ops.coords import axis_queries, ceil_div, nearest_index, pad_to, resolve_window

FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "eqsr_official_tiny"


def exact_position(i: int, n: int, N: int) -> Fraction:
    """HR pixel i's centre in LR-pixel units, as an exact fraction."""
    return (Fraction(i) + Fraction(1, 2)) * Fraction(n, N) - Fraction(1, 2)


@given(n=st.integers(1, 64), N=st.integers(1, 2000), data=st.data())
def test_nearest_is_exact_round_half_even(n, N, data):
    idx = data.draw(st.lists(st.integers(0, N - 1), min_size=1, max_size=20))
    got = nearest_index(torch.tensor(idx), n, torch.tensor(N)).tolist()
    expected = [round(exact_position(i, n, N)) for i in idx]  # Fraction rounds half to even
    assert got == expected


def test_ties_go_to_even():
    # n=16, N=56 (x3.5): HR pixel 3 sits at u = 0.5 exactly, pixel 10 at u = 2.5
    assert exact_position(3, 16, 56) == Fraction(1, 2)
    assert nearest_index(torch.tensor([3, 10]), 16, torch.tensor(56)).tolist() == [0, 2]


@given(
    n=st.integers(1, 40), N=st.integers(1, 400), start=st.integers(-5, 5), count=st.integers(1, 30)
)
def test_axis_queries(n, N, start, count):
    q = axis_queries(n, torch.tensor([N]), torch.tensor([start]), count, dtype=torch.float64)
    idx = list(range(start, start + count))
    assert q.index[0].tolist() == idx
    assert q.valid[0].tolist() == [0 <= i < N for i in idx]
    for k, i in enumerate(idx):
        assert abs(q.pos[0, k].item() - float(exact_position(i, n, N))) < 1e-12
        assert 0 <= q.nearest[0, k].item() < n
        if 0 <= i < N:
            assert abs(q.offset[0, k].item()) <= 0.5 + 1e-12
        torch.testing.assert_close(q.offset[0, k], q.pos[0, k] - q.nearest[0, k])


def test_per_sample_sizes_and_starts():
    q = axis_queries(4, torch.tensor([8, 12]), torch.tensor([0, 3]), 5, dtype=torch.float64)
    single = axis_queries(4, torch.tensor([12]), torch.tensor([3]), 5, dtype=torch.float64)
    assert torch.equal(q.nearest[1], single.nearest[0])
    torch.testing.assert_close(q.pos[1], single.pos[0])
    assert not torch.equal(q.nearest[0], q.nearest[1])


@pytest.mark.skipif(not FIXTURE.exists(), reason="shared/fixtures not beside the checkout")
def test_official_rounding_reproduces_the_fixture_bit_for_bit():
    io = torch.load(FIXTURE / "io.pt")
    mismatches_exact = 0
    for case, (H, W) in io["meta"]["cases"].items():
        ref = io[case]
        qy = axis_queries(16, torch.tensor([H]), torch.tensor([0]), H, rounding="official")
        qx = axis_queries(16, torch.tensor([W]), torch.tensor([0]), W, rounding="official")
        assert torch.equal(qy.nearest[0][:, None].expand(H, W), ref["lr_index"][..., 0])
        assert torch.equal(qx.nearest[0][None, :].expand(H, W), ref["lr_index"][..., 1])
        # official relative coordinate = 2 * offset (half-pixel units), channel 0 = x
        assert torch.equal(ref["rel_coord"][0, 0], (2 * qx.offset[0])[None, :].expand(H, W))
        assert torch.equal(ref["rel_coord"][0, 1], (2 * qy.offset[0])[:, None].expand(H, W))
        ex = axis_queries(16, torch.tensor([H]), torch.tensor([0]), H)
        mismatches_exact += int((ex.nearest != qy.nearest).sum())
    # the exact rule differs from the official float32 rule at float32 near-ties (x3.5)
    assert mismatches_exact > 0


class TestResolveWindow:
    sizes = torch.tensor([[20, 30], [25, 30]])

    def test_none_needs_equal_sizes(self):
        with pytest.raises(ValueError, match="output sizes differ"):
            resolve_window(None, self.sizes)
        top, left, h, w = resolve_window(None, torch.tensor([[20, 30], [20, 30]]))
        assert (h, w) == (20, 30) and top.tolist() == [0, 0] and left.tolist() == [0, 0]

    def test_per_sample_offsets(self):
        top, left, h, w = resolve_window((torch.tensor([0, 5]), 3, 10, 10), self.sizes)
        assert top.tolist() == [0, 5] and left.tolist() == [3, 3] and (h, w) == (10, 10)

    @pytest.mark.parametrize(
        "window",
        [(15, 0, 10, 10), (-1, 0, 5, 5), (0, 25, 5, 6), (torch.tensor([0, 16]), 0, 10, 10)],
    )
    def test_outside(self, window):
        with pytest.raises(ValueError, match="window .* lies outside the output of sample"):
            resolve_window(window, self.sizes)

    @pytest.mark.parametrize(
        "window",
        [(0, 0, 5), (0, 0, 0, 5), (0.5, 0, 5, 5), (torch.tensor([0.0, 1.0]), 0, 5, 5), "abcd"],
    )
    def test_malformed(self, window):
        with pytest.raises(TypeError, match="window"):
            resolve_window(window, self.sizes)


@given(n=st.integers(0, 10_000), d=st.integers(1, 64))
def test_ceil_div_and_pad_to_agree_with_exact_arithmetic(n, d):
    assert ceil_div(n, d) == math.ceil(Fraction(n, d))
    pad = pad_to(n, d)
    assert 0 <= pad < d and (n + pad) % d == 0


def test_ceil_div_uses_no_negative_floor_division():
    """Traced sizes become ONNX integer ``Div`` (which truncates toward zero): a size rule
    written as ``-(-n // d)`` rounds the other way in an exported graph. Emulate that
    truncation on a symbolic-free stand-in: an int subclass whose ``//`` truncates."""

    class Truncating(int):
        def __floordiv__(self, other):
            return Truncating(int(int(self) / int(other)))

        def __add__(self, other):
            return Truncating(int(self) + int(other))

        __radd__ = __add__

        def __sub__(self, other):
            return Truncating(int(self) - int(other))

        def __neg__(self):
            return Truncating(-int(self))

        def __mul__(self, other):
            return Truncating(int(self) * int(other))

        __rmul__ = __mul__

    for n in (11, 9, 13, 16):
        assert ceil_div(Truncating(n), 2) == -(-n // 2)
        assert pad_to(Truncating(n), 4) == -n % 4
    assert -(-Truncating(11) // 2) == 5  # the old spelling would give 5, not 6


# -- Tests written for surviving mutants of the mutation-testing run (docs/testing.md) ----------
# Each states an invariant or compares with an independent reference; none takes its expected
# value from the code under test.


def test_nearest_index_rounds_half_to_even_like_python():
    # ties (u = k + 1/2) need an even LR length: 8 -> 1 gives u = 3.5, 10 -> 1 gives u = 4.5
    for lr_len, hr_len in [(7, 7), (7, 14), (7, 3), (7, 35), (4, 1), (8, 1), (10, 1), (12, 3)]:
        index = torch.arange(-3, hr_len + 3)
        got = nearest_index(index, lr_len, torch.tensor(hr_len)).tolist()
        # u = ((2 i + 1) n - N) / (2 N); Python's round() of a Fraction is half-to-even
        want = [round(Fraction((2 * i + 1) * lr_len - hr_len, 2 * hr_len)) for i in index.tolist()]
        assert got == want


def test_axis_queries_dtype_and_device():
    q = axis_queries(4, torch.tensor([8]), torch.tensor([0]), 8, dtype=torch.float32)
    assert q.pos.dtype == q.offset.dtype == torch.float32
    q = axis_queries(4, torch.tensor([8]), torch.tensor([0]), 8, device="meta")
    assert {t.device.type for t in (q.index, q.valid, q.nearest, q.pos, q.offset)} == {"meta"}


@pytest.mark.parametrize(("lr_len", "hr_len"), [(16, 56), (16, 40), (5, 17), (7, 7), (3, 30)])
def test_official_rounding_is_grid_sample_nearest_on_float32_make_coord(lr_len, hr_len):
    # The official (LIIF-style) code: pixel centres -1 + 1/n + (2/n) i in float32, the LR pixel
    # chosen by grid_sample(mode="nearest", align_corners=False), the relative coordinate
    # (query - chosen centre) * n. Reproduced here with torch's own grid_sample.
    def make_coord(n):
        return (torch.tensor(-1 + 1 / n, dtype=torch.float32)
                + torch.tensor(2 / n, dtype=torch.float32)
                * torch.arange(n, dtype=torch.float32))  # fmt: skip

    g = make_coord(hr_len)
    grid = torch.stack([g, torch.zeros_like(g)], dim=-1)[None, None]  # (1, 1, N, 2): x, y
    lr_idx = torch.arange(lr_len, dtype=torch.float32).view(1, 1, 1, lr_len)
    want_nearest = F.grid_sample(lr_idx, grid, mode="nearest", align_corners=False)[0, 0, 0]
    lr_coord = make_coord(lr_len).view(1, 1, 1, lr_len)
    q_coord = F.grid_sample(lr_coord, grid, mode="nearest", align_corners=False)[0, 0, 0]
    want_rel = (g - q_coord) * lr_len
    q = axis_queries(lr_len, torch.tensor([hr_len]), torch.tensor([0]), hr_len, rounding="official")
    assert q.index.tolist() == [list(range(hr_len))] and q.valid.all()
    assert q.nearest[0].tolist() == want_nearest.long().tolist()
    assert torch.equal(2 * q.offset[0], want_rel)
    torch.testing.assert_close(q.pos[0], ((g + 1) * lr_len - 1) / 2, rtol=0, atol=0)
    q64 = axis_queries(lr_len, torch.tensor([hr_len]), torch.tensor([0]), hr_len,
                       rounding="official", dtype=torch.float64)  # fmt: skip
    assert q64.pos.dtype == q64.offset.dtype == torch.float64
    # a halo of 3 queries each side: the chosen LR pixel clamps to the border (int64)
    halo = axis_queries(lr_len, torch.tensor([hr_len]), torch.tensor([-3]), hr_len + 6,
                        rounding="official")  # fmt: skip
    gh = torch.tensor(-1 + 1 / hr_len, dtype=torch.float32) + torch.tensor(
        2 / hr_len, dtype=torch.float32
    ) * torch.arange(-3, hr_len + 3, dtype=torch.float32)
    grid_h = torch.stack([gh, torch.zeros_like(gh)], dim=-1)[None, None]
    want_h = F.grid_sample(
        lr_idx, grid_h, mode="nearest", padding_mode="border", align_corners=False
    )
    assert halo.nearest.dtype == torch.int64
    assert halo.nearest[0].tolist() == want_h[0, 0, 0].long().tolist()
