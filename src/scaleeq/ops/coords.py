"""HR query grids: the one place that defines where an HR pixel sits on the LR grid.

Convention (the one the official EQSR code and ``F.grid_sample(align_corners=False)`` use):
pixels are unit squares and both grids cover the same image extent. On an axis with LR length
``n`` and HR length ``N``, HR pixel ``i`` (its centre) sits at

.. math::  u_i = (i + 1/2) \\, n / N - 1/2

in *LR-pixel units*, where LR pixel ``k`` has its centre at ``u = k``. Its nearest LR pixel is
``round(u_i)`` with ties broken half-to-even (as PyTorch's nearest ``grid_sample`` does), and
its offset from that pixel's centre is ``u_i - round(u_i)`` in ``[-1/2, 1/2]``.

``u_i = ((2i + 1) n - N) / (2N)`` is a ratio of integers, so the nearest pixel is computed
exactly in integer arithmetic: no float rounding decides a tie.

The HR grid may be rendered in *windows* ``(top, left, height, width)``; indices outside
``[0, N)`` (the halo of a window at the border) are flagged invalid and their nearest pixel is
clamped into the LR map. Everything is separable per axis, so a grid is two 1-D descriptions,
one per axis, each with a batch dimension (per-sample HR sizes and window positions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .._checks import float_dtype_for, tracing

__all__ = [
    "ROUNDINGS",
    "AxisQueries",
    "AxisRounding",
    "ExactRounding",
    "OfficialRounding",
    "Window",
    "axis_queries",
    "axis_rounding",
    "ceil_div",
    "nearest_index",
    "pad_to",
    "resolve_window",
]


def ceil_div(n, d):
    """``ceil(n / d)`` for sizes ``n >= 0`` and ``d > 0`` (ints or symbolic sizes).

    Written with non-negative operands only (``(n + d - 1) // d``), not as ``-(-n // d)``:
    floor division of a negative size is traced to ONNX's integer ``Div``, which truncates
    toward zero, so the exported graph would round the other way on sizes that are not a
    multiple of ``d``.
    """
    return (n + d - 1) // d


def pad_to(n, multiple):
    """How many pixels to add to a side of ``n`` to reach a multiple of ``multiple``
    (``0`` on a multiple); non-negative operands only, for the reason given in
    :func:`ceil_div`."""
    return ceil_div(n, multiple) * multiple - n


@dataclass(frozen=True)
class AxisQueries:
    """Query geometry along one axis for a batch of (windows of) HR grids.

    Attributes:
        index: ``(B, n)`` int64, global HR pixel index of each query (may lie outside the image).
        valid: ``(B, n)`` bool, whether the index lies inside ``[0, N_b)``.
        nearest: ``(B, n)`` int64, nearest LR pixel, clamped into ``[0, n_lr)``.
        pos: ``(B, n)`` float, continuous position ``u`` in LR-pixel units.
        offset: ``(B, n)`` float, ``pos - nearest`` (in ``[-1/2, 1/2]`` for valid queries).
    """

    index: torch.Tensor
    valid: torch.Tensor
    nearest: torch.Tensor
    pos: torch.Tensor
    offset: torch.Tensor


def nearest_index(index: torch.Tensor, lr_len: int, hr_len: torch.Tensor) -> torch.Tensor:
    """Nearest LR pixel of HR pixel ``index`` (``round(u)``, ties to even), exact, unclamped.

    Args:
        index: int64 HR indices, any shape broadcastable with ``hr_len``.
        lr_len: LR length ``n``.
        hr_len: int64 HR lengths ``N`` (per sample).
    """
    num = (2 * index + 1) * lr_len - hr_len  # u = num / den
    den = 2 * hr_len
    q = torch.div(num, den, rounding_mode="floor")
    twice_rem = 2 * (num - q * den)  # in [0, 2 den)
    round_up = (twice_rem > den) | ((twice_rem == den) & (q % 2 == 1))
    return q + round_up.to(q.dtype)


class AxisRounding:
    """How :func:`axis_queries` places HR queries on the LR grid: each query's nearest LR pixel,
    its position ``u`` and its offset from that pixel's centre. A strategy object: instances
    are stateless and compare equal by type; :data:`ROUNDINGS` names them.

    Class attributes (each strategy declares its own):
        name: the ``rounding=`` spelling that selects it.
        window_exact: a query's placement depends on its own global index only, so the queries
            of a window equal the same slice of the whole grid's.
        strided: it reads feature maps at a stride ``s > 1`` (a pixel-unshuffle front end).
    """

    name: ClassVar[str]
    window_exact: ClassVar[bool]
    strided: ClassVar[bool]

    def place(
        self,
        lr_len: int,
        hr_len: torch.Tensor,
        index: torch.Tensor,
        *,
        dtype: torch.dtype,
        stride: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(nearest, pos, offset)`` of HR indices ``index`` ``(B, n)`` int64 on axes of HR
        lengths ``hr_len`` ``(B, 1)`` int64 and LR length ``lr_len``; ``nearest`` int64 clamped
        into the (feature) map, ``pos`` and ``offset`` in ``dtype``."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ExactRounding(AxisRounding):
    """The library's convention (``rounding="exact"``): ``u`` is a ratio of integers, so the
    nearest pixel is chosen in integer arithmetic (:func:`nearest_index`, ties to even) and
    ``pos`` / ``offset`` are computed in float64 (float32 on devices without it), then cast."""

    name = "exact"
    window_exact = True
    strided = True

    def place(
        self,
        lr_len: int,
        hr_len: torch.Tensor,
        index: torch.Tensor,
        *,
        dtype: torch.dtype,
        stride: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = hr_len * stride  # u = ((2i + 1) lr_len - s N) / (2 s N): the image's grid in features
        feat_len = ceil_div(lr_len, stride)
        nearest = nearest_index(index, lr_len, n).clamp(0, feat_len - 1)
        fdt = float_dtype_for(hr_len.device)
        pos = ((2 * index + 1) * lr_len - n).to(fdt) / (2 * n).to(fdt)
        offset = pos - nearest.to(fdt)
        return nearest, pos.to(dtype), offset.to(dtype)


class OfficialRounding(AxisRounding):
    """The official EQSR code's float32 evaluation (``rounding="official"``): normalised pixel
    centres ``f32(-1 + 1/N) + f32(2/N) i``, the nearest LR pixel as
    ``grid_sample(mode="nearest")`` picks it from them, ``u`` and the offset from float32 ops.
    It differs from :class:`ExactRounding` at float32 near-ties; it reproduces official
    checkpoints bit for bit. Stride 1 only.

    One of the official-checkpoint quirks gathered in :mod:`scaleeq.layers.official`; it is
    defined here, with the other rule, because the query geometry (``ops``, ``geometry``) sits
    below the layers.
    """

    name = "official"
    window_exact = True
    strided = False

    def place(
        self,
        lr_len: int,
        hr_len: torch.Tensor,
        index: torch.Tensor,
        *,
        dtype: torch.dtype,
        stride: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = _make_coord_f32(index, hr_len)  # HR query coordinate, float32
        u = ((g + 1) * lr_len - 1) / 2  # grid_sample's source index, float32
        nearest = torch.round(u).to(torch.int64).clamp(0, lr_len - 1)  # half-to-even
        lc = _make_coord_f32(nearest, torch.full_like(nearest, lr_len))
        offset = (g - lc) * lr_len / 2  # official rel (half-pixel units) / 2, float32 ops
        return nearest, u.to(dtype), offset.to(dtype)


#: The ``rounding=`` spellings and their strategies (the one table).
ROUNDINGS: dict[str, AxisRounding] = {"exact": ExactRounding(), "official": OfficialRounding()}


def axis_rounding(rounding: str, name: str = "rounding") -> AxisRounding:
    """The :class:`AxisRounding` that the name ``rounding`` selects (:data:`ROUNDINGS`).

    Raises:
        ValueError: not one of the names (the argument ``name`` is named in the message).
    """
    strategy = ROUNDINGS.get(rounding) if isinstance(rounding, str) else None
    if strategy is None:
        names = " or ".join(repr(k) for k in ROUNDINGS)
        raise ValueError(f"{name} must be {names}, got {rounding!r}")
    return strategy


def axis_queries(
    lr_len: int,
    hr_len: torch.Tensor,
    start: torch.Tensor,
    count: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    rounding: str | AxisRounding = "exact",
    stride: int = 1,
) -> AxisQueries:
    """Geometry of ``count`` consecutive HR queries from ``start`` along one axis.

    With ``stride`` ``s > 1`` the queries read a feature map at stride ``s`` of an image of
    length ``n`` (a pixel-unshuffle front end: feature pixel ``k`` covers image pixels
    ``[k s, (k + 1) s)``, its centre at image position ``(k + 1/2) s - 1/2``). Positions are
    then in feature-pixel units, ``u_i = (i + 1/2) n / (s N) - 1/2``, and the nearest pixel is
    clamped into the ``ceil(n / s)`` feature pixels. The output grid still follows the image.

    Args:
        lr_len: LR length ``n`` (shared by the batch): the image's, also with a ``stride``.
        hr_len: ``(B,)`` int64 full HR length ``N_b`` per sample.
        start: ``(B,)`` int64 first HR index per sample (may be negative: a halo).
        count: number of queries ``n_q``.
        dtype: float dtype of ``pos`` and ``offset`` (computed in float64, then cast).
        device: device of the result.
        rounding: an :class:`AxisRounding` or its name: ``"exact"`` (integer arithmetic, the
            library's convention, :class:`ExactRounding`) or ``"official"``: the official
            code's float32 evaluation (:class:`OfficialRounding`: normalised coordinates
            ``-1 + 1/N + (2/N) i`` in float32, ``u`` and the offset from float32 ops), which
            differs from the exact choice at float32 near-ties; used to reproduce official
            checkpoints bit for bit. Only with ``stride=1``.
        stride: the feature map's stride over the image (see above).

    Returns:
        :class:`AxisQueries` with tensors of shape ``(B, n_q)``.
    """
    strategy = rounding if isinstance(rounding, AxisRounding) else axis_rounding(rounding)
    if stride != 1 and not strategy.strided:
        raise ValueError(f"rounding={strategy.name!r} reads features at stride 1 only")
    hr_len = hr_len.to(device=device, dtype=torch.int64)
    start = start.to(device=device, dtype=torch.int64)
    index = start[:, None] + torch.arange(count, device=hr_len.device, dtype=torch.int64)
    n = hr_len[:, None]
    valid = (index >= 0) & (index < n)
    nearest, pos, offset = strategy.place(lr_len, n, index, dtype=dtype, stride=stride)
    return AxisQueries(index, valid, nearest, pos, offset)


def _make_coord_f32(index: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """Official pixel centres in [-1, 1]: ``f32(-1 + 1/n) + f32(2/n) * i``, all in float32."""
    length64 = length.to(torch.float64)
    first = (-1 + 1 / length64).to(torch.float32)
    step = (2 / length64).to(torch.float32)
    return first + step * index.to(torch.float32)


#: A window of the output: ``(top, left, height, width)``; ``top`` / ``left`` an int or a
#: ``(B,)`` int64 tensor (one position per sample), ``height`` / ``width`` ints.
Window = tuple[int | torch.Tensor, int | torch.Tensor, int, int]


def resolve_window(
    window: Window | None,
    full_sizes: torch.Tensor,
    out_size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Validate a window of the HR grid against each sample's full output size.

    Args:
        window: ``(top, left, height, width)``; ``top`` and ``left`` are ints or ``(B,)`` int
            tensors (one window per sample), ``height`` and ``width`` ints shared by the batch.
            ``None`` means the whole output, which then must be the same size for every sample.
        full_sizes: ``(B, 2)`` int64 full output sizes ``(H_b, W_b)`` (CPU).
        out_size: the output size shared by the batch, when the caller knows it as ints.

    Returns:
        ``(top, left, height, width)`` with ``top``/``left`` as ``(B,)`` int64 CPU tensors.

    Raises:
        TypeError: malformed ``window``.
        ValueError: a window outside some sample's output, or no window with unequal sizes.

    Checks that read tensor values are skipped while ``torch.compile`` traces.
    """
    b = full_sizes.shape[0]
    if window is None:
        if out_size is None:
            if not bool((full_sizes == full_sizes[:1]).all()):
                raise ValueError(
                    "the samples' output sizes differ "
                    f"({full_sizes.unique(dim=0).tolist()[:4]}); pass a window=(top, left, "
                    "height, width) shared in size, or one scale"
                )
            out_size = (int(full_sizes[0, 0]), int(full_sizes[0, 1]))
        zero = torch.zeros(b, dtype=torch.int64)
        return zero, zero.clone(), out_size[0], out_size[1]
    if not isinstance(window, tuple | list) or len(window) != 4:
        raise TypeError(f"window must be a tuple (top, left, height, width), got {window!r}")
    top, left, height, width = window
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise TypeError(f"window {name} must be an int >= 1, got {v!r}")

    def per_sample(v: object, name: str) -> torch.Tensor:
        if isinstance(v, torch.Tensor):
            n = v.numel()  # explicit comparisons: symbolic sizes under dynamo
            if v.is_floating_point() or v.dtype == torch.bool or v.ndim > 1 or (n != 1 and n != b):
                raise TypeError(f"window {name} must be an int or a ({b},) int tensor, got {v!r}")
            return v.detach().to("cpu", torch.int64).reshape(-1).expand(b).clone()
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"window {name} must be an int or a ({b},) int tensor, got {v!r}")
        return torch.full((b,), v, dtype=torch.int64)

    top_t, left_t = per_sample(top, "top"), per_sample(left, "left")
    static = isinstance(top, int) and isinstance(left, int) and out_size is not None
    if static:  # Python numbers: a check on ints (guards, not tensor reads, under dynamo)
        assert out_size is not None
        if top < 0 or left < 0 or top + height > out_size[0] or left + width > out_size[1]:
            raise ValueError(
                f"window (top={top}, left={left}, height={height}, width={width}) lies outside "
                f"the output, of size {tuple(out_size)}"
            )
        return top_t, left_t, height, width
    if tracing():
        return top_t, left_t, height, width
    bad = (
        (top_t < 0)
        | (left_t < 0)
        | (top_t + height > full_sizes[:, 0])
        | (left_t + width > full_sizes[:, 1])
    )
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(
            f"window (top={int(top_t[i])}, left={int(left_t[i])}, height={height}, width={width}) "
            f"lies outside the output of sample {i}, of size {tuple(full_sizes[i].tolist())}"
        )
    return top_t, left_t, height, width
