"""ONNX export of arbitrary-scale models and tiled rendering in onnxruntime.

One exported file serves every scale and every input size: the graph takes the LR image, the
scale and the position of the output window to render as *inputs*, and returns that window.

Graph inputs and output (``B``, ``h``, ``w`` dynamic; ``th``, ``tw`` the tile size fixed at
export time):

- ``lr``: ``(B, C, h, w)`` float32, the LR image (or, for a bare upsampler, its feature map);
- ``scale``: ``(2,)`` float64 ``(r_h, r_w)``, shared by the batch. An output size ``(H, W)`` is
  given as ``(H / h, W / w)``, which the output-size rule maps back to exactly ``(H, W)`` (the
  helpers do this for ``size=``);
- ``origin``: ``(2,)`` int64 ``(top, left)`` of the window in the full output;
- ``sr``: ``(B, C_out, th, tw)`` float32, the window ``(top, left, th, tw)`` of the output.

With ``split=True`` an SR model is exported as two graphs: ``model.features.onnx``
(``lr``, ``scale`` -> ``feat``, the backbone's features, computed once per image) and
``model.onnx`` (``feat``, ``scale``, ``origin`` -> ``sr``), so tiles do not recompute the
features.

A window may reach past the bottom / right edge of the output (the helpers do this only when
the output is smaller than a tile): the pixels inside the output are exact, the rest is
undefined and is cropped. Sizes and windows inside the graph are not checked (a graph has no
errors to raise); :class:`OnnxUpscaler` and :func:`upscale` check every argument with the same
rules, and give the same named errors, as the PyTorch path.

Requires the ``onnx`` extra (``pip install 'scaleeq[onnx]'``: onnx, onnxscript, onnxruntime);
``import scaleeq`` does not.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._checks import check_channels, check_int, check_pair, check_tensor
from ._io import atomic_write
from .contracts import is_sr_model, is_upsampler, model_kind
from .geometry import MAX_RENDER_PIXELS, RenderPlan, render_plan
from .infer import MAX_OUTPUT_PIXELS, with_progress
from .ops.coords import Window
from .retrofit.model import ArbitraryScaleSR
from .scale import ScaleLike, parse_scale

__all__ = ["DEFAULT_TILE", "OnnxUpscaler", "export_onnx", "features_path", "upscale"]

#: Default tile (window) size of an exported graph, ``(th, tw)`` HR pixels.
DEFAULT_TILE = (256, 256)
_INSTALL = "pip install 'scaleeq[onnx]' (onnx, onnxscript, onnxruntime)"
_META = "scaleeq"  # metadata key of the export settings (JSON)
_FORMAT = 1


def _require(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{what} needs the {module!r} package: {_INSTALL}") from err


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


def features_path(path: str | os.PathLike) -> Path:
    """The features file that goes with the render file ``path`` of a split export
    (``model.onnx`` -> ``model.features.onnx``)."""
    path = Path(path)
    return path.with_name(path.stem + ".features" + (path.suffix or ".onnx"))


def _in_channels(model: nn.Module) -> int | None:
    if is_upsampler(model) and not is_sr_model(model):
        return int(model.in_channels)
    config = getattr(model, "config", None)
    if isinstance(config, dict) and isinstance(config.get("in_chans"), int):
        return config["in_chans"]
    adapter = getattr(model, "adapter", None)
    conv = adapter.input_conv(model.backbone) if adapter is not None else None
    return int(conv.in_channels) if conv is not None else None


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    tile: int | tuple[int, int] = DEFAULT_TILE,
    in_channels: int | None = None,
    example_size: tuple[int, int] = (17, 13),
    opset: int | None = None,
    check: bool = True,
    split: bool = False,
    batch: int | None = None,
    input_size: tuple[int, int] | None = None,
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
            inputs). Larger tiles mean fewer runs and more memory per run.
        in_channels: channels of ``lr``; default: read from the model (3 for RGB models).
        example_size: the LR size traced; any size works after export (keep it small, with
            sides of at least 2, for a fast export). Raised to the adapter's
            ``export_trace_size`` where it declares one (DCTLSA: across 2 x 2 windows).
        opset: ONNX opset; default: the exporter's (recorded in the file).
        check: run ``onnx.checker.check_model`` on the result.
        split: for an SR model, write two graphs instead of one: ``path`` renders a window
            from the backbone's features (inputs ``feat`` ``(B, C_f, h, w)``, ``scale``,
            ``origin``) and :func:`features_path` (``model.features.onnx``) computes them
            (inputs ``lr``, ``scale``; output ``feat``). The features are then computed once per
            image instead of once per tile, so small tiles (less memory) cost little time.
            Not for a model whose features are at a stride (a pixel-unshuffle front end).
        batch: ``None`` (default): the batch is a dynamic input size, except for a retrofitted
            architecture whose adapter declares ``export_batch = 1`` (its window attention
            computes the batch from sizes: SwinIR, HAT, DAT, DCTLSA, CRAFT, ...); if another
            model's own code fixes the batch while tracing, the export is retried with a batch
            of 1 and a ``UserWarning`` says so. ``1``: export a one-sample graph directly.
            :class:`OnnxUpscaler` runs a one-sample graph once per sample (recorded in the
            file's metadata as ``"batch": 1``).
        input_size: ``None`` (default): the LR height and width are dynamic. ``(h, w)``: a
            graph for LR inputs of exactly this size (traced at it; ``example_size`` is not
            used), for architectures whose own code fixes the size while tracing (IPT
            branches on it, SAFMN pools to sizes computed from it: their adapters declare
            ``export_fixed_size`` and export refuses them without ``input_size``);
            :class:`OnnxUpscaler` refuses other sizes with a named error (recorded as
            ``"input_size"``).

    Returns:
        ``path``.

    The graph (see the module doc): inputs ``lr`` ``(B, C, h, w)`` float32 (``B``, ``h``,
    ``w`` dynamic), ``scale`` ``(2,)`` float64, ``origin`` ``(2,)`` int64; output ``sr``
    ``(B, C_out, th, tw)``. The export settings are stored in the file's metadata (key
    ``"scaleeq"``, JSON) for :class:`OnnxUpscaler`.

    Raises:
        ImportError: onnx / onnxscript are not installed (the message says what to install).
        TypeError: ``model`` is neither an SR model nor an upsampler.
        ValueError: bad ``tile`` / ``example_size`` / ``batch`` / ``input_size``, a model that
            renders only whole outputs (``window_exact`` False: the official configuration),
            ``split`` for a strided model, or unknown input channels.
        RuntimeError: ``torch.export`` cannot trace the model (the message names the cause; where
            the model's own code fixes the input height or width, it says to pass
            ``input_size``).
    """
    onnx = _require("onnx", "export_onnx")
    _require("onnxscript", "export_onnx")
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
    up = model.upsampler if model_kind(model) == "sr_model" else model
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
    if split and not is_sr_model(model):
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
        reason = net.adapter.export_fixed_size
        if reason and not fixed:
            raise ValueError(
                f"{reason}, so an exported graph holds only the traced LR size: pass "
                f"input_size=(h, w) for a graph of one LR size (e.g. input_size=({eh}, {ew}))"
            )
    name = type(model).__name__
    args = (net, path, (th, tw), c, (eh, ew), fixed, opset, check, split, onnx)
    if batch is not None:
        return _export(*args, batch=1)
    try:
        return _export(*args, batch=None)
    except _SizeSpecialized as err:
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
        "format": _FORMAT,
        "tile": [th, tw],
        "in_channels": c,
        "model": name,
        "scaleeq_version": _version(),
    }
    if batch is not None:
        meta["batch"] = batch
    if fixed:
        meta["input_size"] = [eh, ew]
    if not split:
        exported = _trace(
            _ExportWrapper(net, (th, tw)), (lr, scale, origin),
            {"lr": dyn, "scale": None, "origin": None}, name,
        )  # fmt: skip
        meta.update(out_channels=int(_out_shape(exported)[1]), stages=1)
        return _write(exported, ["lr", "scale", "origin"], ["sr"], meta, path, opset, check, onnx)
    feats = _trace(_FeaturesWrapper(net), (lr, scale), {"lr": dyn, "scale": None}, name)
    feat = torch.rand(lr.shape[0], int(_out_shape(feats)[1]), eh, ew, generator=gen)
    render = _trace(
        _RenderWrapper(net, (th, tw)), (feat, scale, origin),
        {"feat": dyn, "scale": None, "origin": None}, name,
    )  # fmt: skip
    second = features_path(path)
    meta.update(out_channels=int(_out_shape(render)[1]), stages=2, features_file=second.name)
    meta["feat_channels"] = int(feat.shape[1])
    _write(
        feats, ["lr", "scale"], ["feat"], {**meta, "stage": "features"}, second, opset, check, onnx
    )
    return _write(render, ["feat", "scale", "origin"], ["sr"], meta, path, opset, check, onnx)


