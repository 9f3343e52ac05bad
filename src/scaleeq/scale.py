"""Scale arguments and the output-size rule: the one parser of scales (:func:`parse_scale`)
and the one place the rule is written.

Every public entry point of scaleeq accepts a *scale argument* in one of these forms:

- a Python ``float`` or ``int`` ``r``: the same factor on both axes, for every sample;
- a pair ``(r_h, r_w)``: one factor per axis, for every sample;
- a tensor of shape ``()``, ``(B,)`` or ``(B, 2)``: per-sample factors (``(B,)`` applies to both
  axes); a leading dimension of 1 broadcasts over the batch.

:func:`as_scale_tensor` turns any of them into a float tensor of shape ``(B, 2)`` holding
``(r_h, r_w)`` per sample. Factors must be finite and > 0 (at most 2**53, ``MAX_SIDE``);
``r < 1`` (downscaling) is accepted here and rejected by the operations where it makes no sense.

Output-size rule: an input of size ``(h, w)`` at scale ``(r_h, r_w)`` gives
``(round(h * r_h), round(w * r_w))`` with halves rounded up; an explicit ``size=(H, W)`` gives
``r = (H / h, W / w)`` instead (:func:`scaleeq.geometry.render_plan`).

A call's whole geometry (sizes, windows, the plan) is :mod:`scaleeq.geometry`, built on this
module; the scale encoding of Eq. 2 is :class:`scaleeq.layers.encoding.ScaleEncoding`, and the
ambient scale for drop-in layers :mod:`scaleeq.context`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Union

import torch

from ._checks import check_output_sizes, check_scale_values

__all__ = [
    "MAX_SIDE",
    "ScaleCondition",
    "ScaleLike",
    "as_scale_tensor",
    "check_factor",
    "check_scale_batch",
    "check_size",
    "output_size",
    "output_sizes",
    "parse_scale",
    "round_half_up",
    "rule_output_size",
    "rule_output_sizes",
    "uniform_factors",
]

ScaleLike = Union[float, int, tuple[float, float], Sequence[float], torch.Tensor, "ScaleCondition"]

#: The largest output side scaleeq represents: float64 holds every integer up to it exactly,
#: and sizes stay far from int64 overflow. Larger scales (a scale above it would
#: take even a 1-pixel input past it, and overflows float32 scale features) or sizes get a
#: ``ValueError``.
MAX_SIDE = 2**53


@dataclass(frozen=True, eq=False)
class ScaleCondition:
    """A call's scale, parsed once, as scaleeq's models hand it to every scale-aware layer.

    A model validates its input and parses the scale once per call (its render plan), wraps
    the result in a ``ScaleCondition`` and passes that down: layers given one trust it (no
    parse, no checks) and share its encodings, computed once per encoding, device and dtype
    (:meth:`encoded`). :func:`parse_scale` returns :attr:`value` as it is.

    Attributes:
        value: ``(N, 2)`` float64 on the CPU, already validated (``N`` = 1 or the batch): the
            requested ``(r_h, r_w)``, or what the model conditions on instead (the official
            EQSR's cell ``2 / H``).
    """

    value: torch.Tensor
    _encodings: dict[Hashable, torch.Tensor] = field(default_factory=dict, repr=False)

    def encoded(self, key: Hashable, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The encoding stored under ``key``, computed by ``compute()`` on first use."""
        out = self._encodings.get(key)
        if out is None:
            out = self._encodings[key] = compute()
        return out


def check_factor(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} ({value!r})")
    v = float(value)
    if not (0 < v <= MAX_SIDE):  # NaN fails too; comparisons (not isfinite) trace symbolically
        raise ValueError(f"{name} must be finite and > 0 (at most 2**53), got {value!r}")
    return v


def parse_scale(
    scale: ScaleLike,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    name: str = "scale",
) -> torch.Tensor:
    """Parse a scale argument into a tensor of shape ``(N, 2)``, ``N`` = 1 or the batch size.

    Scalar and pair arguments give ``N = 1`` (uniform over the batch), which layers use to take
    faster paths; per-sample tensors keep their batch dimension. A :class:`ScaleCondition` was
    parsed by the model that made it: its value comes back unchecked.
    """
    device = torch.device(device) if device is not None else None
    if isinstance(scale, ScaleCondition):  # parsed by the caller: trusted
        return scale.value.to(
            device=device or scale.value.device, dtype=dtype or torch.get_default_dtype()
        )
    if isinstance(scale, torch.Tensor):
        if not (scale.is_floating_point() or scale.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"{name} must be a real-valued tensor, got dtype {scale.dtype}")
        if scale.device.type == "meta":
            check_scale_values(scale, name, MAX_SIDE)  # names the meta device (not traced)
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
        check_scale_values(t, name, MAX_SIDE)
        return t
    if isinstance(scale, Sequence) and not isinstance(scale, str):
        if len(scale) != 2:
            raise TypeError(
                f"{name} given as a sequence must be a pair (r_h, r_w), got {len(scale)} items "
                f"({scale!r}); pass per-sample scales as a tensor of shape (B,) or (B, 2)"
            )
        values = [check_factor(v, f"{name}[{i}]") for i, v in enumerate(scale)]
    elif scale is None:
        raise TypeError(
            f"{name} must be given (a number, an (r_h, r_w) pair or a tensor), got None"
        )
    else:
        v = check_factor(scale, name)
        values = [v, v]
    return torch.tensor([values], device=device, dtype=dtype or torch.get_default_dtype())


def uniform_factors(scale: object) -> tuple[float, float] | None:
    """``(r_h, r_w)`` as Python floats for a number or a pair (validated: the parser's form
    that stays symbolic under ``torch.compile``), else ``None`` (a tensor, or something
    :func:`parse_scale` will name the problem of)."""
    if isinstance(scale, torch.Tensor | ScaleCondition) or scale is None:
        return None
    if isinstance(scale, Sequence) and not isinstance(scale, str):
        if len(scale) != 2:
            return None
        return check_factor(scale[0], "scale[0]"), check_factor(scale[1], "scale[1]")
    v = check_factor(scale, "scale")
    return v, v


def check_scale_batch(scale: torch.Tensor, batch_size: int, name: str) -> None:
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
    t = parse_scale(scale, device=device, dtype=dtype, name=name)
    if batch_size is not None:
        check_scale_batch(t, batch_size, name)
        t = t.expand(batch_size, 2)
    return t.contiguous()


def round_half_up(v: float | torch.Tensor) -> int | torch.Tensor:
    """The output-size rule's rounding, ``floor(v + 1/2)`` (halves up), for a number (an int
    comes back) or a float64 tensor (an int64 tensor comes back). The only place it is written."""
    if isinstance(v, torch.Tensor):
        return torch.floor(v + 0.5).to(torch.int64)
    return math.floor(v + 0.5)


def rule_output_size(
    in_size: tuple[int, int], r: tuple[float, float], name: str = "scale"
) -> tuple[int, int]:
    """The output-size rule on Python numbers (stays symbolic under ``torch.compile``)."""
    out = (round_half_up(in_size[0] * r[0]), round_half_up(in_size[1] * r[1]))
    check_output_sizes(in_size, name, rounded=out)  # type: ignore[arg-type]
    check_output_sizes(in_size, name, exact=out, maximum=MAX_SIDE)  # type: ignore[arg-type]
    return out  # type: ignore[return-value]


def output_sizes(
    in_size: tuple[int, int], scale: ScaleLike, *, name: str = "scale"
) -> torch.Tensor:
    """Per-sample output sizes ``(N, 2)`` int64 (CPU): ``round(h * r_h)``, ``round(w * r_w)``.

    ``N`` is the scale's own leading size (1 for numbers and pairs); halves round up.

    Raises:
        ValueError: the scale is invalid or a size is < 1.
    """
    t = parse_scale(scale, device="cpu", dtype=torch.float64, name=name)
    return rule_output_sizes(in_size, t, name)


def rule_output_sizes(
    in_size: tuple[int, int], r: torch.Tensor, name: str = "scale"
) -> torch.Tensor:
    """:func:`output_sizes` of a parsed scale ``r`` ``(N, 2)`` float64 (CPU), not parsed again:
    ``(N, 2)`` int64; still refuses sizes below 1 or above :data:`MAX_SIDE`."""
    h, w = in_size
    exact = r * torch.tensor([h, w], dtype=torch.float64)
    check_output_sizes((h, w), name, exact=exact, maximum=MAX_SIDE)  # before int64 overflows
    sizes = round_half_up(exact)
    check_output_sizes((h, w), name, rounded=sizes)
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
