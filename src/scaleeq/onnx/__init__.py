"""ONNX export of arbitrary-scale models and tiled rendering in onnxruntime.

One export serves every scale and every input size: the graph takes the LR image, the scale
and the position of the output window to render as *inputs*, and returns that window.

Graph inputs and output (``B``, ``h``, ``w`` dynamic; ``th``, ``tw`` the tile size fixed at
export time):

- ``lr``: ``(B, C, h, w)`` float32, the LR image (or, for a bare upsampler, its feature map);
- ``scale``: ``(2,)`` float64 ``(r_h, r_w)``, shared by the batch. An output size ``(H, W)`` is
  given as ``(H / h, W / w)``, which the output-size rule maps back to exactly ``(H, W)`` (the
  helpers do this for ``size=``);
- ``origin``: ``(2,)`` int64 ``(top, left)`` of the window in the full output;
- ``sr``: ``(B, C_out, th, tw)`` float32, the window ``(top, left, th, tw)`` of the output.

By default (:func:`splits_by_default`) an SR model is exported as two graphs:
``model.features.onnx`` (``lr``, ``scale`` -> ``feat``, the backbone's features, computed once
per image) and ``model.onnx`` (``feat``, ``scale``, ``origin`` -> ``sr``), so tiles do not
recompute the features; ``split=False`` writes the one graph described above.

``precision="fp16"`` writes the computation on the image in float16 with float16 weights, for
runtimes that compute in float16 (GPU providers): ``lr`` and ``sr`` stay float32, the
geometry (output size, query positions, scale encodings) stays as traced, a split export's
``feat`` is float16 (:mod:`scaleeq.onnx.half`; the file's metadata records the precision).
:func:`convert_to_fp16` writes that form of a float32 file without tracing the model again.

A window may reach past the bottom / right edge of the output (the helpers do this only when
the output is smaller than a tile): the pixels inside the output are exact, the rest is
undefined and is cropped. Sizes and windows inside the graph are not checked (a graph has no
errors to raise); :class:`OnnxUpscaler` and :func:`upscale` check every argument with the same
rules, and give the same named errors, as the PyTorch path.

Requires the ``onnx`` extra (``pip install 'scaleeq[onnx]'``: onnx, onnxscript, onnxruntime);
``import scaleeq`` does not.
"""

from __future__ import annotations

from .convert import convert_to_fp16
from .export import export_onnx, splits_by_default
from .files import DEFAULT_TILE, features_path
from .runtime import OnnxUpscaler, upscale

__all__ = [
    "DEFAULT_TILE",
    "OnnxUpscaler",
    "convert_to_fp16",
    "export_onnx",
    "features_path",
    "splits_by_default",
    "upscale",
]
