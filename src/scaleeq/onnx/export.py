"""ONNX export: :func:`export_onnx` writes a graph that takes the scale and the output window
as inputs (see :mod:`scaleeq.onnx`)."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._checks import check_int, check_pair
from ..contracts import is_sr_model, is_upsampler, model_kind
from ..geometry import MAX_RENDER_PIXELS
from ..retrofit.model import ArbitraryScaleSR
from .files import (
    DEFAULT_TILE,
    FORMAT_VERSION,
    PRECISIONS,
    default_tile,
    features_path,
    require,
    save_models,
    set_meta,
)
from .half import half_graph
from .trace import SizeSpecialized, fixed_message, onnx_translations, output_shape, trace_program

__all__ = ["export_onnx", "splits_by_default"]


class _ExportWrapper(nn.Module):
    """The exported signature: ``(lr, scale (2,), origin (2,)) -> window (B, C, th, tw)``."""

    def __init__(self, model: nn.Module, tile: tuple[int, int]) -> None:
        super().__init__()
        self.model = model
        self.tile = tile

    def forward(self, lr: torch.Tensor, scale: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
        th, tw = self.tile
        return self.model(lr, scale=scale[None], window=(origin[0], origin[1], th, tw))


class _FeaturesWrapper(nn.Module):
    """The features stage of a split export: ``(lr, scale (2,)) -> feat (B, C_f, h, w)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, lr: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.model.features(lr, scale[None])


class _RenderWrapper(nn.Module):
    """The render stage of a split export: ``(feat, scale, origin) -> window (B, C, th, tw)``."""

    def __init__(self, model: nn.Module, tile: tuple[int, int]) -> None:
        super().__init__()
        self.model = model
        self.tile = tile

    def forward(
        self, feat: torch.Tensor, scale: torch.Tensor, origin: torch.Tensor
    ) -> torch.Tensor:
        th, tw = self.tile
        return self.model.render(feat, scale=scale[None], window=(origin[0], origin[1], th, tw))


def _in_channels(model: nn.Module) -> int | None:
    if is_upsampler(model) and not is_sr_model(model):
        return int(model.in_channels)
    config = getattr(model, "config", None)
    if isinstance(config, dict) and isinstance(config.get("in_chans"), int):
        return config["in_chans"]
    adapter = getattr(model, "adapter", None)
    conv = adapter.input_conv(model.backbone) if adapter is not None else None
    return int(conv.in_channels) if conv is not None else None


