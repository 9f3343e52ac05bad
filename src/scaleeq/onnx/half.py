"""The float16 form of an exported graph (``export_onnx(..., precision="fp16")``): the image
computation in float16, the geometry as traced.

:func:`to_float16` rewrites a float32 graph. It does not trace the model again in half
precision, because the model's own code derives the dtype of its query positions and offsets
from the features' (``plan.queries(..., dtype=feat.dtype)`` in the upsampler): a model in
float16 would compute the positions of the queries, absolute LR coordinates, in float16, whose
step is half an LR pixel from 512 on and a whole pixel from 1024 on. The graph is converted
instead:

- **The image computation** is every tensor whose *values* depend on the values of the image
  inputs (``lr``, or ``feat`` of a split export's render graph): a dataflow pass from those
  inputs, in which ``Shape`` and ``Size`` read only the shape. Its float32 tensors become
  float16: its weights are stored as float16 (half the bytes), its ``Cast``
  nodes to float32 cast to float16, and a float32 tensor from outside it (a scale encoding, a
  distance kernel, a mask) is cast where the image computation reads it (once per tensor).
- **The rest** (the output size, the render plan, the query positions and offsets, the scale
  encodings and what the graph computes from them alone) depends only on the scale, the window
  and the inputs' shapes: it is left as traced, in float64 / float32 / int64, so output sizes
  and query positions do not change with precision.
- Inputs the operator types on their own (``Resize``'s scales, ``GridSample``'s grid) keep
  their type, and the operators of ``keep_float32`` run in float32 (their float16 inputs cast
  up, their outputs cast down where float16 operators read them).
- Image inputs named in ``float32_inputs`` stay float32 in the graph's signature (cast to
  float16 inside); the others become float16 inputs. Outputs named in ``float32_outputs`` are
  cast back to float32; the others are float16 outputs.

Only standard ONNX operators are written (``Cast`` nodes and float16 initializers).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

import numpy as np

from .files import require

__all__ = ["KEEP_FLOAT32", "half_graph", "image_nodes", "to_float16"]

#: Operators of the image computation that stay in float32 in a float16 graph (none: every
#: operator the exporter writes for scaleeq's models is accurate enough in float16;
#: docs/benchmarks.md, "ONNX in float16").
KEEP_FLOAT32: frozenset[str] = frozenset()

# operators that read only the shape of their input
_SHAPE_ONLY = frozenset({"Shape", "Size"})
# inputs / outputs whose float type the operator fixes on its own (not the data type T)
_FIXED_INPUTS = {"Resize": {1, 2}, "Upsample": {1}, "GridSample": {1}}
_FIXED_OUTPUTS = {"LayerNormalization": {1, 2}}  # mean and inverse deviation: stash_type
# operators that only move the values of their first input: a weight reshaped, transposed or
# expanded before the image computation reads it is stored in float16 and moved in float16
_LAYOUT = frozenset(
    {
        "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Flatten", "Slice",
        "Gather", "Expand", "Tile",
    }
)  # fmt: skip
# the largest finite float16
_FP16_MAX = float(np.finfo(np.float16).max)


def image_nodes(graph: Any, image: Iterable[str]) -> list[bool]:
    """For each node of ``graph`` (in order), whether it is part of the image computation:
    whether one of its inputs depends on the values of the tensors ``image`` (``Shape`` and
    ``Size`` read only shapes).

    Raises:
        ValueError: such a node holds a subgraph (``If``, ``Loop``, ``Scan``), which this pass
            does not convert.
    """
    onnx = require("onnx", "to_float16")
    depends = set(image)
    flags = []
    for node in graph.node:
        flag = node.op_type not in _SHAPE_ONLY and any(i in depends for i in node.input if i)
        if flag:
            subgraphs = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            if any(a.type in subgraphs for a in node.attribute):
                raise ValueError(
                    f"node {node.name!r} ({node.op_type}) of the image computation holds a "
                    "subgraph, which the float16 conversion does not convert"
                )
            depends.update(o for o in node.output if o)
        flags.append(flag)
    return flags


def half_graph(model: Any) -> Any:
    """:func:`to_float16` of one graph written by :func:`~scaleeq.onnx.export_onnx`: its first
    input is the image (``lr``, or ``feat`` of a split export's render graph); ``lr`` and the
    output ``sr`` stay float32 in the signature, ``feat`` becomes float16 (the render graph's
    input and the features graph's output)."""
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    return to_float16(
        model,
        image=inputs[:1],
        float32_inputs=[n for n in inputs[:1] if n == "lr"],
        float32_outputs=[n for n in outputs if n == "sr"],
    )


def to_float16(
    model: Any,
    *,
    image: Collection[str],
    float32_inputs: Collection[str] = (),
    float32_outputs: Collection[str] = (),
    keep_float32: Collection[str] = KEEP_FLOAT32,
) -> Any:
    """The float16 form of the float32 ``onnx.ModelProto`` ``model`` (see the module doc):
    a new model; ``model`` is not changed.

    Args:
        model: a graph whose image computation is in float32 (the exporter's output).
        image: names of the graph inputs that hold image values (``lr``, ``feat``).
        float32_inputs: those of ``image`` that stay float32 inputs (cast inside).
        float32_outputs: graph outputs that stay float32 (cast at the end).
        keep_float32: operator types that run in float32 inside the image computation.

    Raises:
        ValueError: a name is not an input / output of the graph, or the image computation
            holds a subgraph or a tensor of unknown type.
    """
    onnx = require("onnx", "to_float16")
    from onnx import TensorProto, helper, numpy_helper

    fp32, fp16 = TensorProto.FLOAT, TensorProto.FLOAT16
    model = onnx.shape_inference.infer_shapes(model)  # a copy, with every tensor's type
    graph = model.graph
    if model.functions:
        raise ValueError("the float16 conversion needs a graph without local functions")
    inputs = {v.name: v for v in graph.input}
    outputs = {v.name: v for v in graph.output}
    for what, names, known in (
        ("image", image, inputs),
        ("float32_inputs", float32_inputs, image),
        ("float32_outputs", float32_outputs, outputs),
    ):
        if not set(names) <= set(known):
            raise ValueError(f"{what} {sorted(set(names) - set(known))} are not graph names")
    types: dict[str, int] = {}  # elem type of every tensor, as it will be after the pass
    for v in (*graph.input, *graph.output, *graph.value_info):
        if v.type.HasField("tensor_type"):
            types[v.name] = v.type.tensor_type.elem_type
    inits = {t.name: t for t in graph.initializer}
    types.update((name, t.data_type) for name, t in inits.items())
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    for name, node in consts.items():
        if name not in types:
            types[name] = helper.np_dtype_to_tensor_dtype(_const_value(node, numpy_helper).dtype)
    # weights moved by layout operators (the values of a weight), by the operator that moves them
    moved_by: dict[str, Any] = {}
    for node in graph.node:
        if node.op_type in _LAYOUT and (
            node.input[0] in inits or node.input[0] in consts or node.input[0] in moved_by
        ):
            moved_by[node.output[0]] = node
    for name in image:
        if types.get(name) != fp32:
            raise ValueError(f"image input {name!r} is not float32")
        if name not in float32_inputs:
            inputs[name].type.tensor_type.elem_type = types[name] = fp16

    taken = {n for node in graph.node for n in (*node.input, *node.output)} | set(types)
    nodes: list[Any] = []
    extra_inits: list[Any] = []
    converted: dict[tuple[str, int], str] = {}

    def fresh(name: str, suffix: str) -> str:
        new, k = f"{name}__{suffix}", 1
        while new in taken:
            new, k = f"{name}__{suffix}{k}", k + 1
        taken.add(new)
        return new

    def as_type(name: str, want: int) -> str:
        """``name`` as a tensor of type ``want`` (float16 / float32): itself, a converted
        initializer or constant, a weight moved in float16 (a copy of the layout operators
        that move it, reading the float16 weight), or the output of a ``Cast`` placed before
        the current node."""
        if types[name] == want:
            return name
        key = (name, want)
        if key not in converted:
            new = fresh(name, "fp16" if want == fp16 else "fp32")
            if name in inits or name in consts:
                value = (
                    numpy_helper.to_array(inits[name])
                    if name in inits
                    else _const_value(consts[name], numpy_helper)
                )
                if want == fp16:  # weights beyond float16's range saturate, not overflow
                    value = np.clip(value, -_FP16_MAX, _FP16_MAX)
                dtype = np.float16 if want == fp16 else np.float32
                extra_inits.append(numpy_helper.from_array(value.astype(dtype), new))
            elif want == fp16 and name in moved_by:  # the same moves, of the float16 weight
                copy = onnx.NodeProto()
                copy.CopyFrom(moved_by[name])
                copy.name = new
                copy.input[0] = as_type(copy.input[0], fp16)
                copy.output[:] = [new]
                nodes.append(copy)
            else:
                nodes.append(helper.make_node("Cast", [name], [new], to=want, name=new))
            types[new] = want
            converted[key] = new
        return converted[key]

    for node, in_image in zip(graph.node, image_nodes(graph, image), strict=True):
        if not in_image:
            nodes.append(node)
            continue
        keep = node.op_type in keep_float32
        if node.op_type == "Cast":  # to float32 in the image computation: to float16
            to = next(a for a in node.attribute if a.name == "to")
            if to.i == fp32 and not keep:
                to.i = fp16
            types[node.output[0]] = to.i
            nodes.append(node)
            continue
        fixed = _FIXED_INPUTS.get(node.op_type, ())
        for k, name in enumerate(node.input):
            if not name or k in fixed:
                continue
            if name not in types:
                raise ValueError(f"unknown type of {name!r}, an input of node {node.name!r}")
            if types[name] in (fp32, fp16):
                node.input[k] = as_type(name, fp32 if keep else fp16)
        fixed = _FIXED_OUTPUTS.get(node.op_type, ())
        for k, name in enumerate(node.output):
            if not name:
                continue
            if name not in types:
                raise ValueError(f"unknown type of {name!r}, an output of node {node.name!r}")
            if types[name] == fp32 and not keep and k not in fixed:
                types[name] = fp16
        nodes.append(node)

    for out in graph.output:  # float32 outputs: cast back at the end; the others: float16
        if types.get(out.name) != fp16:
            continue
        if out.name not in float32_outputs:
            out.type.tensor_type.elem_type = fp16
            continue
        inner = fresh(out.name, "fp16")
        for node in nodes:
            node.input[:] = [inner if i == out.name else i for i in node.input]
            node.output[:] = [inner if o == out.name else o for o in node.output]
        nodes.append(helper.make_node("Cast", [inner], [out.name], to=fp32, name=inner + "_out"))
        types[inner], types[out.name] = fp16, fp32

    while True:  # drop what nothing reads any more (weights read in float16 only)
        used = {i for node in nodes for i in node.input} | set(outputs)
        live = [n for n in nodes if any(o in used for o in n.output)]
        if len(live) == len(nodes):
            break
        nodes = live
    kept = [t for t in graph.initializer if t.name in used]
    del graph.node[:], graph.initializer[:]
    graph.node.extend(nodes)
    graph.initializer.extend([*kept, *(t for t in extra_inits if t.name in used)])
    for v in graph.value_info:
        if v.type.HasField("tensor_type") and v.name in types:
            v.type.tensor_type.elem_type = types[v.name]
    # the types this pass wrote must be the ones ONNX infers (a strict check, raises if not)
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def _const_value(node: Any, numpy_helper: Any) -> np.ndarray:
    """The value of a ``Constant`` node."""
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name == "value_float":
            return np.array(a.f, dtype=np.float32)
        if a.name == "value_floats":
            return np.array(list(a.floats), dtype=np.float32)
        if a.name == "value_int":
            return np.array(a.i, dtype=np.int64)
        if a.name == "value_ints":
            return np.array(list(a.ints), dtype=np.int64)
    raise ValueError(f"Constant node {node.name!r} has no value this pass reads")