def _write(
    exported: Any,
    inputs: list[str],
    outputs: list[str],
    meta: dict[str, Any],
    path: str | os.PathLike,
    opset: int | None,
    check: bool,
    onnx: Any,
) -> Path:
    """Convert an exported program to ONNX, store ``meta`` in the file, check, write."""
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_log.level  # it warns about torchvision's ops, which are not used
    registry_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():  # torch-internal deprecation noise of its own pytrees
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            program = torch.onnx.export(
                exported,
                dynamo=True,
                custom_translation_table=_translations(),
                input_names=inputs,
                output_names=outputs,
                opset_version=opset,
                optimize=True,
                verbose=False,
            )
    finally:
        registry_log.setLevel(level)
    proto = program.model_proto
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = _META, json.dumps(meta)
    if check:
        onnx.checker.check_model(proto, full_check=True)
    return atomic_write(path, lambda tmp: onnx.save_model(proto, tmp))


def _translations() -> dict[Any, Any]:
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


class _SizeSpecialized(RuntimeError):
    """``torch.export`` found that the model's own code fixes input sizes marked dynamic;
    ``dims`` are those dimensions of the first input (0: batch, 2: height, 3: width)."""

    def __init__(self, message: str, dims: set[int]) -> None:
        super().__init__(message)
        self.dims = dims


