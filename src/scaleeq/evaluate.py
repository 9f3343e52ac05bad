"""Benchmark evaluation: PSNR-Y / SSIM-Y per set and scale, with a bicubic baseline row.

Protocol (as in the EQSR, LIIF and ArbSR evaluations): for a scale ``r`` the HR image is cropped
so that the LR size ``(floor(H / r), floor(W / r))`` is an integer and the HR size is
``round(h_lr * r)`` (``modcrop`` for integer scales); the LR input is made with
MATLAB-compatible bicubic (:func:`scaleeq.resize.imresize`); the output is quantised to 8 bits;
PSNR and SSIM are computed on the BT.601 Y channel with ``ceil(r)`` border pixels cropped.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .contracts import is_sr_model, is_upsampler
from .images import IMAGE_SUFFIXES, list_images, load_image
from .infer import upscale
from .metrics import psnr_y, ssim_y
from .precision import autocast, check_precision
from .resize import imresize

__all__ = ["EvalReport", "evaluate", "make_lr_hr"]


def _scale_pair(scale: object) -> tuple[float, float]:
    """``(r_h, r_w)`` of an evaluation scale: a number or an ``(r_h, r_w)`` pair."""
    values = tuple(scale) if isinstance(scale, tuple | list) and len(scale) == 2 else (scale, scale)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise ValueError(
                f"scale must be a number > 0 or an (r_h, r_w) pair of them, got {scale!r}"
            )
    return float(values[0]), float(values[1])


def make_lr_hr(
    hr: torch.Tensor, scale: float | tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop ``hr`` ``(3, H, W)`` so the grids align at ``scale`` and make its LR version.

    Args:
        hr: ``(3, H, W)`` in [0, 1].
        scale: ``r``, or ``(r_h, r_w)`` for different factors per axis.

    Returns:
        ``(lr, hr_cropped)``: ``lr`` of size ``(floor(H / r_h), floor(W / r_w))`` made by MATLAB
        bicubic and quantised to 8 bits, ``hr_cropped`` of size ``round(h_lr * r)`` per axis.
    """
    r_h, r_w = _scale_pair(scale)
    h, w = hr.shape[-2:]
    h_lr, w_lr = math.floor(h / r_h + 1e-9), math.floor(w / r_w + 1e-9)
    if h_lr < 1 or w_lr < 1:
        raise ValueError(f"an image of size {(h, w)} is too small for scale {scale}")
    hh, ww = min(h, round(h_lr * r_h)), min(w, round(w_lr * r_w))
    hr = hr[..., :hh, :ww]
    lr = imresize(hr, size=(h_lr, w_lr)).clamp(0, 1)
    return (lr * 255).round() / 255, hr


def _quantise(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round() / 255


@dataclass
class EvalReport:
    """Rows of ``{"set", "scale", "method", "psnr_y", "ssim_y", "images"}`` (means over images)."""

    rows: list[dict] = field(default_factory=list)

    def __str__(self) -> str:
        return self.table()

    def _grid(self) -> tuple[list[str], list[list[str]]]:
        scales = list(dict.fromkeys(_key(r["scale"]) for r in self.rows))
        scales.sort(key=lambda s: (isinstance(s, tuple), s))
        keys = list(dict.fromkeys((r["set"], r["method"]) for r in self.rows))
        header = ["set", "method", *[_label(s) for s in scales]]
        table = []
        for set_name, method in keys:
            cells = [set_name, method]
            for s in scales:
                match = [
                    r
                    for r in self.rows
                    if r["set"] == set_name and r["method"] == method and _key(r["scale"]) == s
                ]
                cells.append(
                    f"{match[0]['psnr_y']:.2f} / {match[0]['ssim_y']:.4f}" if match else "-"
                )
            table.append(cells)
        return header, table

    def table(self) -> str:
        """Plain-text table: PSNR-Y (dB) / SSIM-Y per set, method and scale."""
        header, rows = self._grid()
        widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
        lines = [
            "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True))
            for r in [header, *rows]
        ]
        return "\n".join(lines)

    def markdown(self) -> str:
        """The same table in Markdown."""
        header, rows = self._grid()
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)

    def to_json(self) -> str:
        return json.dumps({"rows": self.rows}, indent=2)


def _key(scale: object) -> float | tuple[float, float]:
    """A hashable, sortable form of a row's scale (JSON turns pairs into lists)."""
    if isinstance(scale, tuple | list):
        return float(scale[0]), float(scale[1])
    return float(scale)  # type: ignore[arg-type]


def _label(scale: float | tuple[float, float]) -> str:
    return f"x({scale[0]:g}, {scale[1]:g})" if isinstance(scale, tuple) else f"x{scale:g}"


