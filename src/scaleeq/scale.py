"""Scale arguments, output sizes, the scale encoding and the scale context.

Every public entry point of scaleeq accepts a *scale argument* in one of these forms:

- a Python ``float`` or ``int`` ``r``: the same factor on both axes, for every sample;
- a pair ``(r_h, r_w)``: one factor per axis, for every sample;
- a tensor of shape ``()``, ``(B,)`` or ``(B, 2)``: per-sample factors (``(B,)`` applies to both
  axes); a leading dimension of 1 broadcasts over the batch.

:func:`as_scale_tensor` turns any of them into a float tensor of shape ``(B, 2)`` holding
``(r_h, r_w)`` per sample. Factors must be finite and > 0 (at most 2**53, ``MAX_SIDE``); ``r < 1`` (downscaling) is accepted
here and rejected by the operations where it makes no sense.

Output-size rule: an input of size ``(h, w)`` at scale ``(r_h, r_w)`` gives
``(round(h * r_h), round(w * r_w))`` with halves rounded up; an explicit ``size=(H, W)`` gives
``r = (H / h, W / w)`` instead (:func:`resolve_scale_and_size`).

:func:`scale_context` lets drop-in layers that are called as ``forward(x)`` (for instance inside
a pretrained ``nn.Sequential`` body) find the scale of the current call. It is backed by
:mod:`contextvars`, so it is per thread and per asyncio task, and it is reset when the ``with``
block exits, even on error.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Sequence
from typing import Union

import torch
from torch import nn

from ._checks import check_int, float_dtype_for, is_compiling

__all__ = [
    "MAX_SIDE",
    "ScaleEncoding",
    "ScaleLike",
    "as_scale_tensor",
    "check_size",
    "current_scale",
    "output_size",
    "output_sizes",
    "resolve_scale_and_size",
    "scale_context",
]

ScaleLike = Union[float, int, tuple[float, float], Sequence[float], torch.Tensor]  # noqa: UP007

_SCALE_CONTEXT: contextvars.ContextVar[ScaleLike | None] = contextvars.ContextVar(
    "scaleeq_scale", default=None
)


#: The largest output side scaleeq represents: float64 holds every integer up to it exactly,
#: and sizes stay far from int64 overflow. Larger scales (a scale above it would
#: take even a 1-pixel input past it, and overflows float32 scale features) or sizes get a
#: ``ValueError``.
MAX_SIDE = 2**53


def _check_number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} ({value!r})")
    v = float(value)
    if not (0 < v <= MAX_SIDE):  # NaN fails too; comparisons (not isfinite) trace symbolically
        raise ValueError(f"{name} must be finite and > 0 (at most 2**53), got {value!r}")
    return v


def _parse_scale(
    scale: ScaleLike,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    name: str = "scale",
) -> torch.Tensor:
    """Parse a scale argument into a tensor of shape ``(N, 2)``, ``N`` = 1 or the batch size.

    Scalar and pair arguments give ``N = 1`` (uniform over the batch), which layers use to take
    faster paths; per-sample tensors keep their batch dimension.
    """
    device = torch.device(device) if device is not None else None
    if isinstance(scale, torch.Tensor):
        if not (scale.is_floating_point() or scale.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"{name} must be a real-valued tensor, got dtype {scale.dtype}")
        if scale.device.type == "meta" and not is_compiling():
            raise ValueError(
                f"{name} must hold values; got a tensor on the meta device (shape only): "
                "pass a number, a pair, or a CPU / GPU tensor"
            )
        t = scale.to(device=device or scale.device, dtype=dtype or torch.get_default_dtype())
        if t.ndim == 0:
            t = t.reshape(1, 1).expand(1, 2)
        elif t.ndim == 1:
            t = t[:, None].expand(-1, 2)
        elif t.ndim != 2 or t.shape[1] != 2:
            raise ValueError(
                f"{name} must be a tensor of shape (), (B,) or (B, 2) holding (r_h, r_w), "
                f"got shape {tuple(scale.shape)}"
            )
        if t.shape[0] == 0:
            raise ValueError(f"{name} must not be empty, got shape {tuple(scale.shape)}")
        if not is_compiling():
            ok = (t > 0) & (t <= MAX_SIDE)  # NaN fails too
            if not bool(ok.all()):
                raise ValueError(
                    f"{name} must be finite and > 0 (at most 2**53) everywhere, got values "
                    f"{t[~ok].flatten()[:4].tolist()}"
                )
        return t
    if isinstance(scale, Sequence) and not isinstance(scale, str):
        if len(scale) != 2:
            raise TypeError(
                f"{name} given as a sequence must be a pair (r_h, r_w), got {len(scale)} items "
                f"({scale!r}); pass per-sample scales as a tensor of shape (B,) or (B, 2)"
            )
        values = [_check_number(v, f"{name}[{i}]") for i, v in enumerate(scale)]
    elif scale is None:
        raise TypeError(
            f"{name} must be given (a number, an (r_h, r_w) pair or a tensor), got None"
        )
    else:
        v = _check_number(scale, name)
        values = [v, v]
    return torch.tensor([values], device=device, dtype=dtype or torch.get_default_dtype())


def _check_batch(scale: torch.Tensor, batch_size: int, name: str) -> None:
    n = scale.shape[0]
    if n != 1 and n != batch_size:  # explicit comparisons: symbolic sizes under dynamo
        raise ValueError(
            f"{name} holds {n} per-sample scales but the input batch has "
            f"{batch_size} samples; give one scale per sample or a single scale"
        )


def as_scale_tensor(
    scale: ScaleLike,
    batch_size: int | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    name: str = "scale",
) -> torch.Tensor:
    """Turn any scale argument into a float tensor of shape ``(B, 2)`` holding ``(r_h, r_w)``.

    Args:
        scale: a number, an ``(r_h, r_w)`` pair, or a tensor of shape ``()``, ``(B,)`` or
            ``(B, 2)``.
        batch_size: the batch size ``B`` to broadcast to; ``None`` keeps the scale's own
            leading size (1 for numbers and pairs).
        device: device of the result (default: the tensor's own, else CPU).
        dtype: floating dtype of the result (default: ``torch.get_default_dtype()``).
        name: argument name used in error messages.

    Returns:
        Tensor of shape ``(B, 2)``.

    Raises:
        TypeError: ``scale`` is not a number, pair or real tensor.
        ValueError: a factor is non-finite or <= 0, the tensor has the wrong shape, or its
            batch size is neither 1 nor ``batch_size``.

    Example:
        >>> as_scale_tensor(2.5, 2)
        tensor([[2.5000, 2.5000],
                [2.5000, 2.5000]])
        >>> as_scale_tensor((3, 1.5)).shape
        torch.Size([1, 2])
    """
    t = _parse_scale(scale, device=device, dtype=dtype, name=name)
    if batch_size is not None:
        _check_batch(t, batch_size, name)
        t = t.expand(batch_size, 2)
    return t.contiguous()


def round_half_up(v: float | torch.Tensor) -> int | torch.Tensor:
    """The output-size rule's rounding, ``floor(v + 1/2)`` (halves up), for a number (an int
    comes back) or a float64 tensor (an int64 tensor comes back). The only place it is written."""
    if isinstance(v, torch.Tensor):
        return torch.floor(v + 0.5).to(torch.int64)
    return math.floor(v + 0.5)


def _too_large(in_size: tuple[int, int], out: object, name: str) -> ValueError:
    return ValueError(
        f"{name} maps input size {tuple(in_size)} to output size {out}, beyond the largest "
        f"supported side 2**53 (scaleeq.scale.MAX_SIDE)"
    )


def _empty_output(in_size: tuple[int, int], out: tuple[int, int], name: str) -> ValueError:
    return ValueError(
        f"{name} maps input size {tuple(in_size)} to output size {tuple(out)}; both sides must be >= 1"
    )


def _python_sizes(
    in_size: tuple[int, int], r: tuple[float, float], name: str = "scale"
) -> tuple[int, int]:
    """The output-size rule on Python numbers (stays symbolic under ``torch.compile``)."""
    out = (round_half_up(in_size[0] * r[0]), round_half_up(in_size[1] * r[1]))
    if out[0] < 1 or out[1] < 1:
        raise _empty_output(in_size, out, name)
    if not is_compiling() and max(out) > MAX_SIDE:
        raise _too_large(in_size, out, name)
    return out  # type: ignore[return-value]


def output_sizes(
    in_size: tuple[int, int], scale: ScaleLike, *, name: str = "scale"
) -> torch.Tensor:
    """Per-sample output sizes ``(N, 2)`` int64 (CPU): ``round(h * r_h)``, ``round(w * r_w)``.

    ``N`` is the scale's own leading size (1 for numbers and pairs); halves round up.

    Raises:
        ValueError: the scale is invalid or a size is < 1.
    """
    h, w = in_size
    t = _parse_scale(scale, device="cpu", dtype=torch.float64, name=name)
    exact = t * torch.tensor([h, w], dtype=torch.float64)
    if not is_compiling() and bool((exact > MAX_SIDE).any()):  # before int64 could overflow
        raise _too_large((h, w), exact.max().item(), name)
    sizes = round_half_up(exact)
    if not is_compiling():
        bad = (sizes < 1).any(dim=1)
        if bool(bad.any()):
            raise _empty_output((h, w), tuple(sizes[bad][0].tolist()), name)
    return sizes


def output_size(
    in_size: tuple[int, int], scale: ScaleLike, *, name: str = "scale"
) -> tuple[int, int]:
    """Output size ``(round(h * r_h), round(w * r_w))`` of an ``(h, w)`` input (halves round up).

    All samples must share the output size; with per-sample scales that give different sizes,
    pass an explicit ``size`` (or a window) to the operation instead.

    Raises:
        ValueError: the scale is invalid, the samples' output sizes differ, or a size is < 1.
    """
    sizes = output_sizes(in_size, scale, name=name).unique(dim=0)
    if sizes.shape[0] != 1:
        raise ValueError(
            f"{name} gives different output sizes for different samples ({sizes.tolist()[:4]}); "
            "pass an explicit size=(H, W) shared by the batch"
        )
    out_h, out_w = sizes[0].tolist()
    return out_h, out_w


def check_size(size: object, name: str = "size") -> tuple[int, int]:
    """Validate an explicit output size ``(H, W)``: a pair of ints >= 1.

    Raises:
        TypeError: not a pair of ints.
        ValueError: a side < 1.
    """
    if (
        not isinstance(size, Sequence)
        or isinstance(size, str)
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in size)
    ):
        raise TypeError(f"{name} must be a pair of ints (H, W), got {size!r}")
    if size[0] < 1 or size[1] < 1:
        raise ValueError(f"{name} must be >= 1 on both sides, got {tuple(size)}")
    if max(size) > MAX_SIDE:
        raise ValueError(f"{name} {tuple(size)} exceeds the largest supported side 2**53")
    return int(size[0]), int(size[1])


def resolve_scale_and_size(
    in_size: tuple[int, int],
    batch_size: int,
    *,
    scale: ScaleLike | None = None,
    size: tuple[int, int] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Resolve ``scale`` and/or ``size`` into a ``(B, 2)`` scale tensor and an output size.

    - only ``scale``: the size follows the output-size rule (:func:`output_size`);
    - only ``size=(H, W)``: ``r = (H / h, W / w)`` for every sample;
    - both: they must agree (``output_size(in_size, scale) == size``), else ``ValueError``.

    Returns:
        ``(scale, (H, W))`` with ``scale`` of shape ``(B, 2)``.
    """
    from .geometry import render_plan  # the plan is where the rule lives; scale.py is below it

    plan = render_plan(in_size, batch_size, scale=scale, size=size)
    assert plan.out_size is not None
    r = plan.scale.to(device=device, dtype=dtype or torch.get_default_dtype())
    return r.expand(batch_size, 2).contiguous(), plan.out_size