_DIM_NAMES = {0: "batch", 1: "channels", 2: "height", 3: "width"}


def _specialized_dims(err: BaseException) -> set[int] | None:
    """The input dimensions a ``torch.export`` constraint violation names (its first line
    lists them, ``Constraints violated (L['lr'].size()[0], ...)!``), or ``None`` for any
    other error."""
    from torch._dynamo.exc import UserError, UserErrorType

    if not (isinstance(err, UserError) and err.error_type is UserErrorType.CONSTRAINT_VIOLATION):
        return None
    head = str(err).split("!", 1)[0]
    return {int(d) for d in re.findall(r"size\(\)\[(\d+)\]", head)} or None


def _trace(wrapper: nn.Module, args: tuple, dynamic: dict, name: str) -> Any:
    """``torch.export`` of the wrapper: a size the trace would fix instead of keeping dynamic is
    an error here (:class:`_SizeSpecialized`), not a silently specialised graph."""
    dims = dynamic[next(iter(dynamic))]
    what = (
        "a dynamic "
        + " and ".join(_DIM_NAMES[d] for d in sorted(dims))
        + " and the scale and window as inputs"
        if dims
        else "the scale and window as inputs"
    )
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        try:
            return torch.export.export(wrapper, args, dynamic_shapes=dynamic, strict=False)
        except Exception as err:  # torch's message names the cause; say what was attempted
            fixed = _specialized_dims(err)
            message = f"torch.export could not trace {name} with {what}: {err}"
            if fixed is None:
                raise RuntimeError(message) from err
            if fixed & {2, 3}:
                h, w = args[0].shape[-2:]
                message = (
                    f"{name}'s own code fixes the input "
                    + " and ".join(_DIM_NAMES[d] for d in sorted(fixed & {2, 3}))
                    + f" while tracing; export a graph for one LR size with input_size=(h, w) "
                    f"(e.g. input_size=({h}, {w})). torch.export said: {err}"
                )
            raise _SizeSpecialized(message, fixed) from err


def _out_shape(exported: Any) -> tuple[int, ...]:
    """The (symbolic) shape of the program's one output, from the trace's metadata."""
    (spec,) = [n for n in exported.graph.nodes if n.op == "output"]
    return tuple(spec.args[0][0].meta["val"].shape)


def _version() -> str:
    from . import __version__

    return __version__


