"""Converting a file that :func:`~scaleeq.onnx.export_onnx` wrote: :func:`convert_to_fp16`
writes the float16 form of a float32 export without tracing the model again."""

from __future__ import annotations

import os
from pathlib import Path

from .files import features_path, get_meta, require, save_models, set_meta
from .half import half_graph

__all__ = ["convert_to_fp16"]


def convert_to_fp16(path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the float16 form of the float32 export ``path`` to ``out``: the same graphs as
    ``export_onnx(..., precision="fp16")`` of the same model and settings writes, made from
    the file instead of a new trace (an export can take minutes; this takes seconds).

    Args:
        path: an ``.onnx`` file written by :func:`~scaleeq.onnx.export_onnx` in float32 (of a
            split export: the render file; its features file is read from the same folder).
        out: the ``.onnx`` file to write (atomically; a split export's features file goes
            next to it, :func:`~scaleeq.onnx.features_path` of ``out``).

    Returns:
        ``out``.

    Raises:
        ImportError: onnx is not installed (the message says what to install).
        ValueError: ``path`` is not a file, was not written by ``export_onnx``, is a features
            file or lacks its features file, is already float16, or ``out`` would overwrite it.
    """
    onnx = require("onnx", "convert_to_fp16")
    src, dst = Path(path), Path(out)
    if not src.is_file():
        raise ValueError(f"path {str(src)!r} is not a file")
    if dst.resolve() == src.resolve():
        raise ValueError(f"out {str(dst)!r} is the input file: write the float16 form elsewhere")
    render = onnx.load(str(src))
    meta = get_meta({p.key: p.value for p in render.metadata_props}, str(src))
    if meta.get("stage") == "features":
        raise ValueError(
            f"{str(src)!r} is the features file of a split export; give the render file (the "
            "one without .features)"
        )
    if meta.get("precision", "fp32") != "fp32":
        raise ValueError(f"{str(src)!r} is already {meta['precision']}")
    meta = {**meta, "precision": "fp16"}
    graphs = [(render, meta, dst)]
    if int(meta.get("stages", 1)) == 2:
        feats_src, feats_dst = features_path(src), features_path(dst)
        meta.update(features_file=feats_dst.name, feat_dtype="float16")
        if not feats_src.is_file():
            raise ValueError(
                f"the features file {str(feats_src)!r} of the split export {str(src)!r} is missing"
            )
        graphs.insert(0, (onnx.load(str(feats_src)), {**meta, "stage": "features"}, feats_dst))
    halves = []
    for model, info, target in graphs:
        half = half_graph(model)
        set_meta(half, info)
        onnx.checker.check_model(half, full_check=True)
        halves.append((half, target))
    return save_models(onnx, halves)