@contextlib.contextmanager
def scale_context(scale: ScaleLike) -> Iterator[None]:
    """Set the scale that drop-in layers use when they are called without one.

    Layers such as :class:`~scaleeq.AdaptiveConv2d` and :class:`~scaleeq.AFEBlock` read it when
    called as ``layer(x)``; an explicit ``layer(x, scale)`` always wins. The value is validated
    on entry. Contexts nest; each thread and asyncio task sees only its own.

    Example:
        >>> import torch, scaleeq
        >>> conv = scaleeq.AdaptiveConv2d(4, 4, 3)
        >>> with scaleeq.scale_context(2.5):
        ...     y = torch.nn.Sequential(conv)(torch.randn(1, 4, 8, 8))
    """
    _parse_scale(scale, name="scale_context(scale)")
    token = _SCALE_CONTEXT.set(scale)
    try:
        yield
    finally:
        _SCALE_CONTEXT.reset(token)


def current_scale() -> ScaleLike | None:
    """The scale set by the innermost active :func:`scale_context`, or ``None``."""
    return _SCALE_CONTEXT.get()


def resolve_layer_scale(scale: ScaleLike | None, layer: str) -> ScaleLike:
    """Return ``scale`` if given, else the context scale; raise a how-to error if neither."""
    if scale is not None:
        return scale
    ctx = _SCALE_CONTEXT.get()
    if ctx is None:
        raise ValueError(
            f"{layer} needs a scale: call it as {layer}(x, scale=r), or run it inside "
            "`with scaleeq.scale_context(r):`; got no scale argument and no active scale "
            "context. (Under activation checkpointing the backward pass recomputes the layer "
            "after the `with` block has exited: pass the scale as an argument instead, e.g. "
            "checkpoint(layer, x, r).)"
        )
    return ctx