class OnnxUpscaler:
    """Run an ONNX file written by :func:`export_onnx` in onnxruntime, tile by tile.

    Args:
        path: the ``.onnx`` file (of a split export: the render file; its features file is
            opened from the same folder).
        providers: onnxruntime execution providers (default: the CPU provider).
        session_options: an ``onnxruntime.SessionOptions`` (threads, optimisation level).

    Attributes:
        tile: ``(th, tw)``, the window size of one run.
        in_channels / out_channels: channels of ``lr`` and of the output.
        session: the ``onnxruntime.InferenceSession`` (of the render graph).
        features_session: the features graph's session of a split export, else ``None``.
        batch: ``1`` for a one-sample graph (run once per sample), ``None`` where dynamic.
        input_size: ``(h, w)`` for a graph of one LR size (``export_onnx(input_size=...)``),
            ``None`` where the size is dynamic.

    Example (not run here: needs onnxruntime and a file)::

        ort_sr = OnnxUpscaler("edsr_star.onnx")
        hr = ort_sr.upscale(lr, scale=3.3)          # lr (B, 3, h, w) tensor -> (B, 3, H, W)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        providers: list[str] | None = None,
        session_options: Any = None,
    ) -> None:
        ort = _require("onnxruntime", "OnnxUpscaler")
        self.path = Path(path)
        options = {
            "sess_options": session_options,
            "providers": providers or ["CPUExecutionProvider"],
        }
        self.session, meta = self._open(ort, self.path, options)
        try:
            self.tile: tuple[int, int] = (int(meta["tile"][0]), int(meta["tile"][1]))
            self.in_channels = int(meta["in_channels"])
            self.out_channels = int(meta["out_channels"])
            stages = int(meta.get("stages", 1))
            #: the graph's fixed batch (1), or ``None`` where the batch is dynamic
            self.batch: int | None = None if meta.get("batch") is None else int(meta["batch"])
            #: the one LR size ``(h, w)`` the graph takes, or ``None`` where it is dynamic
            size = meta.get("input_size")
            self.input_size: tuple[int, int] | None = (
                None if size is None else (int(size[0]), int(size[1]))
            )
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise ValueError(f"{str(path)!r} has damaged scaleeq metadata: {err}") from None
        if meta.get("stage") == "features":
            raise ValueError(
                f"{str(path)!r} is the features file of a split export; open the render file "
                "(the one without .features)"
            )
        self.meta = meta
        self.features_session = None
        if stages == 2:  # split export: the features graph sits next to this one
            self.features_session, _ = self._open(ort, features_path(self.path), options)

    @staticmethod
    def _open(ort: Any, path: Path, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if not path.is_file():
            raise ValueError(f"path {str(path)!r} is not a file")
        session = ort.InferenceSession(str(path), **options)
        props = session.get_modelmeta().custom_metadata_map
        if _META not in props:
            raise ValueError(
                f"{str(path)!r} was not written by scaleeq.onnx.export_onnx (no {_META!r} metadata)"
            )
        try:
            return session, json.loads(props[_META])
        except ValueError as err:
            raise ValueError(f"{str(path)!r} has damaged scaleeq metadata: {err}") from None

    # -- one window ---------------------------------------------------------------------------
    def _run(self, x: np.ndarray, scale: np.ndarray, top: int, left: int) -> np.ndarray:
        """One run of the render graph: the window at ``(top, left)`` (``x``: the LR image, or
        the features of a split export)."""
        origin = np.array([top, left], dtype=np.int64)
        name = "lr" if self.features_session is None else "feat"
        (out,) = self.session.run(["sr"], {name: x, "scale": scale, "origin": origin})
        return out

    def _plan(
        self,
        lr: torch.Tensor,
        scale: ScaleLike | None,
        size: tuple[int, int] | None,
        window: Window | None,
        max_output_pixels: int,
    ) -> RenderPlan:
        check_tensor(lr, "lr", ndim=4, layout="(B, C, h, w)")
        check_channels(lr, "lr", self.in_channels)
        if self.input_size is not None and tuple(lr.shape[-2:]) != self.input_size:
            h, w = self.input_size
            raise ValueError(
                f"{self.path.name} was exported for LR inputs of exactly {h} x {w} "
                f"(input_size); got lr of {lr.shape[-2]} x {lr.shape[-1]}"
            )
        if isinstance(scale, torch.Tensor):  # per-sample scales: all equal, or refused
            r = parse_scale(scale, device="cpu", dtype=torch.float64)
            if not bool((r == r[:1]).all()):
                raise ValueError(
                    "an exported model takes one scale for the batch; got per-sample scales "
                    f"{r.tolist()[:4]} (run samples with different scales separately)"
                )
            scale = r[:1]
        b, _, h, w = lr.shape
        plan = render_plan(
            (h, w), b, scale=scale, size=size, window=window, max_pixels=max_output_pixels
        )
        return plan

    # -- public -------------------------------------------------------------------------------
    def render(
        self,
        lr: torch.Tensor | np.ndarray,
        *,
        scale: ScaleLike | None = None,
        size: tuple[int, int] | None = None,
        window: Window | None = None,
        max_output_pixels: int = MAX_OUTPUT_PIXELS,
        progress: bool = False,
    ) -> torch.Tensor:
        """Render ``window`` (default: the whole output) of ``lr`` upscaled by ``scale`` / to
        ``size``, in runs of one tile each.

        Args:
            lr: ``(B, C, h, w)`` float32 tensor or array.
            scale: a number or ``(r_h, r_w)`` (one scale for the batch); or give ``size``.
            size: the output size ``(H, W)``.
            window: ``(top, left, height, width)`` of the output, ints (any size: it is
                covered by tiles).
            max_output_pixels: the size guard of the rendered region (as :func:`scaleeq.upscale`).
            progress: a tqdm bar over tiles (if tqdm is installed).

        Returns:
            ``(B, C_out, height, width)`` float32 tensor (the full ``(H, W)`` without a window).

        Raises:
            ValueError / TypeError: as the PyTorch path for the same arguments (bad scale, size,
                window outside the output, wrong channels, empty input).
        """
        if isinstance(lr, np.ndarray):
            lr = torch.from_numpy(lr)
        check_int(max_output_pixels, "max_output_pixels")
        plan = self._plan(lr, scale, size, window, max_output_pixels)
        if window is not None and not (isinstance(window[0], int) and isinstance(window[1], int)):
            raise TypeError("window top and left must be ints for an exported model")
        assert plan.out_size is not None
        out_h, out_w = plan.out_size
        top0, left0 = int(plan.top[0]), int(plan.left[0])
        height, width = plan.height, plan.width
        th, tw = self.tile
        rows = _starts(top0, height, th, out_h)
        cols = _starts(left0, width, tw, out_w)
        tiles = [(y, x) for y in rows for x in cols]
        if progress:
            tiles = with_progress(tiles, "upscale (onnx)")
        x = lr.detach().to("cpu", torch.float32).contiguous().numpy()
        scale_in = plan.scale[0].numpy().astype(np.float64)
        # a one-sample graph (batch fixed at export) runs once per sample
        groups = (
            [slice(0, len(x))] if self.batch is None else [slice(i, i + 1) for i in range(len(x))]
        )
        feats = [x[g] for g in groups]
        if self.features_session is not None:  # split export: the features once per image
            feats = [
                self.features_session.run(["feat"], {"lr": f, "scale": scale_in})[0] for f in feats
            ]
        out = np.empty((lr.shape[0], self.out_channels, height, width), dtype=np.float32)
        for y, xx in tiles:
            y0, y1 = max(y, top0), min(y + th, top0 + height, out_h)
            x0, x1 = max(xx, left0), min(xx + tw, left0 + width, out_w)
            for g, f in zip(groups, feats, strict=True):
                tile = self._run(f, scale_in, y, xx)
                out[g, :, y0 - top0 : y1 - top0, x0 - left0 : x1 - left0] = tile[
                    :, :, y0 - y : y1 - y, x0 - xx : x1 - xx
                ]
        return torch.from_numpy(out)

    def upscale(
        self,
        lr: torch.Tensor | np.ndarray,
        *,
        scale: ScaleLike | None = None,
        size: tuple[int, int] | None = None,
        max_output_pixels: int = MAX_OUTPUT_PIXELS,
        progress: bool = False,
    ) -> torch.Tensor:
        """The whole output ``(B, C_out, H, W)``: :meth:`render` without a window."""
        return self.render(
            lr, scale=scale, size=size, max_output_pixels=max_output_pixels, progress=progress
        )

    __call__ = upscale


def _starts(start: int, length: int, tile: int, full: int) -> list[int]:
    """Tile origins covering ``[start, start + length)`` of an axis of ``full`` pixels: every
    tile lies inside ``[0, full)`` when ``full >= tile`` (the last one shifted back); otherwise
    one tile at 0 that reaches past the end."""
    if full < tile:
        return [0]
    return [min(s, full - tile) for s in range(start, start + length, tile)]


def upscale(
    model: str | os.PathLike | OnnxUpscaler,
    lr: torch.Tensor | np.ndarray,
    *,
    scale: ScaleLike | None = None,
    size: tuple[int, int] | None = None,
    max_output_pixels: int = MAX_OUTPUT_PIXELS,
    progress: bool = False,
) -> torch.Tensor:
    """:func:`scaleeq.upscale` for an exported model: ``model`` is an ``.onnx`` path written
    by :func:`export_onnx` or an :class:`OnnxUpscaler`. Returns ``(B, C_out, H, W)``."""
    runner = model if isinstance(model, OnnxUpscaler) else OnnxUpscaler(model)
    return runner.upscale(
        lr, scale=scale, size=size, max_output_pixels=max_output_pixels, progress=progress
    )
