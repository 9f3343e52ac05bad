"""Rendering from exported files in onnxruntime: :class:`OnnxUpscaler` and :func:`upscale`,
tile by tile, with the same argument checks as the PyTorch path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._checks import check_channels, check_int, check_tensor
from ..geometry import RenderPlan, render_plan
from ..infer import MAX_OUTPUT_PIXELS, with_progress
from ..ops.coords import Window
from ..scale import ScaleLike, parse_scale
from .files import PRECISIONS, features_path, get_meta, lean_session_options, require

__all__ = ["OnnxUpscaler", "upscale"]


class OnnxUpscaler:
    """Run an ONNX file written by :func:`export_onnx` in onnxruntime, tile by tile.

    Args:
        path: the ``.onnx`` file (of a split export: the render file; its features file is
            opened from the same folder).
        providers: onnxruntime execution providers (default: the CPU provider).
        session_options: an ``onnxruntime.SessionOptions`` (threads, optimisation level);
            default: :func:`~scaleeq.onnx.files.lean_session_options` (no memory arena, no
            memory pattern: peak memory near one run's needs).

    Attributes:
        tile: ``(th, tw)``, the window size of one run.
        in_channels / out_channels: channels of ``lr`` and of the output.
        session: the ``onnxruntime.InferenceSession`` (of the render graph).
        features_session: the features graph's session of a split export, else ``None``.
        batch: ``1`` for a one-sample graph (run once per sample), ``None`` where dynamic.
        input_size: ``(h, w)`` for a graph of one LR size (``export_onnx(input_size=...)``),
            ``None`` where the size is dynamic.
        precision: ``"fp32"`` or ``"fp16"`` (``export_onnx(precision=...)``; ``"fp32"`` for
            a file from before it was recorded). Either takes and returns float32.
        feat_dtype: the numpy dtype of a split export's features (float16 in an fp16 file).

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
        ort = require("onnxruntime", "OnnxUpscaler")
        self.path = Path(path)
        options = {
            "sess_options": session_options or lean_session_options(ort),
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
            self.precision: str = meta.get("precision", "fp32")
            if self.precision not in PRECISIONS:
                raise ValueError(f"unknown precision {self.precision!r}")
            self.feat_dtype = np.dtype(meta.get("feat_dtype", "float32"))
            if self.feat_dtype not in (np.float32, np.float16):
                raise ValueError(f"unknown feat_dtype {self.feat_dtype}")
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
        return session, get_meta(session.get_modelmeta().custom_metadata_map, str(path))

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
            lr: ``(B, C, h, w)`` tensor or array (fed as float32, in an fp16 file too).
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
            feats = [  # already feat_dtype: the render graph reads what this one writes
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