class ScaleEncoding(nn.Module):
    """Sine-cosine encoding of a per-axis scale (EQSR paper, Eq. 2).

    For each axis' factor ``r`` the features are
    ``[r, sin(2^i pi r / 10) for i < n, cos(2^i pi r / 10) for i < n]``, concatenated for
    ``r_h`` then ``r_w``: ``out_features = 2 * (2 * num_freqs + 1)``.

    The features are computed in float64 and cast to the requested dtype, so every channel is
    a deterministic function of the scale rather than of float32 rounding. (The official code
    feeds 40 frequencies of ``2 / H`` through float32; above ``2^20`` such channels are noise.)
    The default ``num_freqs=8`` resolves scale differences down to ~0.1 with its finest period
    ``20 / 2^7``; an input given as float32 instead of float64 then moves a channel by at most
    ~1e-4 at ``r = 30``.

    Args:
        num_freqs: number of frequencies ``n`` (>= 0).

    Shape:
        - scale: any scale argument (see :func:`as_scale_tensor`), ``N`` samples.
        - output: ``(N, out_features)``.
    """

    def __init__(self, num_freqs: int = 8) -> None:
        super().__init__()
        check_int(num_freqs, "num_freqs", minimum=0)
        self.num_freqs = num_freqs
        self.out_features = 2 * (2 * num_freqs + 1)

    def forward(
        self,
        scale: ScaleLike,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Encode ``scale`` (any scale argument) into ``(N, out_features)`` features.

        Args:
            scale: number, pair or tensor ``()``, ``(N,)``, ``(N, 2)``.
            device: device of the result (default: the tensor's, else CPU).
            dtype: dtype of the result (default: ``torch.get_default_dtype()``).
        """
        if device is None:
            device = scale.device if isinstance(scale, torch.Tensor) else torch.device("cpu")
        fdt = float_dtype_for(device)
        # validated where the scale lives (a render plan's scale is on the CPU: no device
        # sync), then moved
        r = _parse_scale(scale, dtype=fdt, name="scale").to(device)  # (N, 2)
        freqs = (2.0 ** torch.arange(self.num_freqs, device=r.device, dtype=fdt)) * (math.pi / 10)
        ang = r[:, :, None] * freqs  # (N, 2, n)
        feats = torch.cat([r[:, :, None], torch.sin(ang), torch.cos(ang)], dim=2)  # (N, 2, 2n+1)
        return feats.flatten(1).to(dtype or torch.get_default_dtype())

    def extra_repr(self) -> str:
        return f"num_freqs={self.num_freqs}, out_features={self.out_features}"