def splits_by_default(model: nn.Module) -> bool:
    """Whether :func:`export_onnx` writes ``model`` as two graphs when ``split`` is not given:
    an SR model whose features are on the input's pixel grid (computed once per image, then
    rendered tile by tile), not a bare upsampler or a model with a pixel-unshuffle front end."""
    return model_kind(model) == "sr_model" and int(getattr(model, "stride", 1)) == 1


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    tile: int | tuple[int, int] | None = None,
    in_channels: int | None = None,
    example_size: tuple[int, int] = (17, 13),
    opset: int | None = None,
    check: bool = True,
    split: bool | None = None,
    batch: int | None = None,
    input_size: tuple[int, int] | None = None,
    precision: str = "fp32",
) -> Path:
    """Export ``model`` to an ONNX file whose scale, input size and window are graph inputs.

    Args:
        model: an SR model (:class:`~scaleeq.ArbitraryScaleSR` of any layout,
            :class:`~scaleeq.models.EQSR`) or a bare upsampler
            (:class:`~scaleeq.NeuralKrigingUpsampler`, whose input is then a feature map).
            Exported in float32 on the CPU (a copy; ``model`` is not changed).
        path: the ``.onnx`` file to write (atomically).
        tile: the window size ``(th, tw)`` (or one int for both) every run of the graph renders:
            **fixed at export time** (the window's position, the scale and the input size are
            inputs). Larger tiles mean fewer runs and more memory per run. ``None``
            (default): for a graph that renders from features (a split export, a bare
            upsampler), :func:`~scaleeq.onnx.files.default_tile` of the upsampler's window
            budget (64 x 64 for the default latent width 256), which keeps onnxruntime's peak
            memory near :func:`scaleeq.upscale`'s; for a one-graph SR export, whose every run
            computes the features again, :data:`DEFAULT_TILE` (256 x 256).
        in_channels: channels of ``lr``; default: read from the model (3 for RGB models).
        example_size: the LR size traced; any size works after export (keep it small, with
            sides of at least 2, for a fast export). Raised to the adapter's
            ``export_trace_size`` where it declares one (DCTLSA: across 2 x 2 windows; SAFMN and
            SeemoRe: two pixels a side after their deepest pooling).
        opset: ONNX opset; default: the exporter's (recorded in the file).
        check: run ``onnx.checker.check_model`` on the result.
        split: ``None`` (default): ``True`` for an SR model whose features are on the input's
            pixel grid, else ``False``. ``True``: two graphs instead of one: ``path`` renders
            a window from the backbone's features (inputs ``feat`` ``(B, C_f, h, w)``,
            ``scale``, ``origin``) and :func:`features_path` (``model.features.onnx``)
            computes them (inputs ``lr``, ``scale``; output ``feat``), so the features are
            computed once per image instead of once per tile and small tiles (less memory)
            cost little time. Not for a model whose features are at a stride (a
            pixel-unshuffle front end), nor a bare upsampler.
        batch: ``None`` (default): the batch is a dynamic input size, except for a retrofitted
            architecture whose adapter declares ``export_batch = 1`` (its window attention
            computes the batch from sizes: SwinIR, HAT, DAT, DCTLSA, CRAFT, ...); if another
            model's own code fixes the batch while tracing, the export is retried with a batch
            of 1 and a ``UserWarning`` says so. ``1``: export a one-sample graph directly.
            :class:`OnnxUpscaler` runs a one-sample graph once per sample (recorded in the
            file's metadata as ``"batch": 1``).
        input_size: ``None`` (default): the LR height and width are dynamic. ``(h, w)``: a
            graph for LR inputs of exactly this size (traced at it; ``example_size`` is not
            used), for a model whose own code fixes the size while tracing (the
            ``RuntimeError`` of a dynamic export says so; no architecture that
            :func:`~scaleeq.retrofit` recognises needs it); :class:`OnnxUpscaler` refuses
            other sizes with a named error (recorded as ``"input_size"``).
        precision: ``"fp32"`` (default) or ``"fp16"``: the image computation in float16, its
            weights stored as float16 (half their bytes; the built-in model's files: 0.66x),
            for runtimes that compute in float16 (GPU providers; onnxruntime's CPU provider
            runs its convolutions in float32 through casts, docs/deploy.md). The signature
            does not change: ``lr`` and ``sr`` stay float32 (cast inside), ``scale`` float64 and
            ``origin`` int64, and what the graph computes from them alone (output size, query
            positions and offsets, scale encodings) stays as traced, in float64 / float32
            (:mod:`scaleeq.onnx.half`). A split export's ``feat`` is float16. Recorded as
            ``"precision"`` (and ``"feat_dtype"``) in the metadata.

    Returns:
        ``path``.

    The graph (see the module doc): inputs ``lr`` ``(B, C, h, w)`` float32 (``B``, ``h``,
    ``w`` dynamic), ``scale`` ``(2,)`` float64, ``origin`` ``(2,)`` int64; output ``sr``
    ``(B, C_out, th, tw)``. The export settings are stored in the file's metadata (key
    ``"scaleeq"``, JSON) for :class:`OnnxUpscaler`.

    Raises:
        ImportError: onnx / onnxscript are not installed (the message says what to install).
        TypeError: ``model`` is neither an SR model nor an upsampler.
        ValueError: bad ``tile`` / ``example_size`` / ``batch`` / ``input_size`` /
            ``precision``, a model that renders only whole outputs (``window_exact`` False: the
            official configuration), ``split`` for a strided model, or unknown input channels.
        RuntimeError: ``torch.export`` cannot trace the model (the message names the cause; where
            the model's own code fixes the input height or width, it says to pass
            ``input_size``).
    """
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}"
        )
    onnx = require("onnx", "export_onnx")
    require("onnxscript", "export_onnx")
    kind = model_kind(model)
    up = model.upsampler if kind == "sr_model" else model
    if split is None:
        split = splits_by_default(model)
    if tile is None:
        from_features = split or kind != "sr_model"  # every run renders from features
        tile = default_tile(up.default_window_pixels) if from_features else DEFAULT_TILE
    th, tw = check_pair(tile, "tile")
    check_int(th, "tile height")
    check_int(tw, "tile width")
    eh, ew = check_pair(example_size, "example_size")
    check_int(eh, "example_size height", minimum=2)
    check_int(ew, "example_size width", minimum=2)
    fixed = input_size is not None
    if fixed:
        eh, ew = check_pair(input_size, "input_size")
        check_int(eh, "input_size height")
        check_int(ew, "input_size width")
    if th * tw > MAX_RENDER_PIXELS:
        raise ValueError(f"tile {th} x {tw} exceeds the size guard of {MAX_RENDER_PIXELS} pixels")
    if not up.window_exact:
        raise ValueError(
            f"{type(up).__name__} renders whole outputs only (window_exact is False, e.g. the "
            "official ECA attention), so it cannot be exported as a tile renderer"
        )
    if batch is not None and batch != 1:
        raise ValueError(f"batch must be None (dynamic) or 1, got {batch!r}")
    if split and int(getattr(model, "stride", 1)) != 1:
        raise ValueError(
            f"split=True needs features on the input's pixel grid; {type(model).__name__} reads "
            f"them at stride {model.stride} (a pixel-unshuffle front end): export it whole"
        )
    if split and kind != "sr_model":
        raise ValueError(
            "split=True needs an SR model (features + render); a bare upsampler's "
            "input already is the feature map"
        )
    c = _in_channels(model) if in_channels is None else check_int(in_channels, "in_channels")
    if c is None:
        raise ValueError(
            f"cannot tell the input channels of {type(model).__name__}: pass in_channels"
        )
    import copy

    net = copy.deepcopy(model).float().cpu().eval()
    if isinstance(net, ArbitraryScaleSR):  # traceable form of the architecture's own code
        net.adapter.prepare_export(net.backbone)
        if batch is None:
            batch = net.adapter.export_batch
        least = None if fixed else net.adapter.export_trace_size(net.backbone)
        if least is not None:
            eh, ew = max(eh, least[0]), max(ew, least[1])
    name = type(model).__name__
    args = (net, path, (th, tw), c, (eh, ew), fixed, opset, check, split, precision, onnx)
    if batch is not None:
        return _export(*args, batch=1)
    try:
        return _export(*args, batch=None)
    except SizeSpecialized as err:
        if err.dims != {0}:  # a fixed height or width: a one-sample graph would not help
            raise
        warnings.warn(
            f"{name}'s own code fixes the batch size while tracing; exported a one-sample graph "
            "instead (OnnxUpscaler runs it once per sample)",
            UserWarning,
            stacklevel=2,
        )
        return _export(*args, batch=1)


