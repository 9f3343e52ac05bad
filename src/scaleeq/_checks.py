"""Input validation shared by every public entry point.

Each check raises ``TypeError`` (wrong kind of object) or ``ValueError`` (right kind, wrong
value) with a message that names the argument, what was expected and what came in.
Checks that read sizes or values are skipped while the call is traced (:func:`tracing`, the
one gate for ``torch.compile``, ``torch.export`` and ``torch.jit``), the way kornia does it:
callers never branch on tracing themselves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "check_channels",
    "check_int",
    "check_int_list",
    "check_matching",
    "check_min_size",
    "check_output_sizes",
    "check_pair",
    "check_positive_float",
    "check_render_pixels",
    "check_scale_values",
    "check_tensor",
    "check_token_count",
    "exporting",
    "float_dtype_for",
    "tracing",
]


def tracing() -> bool:
    """The package's one gate for traced code: True while ``torch.compile`` or
    ``torch.export`` (dynamo, which the ONNX exporter uses) or ``torch.jit`` traces the call.

    Sizes and values may then be symbolic, so every check that reads them returns without
    looking (a check would add guards, force a device sync, or fail on a fake or meta tensor),
    and size-dependent shortcuts take their branch-free form. Tests that want the traced form
    in eager code patch ``torch.compiler.is_compiling``, which this reads on every call.
    """
    if torch.compiler.is_compiling():
        return True
    return bool(torch.jit.is_tracing())


def exporting() -> bool:
    """True while ``torch.export`` traces the call (the ONNX exporter included): operations
    that have an opaque custom form for ``torch.compile`` take an out-of-place form that an
    exporter can translate instead."""
    fn = getattr(torch.compiler, "is_exporting", None)  # torch >= 2.5
    return bool(fn()) if fn is not None else False


def check_tensor(x: object, name: str, *, ndim: int, layout: str) -> torch.Tensor:
    """Check that ``x`` is a floating-point tensor of rank ``ndim``.

    Args:
        x: the object to check.
        name: argument name used in the error message.
        ndim: expected rank.
        layout: human-readable layout for the message, e.g. ``"(B, C, H, W)"``.

    Raises:
        TypeError: ``x`` is not a tensor, or not floating point.
        ValueError: ``x`` has the wrong rank.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {layout}, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(
            f"{name} must be a {ndim}-D tensor of shape {layout}, got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def check_channels(x: torch.Tensor, name: str, expected: int, *, dim: int = 1) -> None:
    """Raise ``ValueError`` unless ``x.shape[dim] == expected``."""
    if x.shape[dim] != expected:
        raise ValueError(
            f"{name} must have {expected} channels in dim {dim}, got {x.shape[dim]} "
            f"(shape {tuple(x.shape)})"
        )


def check_min_size(
    x: torch.Tensor, name: str, minimum: tuple[int, int] = (1, 1), why: str = ""
) -> None:
    """Raise ``ValueError`` unless ``x``'s last two sides are at least ``minimum`` (default: not
    empty); ``why`` says what needs the size (e.g. ``" for kernel_size (3, 3) with padding
    (0, 0)"``)."""
    if tracing():
        return
    h, w = x.shape[-2], x.shape[-1]
    if h < minimum[0] or w < minimum[1]:
        raise ValueError(
            f"{name} of spatial size {(h, w)} is too small{why}: at least {tuple(minimum)} needed"
        )


def check_pair(value: object, name: str) -> tuple[int, int]:
    """Turn an int or a pair of ints into ``(int, int)``; raise a named error otherwise."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got bool")
    if isinstance(value, int):
        return value, value
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        a, b = value
        if (
            isinstance(a, int)
            and isinstance(b, int)
            and not isinstance(a, bool)
            and not isinstance(b, bool)
        ):
            return a, b
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def check_int(value: object, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` if it is an int (not a bool) ``>= minimum``; else raise ``TypeError``
    (not an int) or ``ValueError`` (too small), naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def float_dtype_for(device: torch.device | str) -> torch.dtype:
    """The dtype scale and offset features are computed in: float64, or float32 on Apple's MPS
    (which has no float64)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def check_positive_float(value: object, name: str) -> float:
    """Return ``value`` as a float if it is a finite real number > 0; else ``TypeError`` (not
    a real number) or ``ValueError`` (not finite, or <= 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a finite number > 0, got {value!r}")
    if not 0 < value < math.inf:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _autocast_on(device_type: str) -> bool:
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # torch < 2.4: no device argument
        return bool(torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled())


def check_matching(x: torch.Tensor, name: str, weight: torch.Tensor | None) -> None:
    """Raise a named error unless ``x`` can meet the module's weights: ``ValueError`` if it is
    on another device (PyTorch would fail later with "Tensor on device cpu is not on the
    expected device meta!" or "Expected all tensors to be on the same device"), ``TypeError``
    if its dtype differs outside autocast (PyTorch: "expected m1 and m2 to have the same
    dtype"). Skipped while compiling."""
    if weight is None or tracing():
        return
    if x.device != weight.device:
        raise ValueError(
            f"{name} is on device {x.device} but the model's weights are on {weight.device}: "
            f"move the input ({name}.to({str(weight.device)!r})) or the model "
            f"(model.to({str(x.device)!r}))"
        )
    if x.dtype == weight.dtype or _autocast_on(x.device.type):
        return
    raise TypeError(
        f"{name} has dtype {x.dtype} but the model's weights are {weight.dtype}: convert the "
        f"input ({name}.to({weight.dtype})) or the model (model.to({x.dtype})), or run under "
        "torch.autocast"
    )


def check_int_list(value: object, name: str, *, length: int | None = None) -> list[int]:
    """A non-empty sequence of ints >= 1 (of ``length`` items if given), as a list."""
    if isinstance(value, int | str) or not hasattr(value, "__len__"):
        raise TypeError(f"{name} must be a sequence of ints, got {value!r}")
    items = list(value)  # type: ignore[call-overload]
    if not items or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in items
    ):
        raise ValueError(f"{name} must be a non-empty sequence of ints >= 1, got {value!r}")
    if length is not None and len(items) != length:
        raise ValueError(f"{name} must have {length} items (one per group), got {len(items)}")
    return items


def check_token_count(x: torch.Tensor, name: str, size: tuple[int, int]) -> None:
    """Raise ``ValueError`` unless the token sequence ``x`` ``(B, L, C)`` holds ``L = H * W``
    tokens for ``size = (H, W)``."""
    if tracing():
        return
    h, w = size
    if x.shape[1] != h * w:
        raise ValueError(
            f"{name} has {x.shape[1]} tokens but x_size={(h, w)} needs H * W = {h * w}"
        )


def check_scale_values(t: torch.Tensor, name: str, maximum: float) -> None:
    """Raise ``ValueError`` unless every value of the parsed scale ``t`` is finite, > 0 and at
    most ``maximum``; a meta-device tensor (a shape without values) is refused by name."""
    if tracing():
        return
    if t.device.type == "meta":
        raise ValueError(
            f"{name} must hold values; got a tensor on the meta device (shape only): "
            "pass a number, a pair, or a CPU / GPU tensor"
        )
    ok = (t > 0) & (t <= maximum)  # NaN fails too
    if not bool(ok.all()):
        raise ValueError(
            f"{name} must be finite and > 0 (at most 2**53) everywhere, got values "
            f"{t[~ok].flatten()[:4].tolist()}"
        )


def check_output_sizes(
    in_size: tuple[int, int],
    name: str,
    *,
    exact: torch.Tensor | tuple[float, float] | None = None,
    maximum: float = math.inf,
    rounded: torch.Tensor | tuple[int, int] | None = None,
) -> None:
    """The output-size rule's bounds: raise ``ValueError`` if an ``exact`` output side
    (``in_size * r``; checked before rounding, so int64 cannot overflow) exceeds ``maximum``,
    or a ``rounded`` size is below 1. Each is an ``(N, 2)`` tensor or one pair.

    While traced, the tensor reads and the bound are skipped; a pair of (possibly symbolic)
    Python ints is still checked for sizes below 1 (a guard under ``torch.compile``), so a
    compiled call never renders an empty output silently."""
    traced = tracing()
    if exact is not None and not traced:
        big = float(exact.max()) if isinstance(exact, torch.Tensor) else max(exact)
        if big > maximum:
            shown = big if isinstance(exact, torch.Tensor) else tuple(exact)
            raise ValueError(
                f"{name} maps input size {tuple(in_size)} to output size {shown}, beyond the "
                "largest supported side 2**53 (scaleeq.scale.MAX_SIDE)"
            )
    if rounded is None:
        return
    if isinstance(rounded, torch.Tensor):
        if traced:
            return
        bad = (rounded < 1).any(dim=1)
        if not bool(bad.any()):
            return
        out = tuple(rounded[bad][0].tolist())
    elif rounded[0] >= 1 and rounded[1] >= 1:
        return
    else:
        out = tuple(rounded)
    raise ValueError(
        f"{name} maps input size {tuple(in_size)} to output size {out}; both sides must be >= 1"
    )


def check_render_pixels(batch: int, height: int, width: int, limit: int) -> None:
    """The size guard: raise ``ValueError`` if one call would render more than ``limit`` HR
    pixels (``batch * height * width``)."""
    if tracing():
        return
    if batch * height * width > limit:
        raise ValueError(
            f"the requested render of {batch} x {height} x {width} = {batch * height * width:.3g} "
            f"HR pixels exceeds the limit of {limit:.3g} pixels per call "
            "(scaleeq.geometry.MAX_RENDER_PIXELS); render it in tiles with scaleeq.upscale, or "
            "in windows"
        )
