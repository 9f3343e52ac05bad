"""Running ``torch.export`` for :mod:`scaleeq.onnx.export`: the trace with dynamic sizes, what
its failures mean (a size the model's own code fixes), and the ONNX translations PyTorch's
exporter lacks."""

from __future__ import annotations

import re
import warnings
from typing import Any

import torch
from torch import nn

__all__ = [
    "DIM_NAMES",
    "SizeSpecialized",
    "fixed_message",
    "onnx_translations",
    "output_shape",
    "specialized_dims",
    "trace_program",
]


def onnx_translations() -> dict[Any, Any]:
    """ONNX translations of aten ops that PyTorch's exporter (torch 2.13) has none for and that
    architectures' own code uses: ``aten.sort.stable`` (ATD sorts its tokens by category).

    ``sort`` is ONNX ``TopK`` with ``K`` the whole axis: ``TopK`` orders equal values by their
    index (the spec's tie rule), so this is a stable sort, the order torch's CPU sort gives.
    """
    from onnxscript import opset18 as op

    def sort_stable(self, *, stable=None, dim: int = -1, descending: bool = False):
        k = op.Shape(self, start=dim) if dim == -1 else op.Shape(self, start=dim, end=dim + 1)
        values, indices = op.TopK(self, k, axis=dim, largest=int(descending), sorted=1)
        return values, indices

    return {torch.ops.aten.sort.stable: sort_stable}


class SizeSpecialized(RuntimeError):
    """``torch.export`` found that the model's own code fixes input sizes marked dynamic;
    ``dims`` are those dimensions of the first input (0: batch, 2: height, 3: width)."""

    def __init__(self, message: str, dims: set[int]) -> None:
        super().__init__(message)
        self.dims = dims


DIM_NAMES = {0: "batch", 1: "channels", 2: "height", 3: "width"}


def specialized_dims(err: BaseException) -> set[int] | None:
    """The input dimensions a ``torch.export`` constraint violation names (its first line
    lists them, ``Constraints violated (L['lr'].size()[0], ...)!``), or ``None`` for any
    other error."""
    from torch._dynamo.exc import UserError, UserErrorType

    if not (isinstance(err, UserError) and err.error_type is UserErrorType.CONSTRAINT_VIOLATION):
        return None
    head = str(err).split("!", 1)[0]
    return {int(d) for d in re.findall(r"size\(\)\[(\d+)\]", head)} or None


def trace_program(wrapper: nn.Module, args: tuple, dynamic: dict, name: str) -> Any:
    """``torch.export`` of the wrapper: a size the trace would fix instead of keeping dynamic is
    an error here (:class:`SizeSpecialized`), not a silently specialised graph."""
    dims = dynamic[next(iter(dynamic))]
    what = (
        "a dynamic "
        + " and ".join(DIM_NAMES[d] for d in sorted(dims))
        + " and the scale and window as inputs"
        if dims
        else "the scale and window as inputs"
    )
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        try:
            return torch.export.export(wrapper, args, dynamic_shapes=dynamic, strict=False)
        except Exception as err:  # torch's message names the cause; say what was attempted
            fixed = specialized_dims(err)
            if fixed is None:
                message = f"torch.export could not trace {name} with {what}: {err}"
                raise RuntimeError(message) from err
            h, w = args[0].shape[-2:]
            raise SizeSpecialized(fixed_message(name, fixed, (h, w), err), fixed) from err


def fixed_message(
    name: str, fixed: set[int], size: tuple[int, int], err: BaseException | None = None
) -> str:
    """What to say when the trace at LR ``size`` fixed the input dimensions ``fixed``."""
    said = f" torch.export said: {err}" if err is not None else ""
    if not fixed & {2, 3}:
        return f"{name}'s own code fixes the input batch while tracing.{said}"
    h, w = size
    return (
        f"{name}'s own code fixes the input "
        + " and ".join(DIM_NAMES[d] for d in sorted(fixed & {2, 3}))
        + f" while tracing at {h} x {w}; trace at a larger example_size, or export a graph for "
        f"one LR size with input_size=(h, w) (e.g. input_size=({h}, {w})).{said}"
    )


def output_shape(exported: Any) -> tuple[int, ...]:
    """The (symbolic) shape of the program's one output, from the trace's metadata."""
    (spec,) = [n for n in exported.graph.nodes if n.op == "output"]
    return tuple(spec.args[0][0].meta["val"].shape)