def _export(
    net: nn.Module,
    path: str | os.PathLike,
    tile: tuple[int, int],
    c: int,
    example_size: tuple[int, int],
    fixed: bool,
    opset: int | None,
    check: bool,
    split: bool,
    precision: str,
    onnx: Any,
    *,
    batch: int | None,
) -> Path:
    """One export attempt of :func:`export_onnx` (arguments checked there)."""
    th, tw = tile
    eh, ew = example_size
    gen = torch.Generator().manual_seed(0)
    lr = torch.rand(2 if batch is None else batch, c, eh, ew, generator=gen)
    # an example scale whose output holds the window at (1, 2) (the trace reads no values)
    scale = torch.tensor([max(2.5, (th + 1) / eh), max(3.5, (tw + 2) / ew)], dtype=torch.float64)
    origin = torch.tensor([1, 2], dtype=torch.int64)
    # DYNAMIC: an error if the trace fixes a size; guards that hold for every size but that
    # sympy cannot prove (Swin window arithmetic) are accepted instead of refused
    dyn = {} if fixed else {2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    if batch is None:
        dyn[0] = torch.export.Dim.DYNAMIC
    name = type(net).__name__
    meta = {
        "format": FORMAT_VERSION,
        "tile": [th, tw],
        "in_channels": c,
        "model": name,
        "scaleeq_version": _version(),
        "precision": precision,
    }
    if batch is not None:
        meta["batch"] = batch
    if fixed:
        meta["input_size"] = [eh, ew]

    def convert(program: Any, inputs: list[str], outputs: list[str], info: dict) -> Any:
        return _convert(program, inputs, outputs, info, opset, check, onnx, dyn, (eh, ew))

    if not split:
        exported = trace_program(
            _ExportWrapper(net, (th, tw)), (lr, scale, origin),
            {"lr": dyn, "scale": None, "origin": None}, name,
        )  # fmt: skip
        meta.update(out_channels=int(output_shape(exported)[1]), stages=1)
        graph = convert(exported, ["lr", "scale", "origin"], ["sr"], meta)
        return save_models(onnx, [(graph, Path(path))])
    feats = trace_program(_FeaturesWrapper(net), (lr, scale), {"lr": dyn, "scale": None}, name)
    feat = torch.rand(lr.shape[0], int(output_shape(feats)[1]), eh, ew, generator=gen)
    render = trace_program(
        _RenderWrapper(net, (th, tw)), (feat, scale, origin),
        {"feat": dyn, "scale": None, "origin": None}, name,
    )  # fmt: skip
    second = features_path(path)
    meta.update(out_channels=int(output_shape(render)[1]), stages=2, features_file=second.name)
    meta["feat_channels"] = int(feat.shape[1])
    meta["feat_dtype"] = "float16" if precision == "fp16" else "float32"
    first = convert(feats, ["lr", "scale"], ["feat"], {**meta, "stage": "features"})
    last = convert(render, ["feat", "scale", "origin"], ["sr"], meta)
    return save_models(onnx, [(first, second), (last, Path(path))])


def _convert(
    exported: Any,
    inputs: list[str],
    outputs: list[str],
    meta: dict[str, Any],
    opset: int | None,
    check: bool,
    onnx: Any,
    dynamic: dict[int, Any],
    traced_size: tuple[int, int],
) -> Any:
    """Convert an exported program to an ONNX ``ModelProto`` (its float16 form for
    ``meta["precision"]`` ``"fp16"``: the image input ``lr`` and the output ``sr`` stay
    float32, ``feat`` is float16), with ``meta`` stored in it, checked.

    Raises:
        SizeSpecialized: a dimension of the image input that ``dynamic`` marks as dynamic came
            out fixed in the trace at ``traced_size``.
    """
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_log.level  # it warns about torchvision's ops, which are not used
    registry_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():  # torch-internal deprecation noise of its own pytrees
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            program = torch.onnx.export(
                exported,
                dynamo=True,
                custom_translation_table=onnx_translations(),
                input_names=inputs,
                output_names=outputs,
                opset_version=opset,
                optimize=True,
                verbose=False,
            )
    finally:
        registry_log.setLevel(level)
    proto = program.model_proto
    # a size of 1 that the trace saw inside the model (one crop, one window, one pooled pixel)
    # can pin the input's size in the graph without any constraint violation from torch.export
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    pinned = {d for d in dynamic if dims[d].HasField("dim_value")}
    if pinned:
        message = fixed_message(meta["model"], pinned, traced_size)
        raise SizeSpecialized(message + " (a size of 1 inside it kept as a constant)", pinned)
    if meta["precision"] == "fp16":
        proto = half_graph(proto)
    set_meta(proto, meta)
    if check:
        onnx.checker.check_model(proto, full_check=True)
    return proto


def _version() -> str:
    from .. import __version__

    return __version__