def _sets(data: str | os.PathLike | Mapping | Sequence) -> dict[str, list]:
    if isinstance(data, Mapping):
        return {str(k): _items(v) for k, v in data.items()}
    if isinstance(data, (str, os.PathLike)):
        root = Path(data)
        if not root.is_dir():
            raise ValueError(f"data folder {str(root)!r} does not exist")
        if (root / "HR").is_dir() or any(
            p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir()
        ):
            return {root.name: list_images(root)}
        subsets = {p.name: list_images(p) for p in sorted(root.iterdir()) if p.is_dir()}
        if not subsets:
            raise ValueError(f"data folder {str(root)!r} holds no images and no image folders")
        return subsets
    return {"images": _items(data)}


def _items(source: object) -> list:
    if isinstance(source, (str, os.PathLike)):
        return list_images(source)
    if isinstance(source, Sequence) and all(isinstance(t, torch.Tensor) for t in source):
        return list(source)
    raise TypeError(
        "data must be a folder, a list of (3, H, W) tensors or a dict of them, "
        f"got {type(source).__name__}"
    )


def evaluate(
    model: nn.Module,
    data: str | os.PathLike | Mapping | Sequence[torch.Tensor],
    *,
    scales: Iterable[float] = (2, 3, 4),
    bicubic: bool = True,
    ssim: bool = True,
    progress: bool = True,
    device: torch.device | str | None = None,
    max_window_pixels: int | None = None,
    precision: str = "fp32",
) -> EvalReport:
    """PSNR-Y / SSIM-Y of ``model`` on benchmark images at each scale, plus a bicubic row.

    Args:
        model: an arbitrary-scale model usable with :func:`scaleeq.upscale` (e.g. an
            ``ArbitraryScaleSR``), or a callable ``model(lr, size=(H, W))``.
        data: a folder of HR images (or a folder of such folders, one per set, e.g.
            ``benchmarks/`` with ``Set5/HR`` and ``Set14/HR``), a list of ``(3, H, W)``
            tensors, or a dict ``{set_name: folder or list}``.
        scales: scales to evaluate: numbers, or ``(r_h, r_w)`` pairs for different factors per
            axis (the border crop is then ``ceil(r)`` per axis).
        bicubic: add a MATLAB-bicubic upsampling row per set.
        ssim: compute SSIM-Y too.
        progress: show a tqdm progress bar (if tqdm is installed).
        device: where to run (default: the model's device).
        max_window_pixels: tile budget for :func:`scaleeq.upscale` (default: the upsampler's).
        precision: compute precision of the model (``"fp32"``, ``"bf16"``, ``"fp16"``,
            ``"auto"``; :mod:`scaleeq.precision`); bicubic and the metrics stay float32/64.

    Returns:
        :class:`EvalReport`.
    """
    scales = list(scales)
    check_precision(precision)  # a named error before any work
    for s in scales:
        _scale_pair(s)  # validates
    scales = [_key(s) for s in scales]
    sets = _sets(data)
    if device is None:
        param = next(model.parameters(), None) if isinstance(model, nn.Module) else None
        device = param.device if param is not None else torch.device("cpu")
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=sum(len(v) for v in sets.values()) * len(scales), desc="evaluate", leave=False
            )
        except ImportError:
            bar = None
    was_training = model.training if isinstance(model, nn.Module) else False
    if isinstance(model, nn.Module):
        model.eval()
    report = EvalReport()
    try:
        for set_name, items in sets.items():
            images = [
                load_image(i) if not isinstance(i, torch.Tensor) else i.float() for i in items
            ]
            for s in scales:
                pair = _scale_pair(s)
                acc = {"model": ([], []), "bicubic": ([], [])}
                for hr in images:
                    lr, hr = make_lr_hr(hr, s)
                    lr, hr = lr[None].to(device), hr[None].to(device)
                    size = tuple(hr.shape[-2:])
                    with torch.no_grad():
                        if is_sr_model(model) or is_upsampler(model):
                            sr = upscale(
                                model, lr, size=size, max_window_pixels=max_window_pixels,
                                precision=precision,
                            )  # fmt: skip
                        else:
                            with autocast(precision, device):
                                sr = model(lr, size=size).to(lr.dtype)
                    outputs = {"model": _quantise(sr)}
                    if bicubic:
                        outputs["bicubic"] = _quantise(imresize(lr, size=size))
                    for method, out in outputs.items():
                        acc[method][0].append(float(psnr_y(out, hr, scale=pair)))
                        if ssim:
                            acc[method][1].append(float(ssim_y(out, hr, scale=pair)))
                    if bar is not None:
                        bar.update(1)
                for method, (psnrs, ssims) in acc.items():
                    if psnrs:
                        report.rows.append({
                            "set": set_name,
                            "scale": s,
                            "method": method,
                            "psnr_y": sum(psnrs) / len(psnrs),
                            "ssim_y": sum(ssims) / len(ssims) if ssims else float("nan"),
                            "images": len(psnrs),
                        })  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
        if isinstance(model, nn.Module):
            model.train(was_training)
    return report
