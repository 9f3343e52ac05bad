"""The ``scaleeq`` command (also ``python -m scaleeq``): upscale, export, eval, bench.

::

    scaleeq upscale photo.png photo_x3.5.png --scale 3.5 --checkpoint edsr_star.safetensors
    scaleeq upscale photo.png wide.png --scale 2.5x1.5 --checkpoint ck.pt     # width x height
    scaleeq upscale photo.png hd.png --size 1920x1080 --checkpoint ck.pt     # width x height
    scaleeq upscale photo.png deep.png --scale 2 --bits 16                   # 16-bit PNG
    scaleeq export model.onnx [--checkpoint ck.safetensors] [--tile N] [--no-split] \
        [--precision fp16]                                                   # ONNX
    scaleeq upscale photo.png out.png --scale 3.3 --onnx model.onnx          # in onnxruntime
    scaleeq eval --checkpoint ck.pt --data benchmarks/ --scales 2,3,4,6,8 [--json out.json]
    scaleeq bench [--device cuda] [--json out.json]

Errors (missing files, unreadable images, bad scales or sizes) print one line and exit with
status 2; nothing prints a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from .onnx.files import PRECISIONS as ONNX_PRECISIONS
from .precision import PRECISIONS

__all__ = ["main", "parse_pair"]


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def parse_pair(text: str, name: str, *, integer: bool) -> tuple[float, float]:
    """``"3.5"`` -> ``(3.5, 3.5)``; ``"2.5x1.5"`` -> ``(2.5, 1.5)`` (width x height order)."""
    parts = text.lower().split("x")
    if len(parts) == 1 and not integer:
        parts = parts * 2
    if len(parts) != 2:
        raise CLIError(
            f"{name} must look like {'1920x1080' if integer else '3.5 or 2.5x1.5'}, got {text!r}"
        )
    try:
        values = [int(p) if integer else float(p) for p in parts]
    except ValueError:
        raise CLIError(
            f"{name} must look like {'1920x1080' if integer else '3.5 or 2.5x1.5'}, got {text!r}"
        ) from None
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise CLIError(f"{name} must be positive and finite, got {text!r}")
    return values[0], values[1]


def _check_device(text: str) -> str:
    """``--device`` as torch names it, and present on this machine (else a one-line error)."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise CLIError(
            f"--device must be a torch device such as cpu, cuda or cuda:1; got {text!r}"
        ) from None
    available = {
        "cpu": lambda: True,
        "cuda": torch.cuda.is_available,
        "mps": lambda: torch.backends.mps.is_available(),
    }
    check = available.get(device.type)
    if check is None or not check():
        raise CLIError(f"--device {text}: no such device is available on this machine")
    if (
        device.type == "cuda"
        and device.index is not None
        and device.index >= torch.cuda.device_count()
    ):
        raise CLIError(
            f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return text


def _load_model(checkpoint: str | None, device: str, quiet: bool = False):
    model = _load_stored_model(checkpoint, device, quiet)
    if torch.device(device).type == "cpu":  # its convolutions are faster so on the CPU
        model = model.to(memory_format=torch.channels_last)  # (benchmarks/roofline.py)
    return model


def _load_stored_model(checkpoint: str | None, device: str, quiet: bool):
    if checkpoint is None:
        from .pretrained import DEFAULT_MODEL, PRETRAINED, pretrained

        if not quiet:
            print(f"using the built-in model {DEFAULT_MODEL!r}: {PRETRAINED[DEFAULT_MODEL][1]}")
        try:
            return pretrained(DEFAULT_MODEL, map_location=device)
        except ImportError as e:
            raise CLIError(str(e)) from None
    return _load_checkpoint(checkpoint, device)


def _load_checkpoint(checkpoint: str, device: str):
    from .retrofit import load

    if not Path(checkpoint).is_file():
        raise CLIError(f"checkpoint {checkpoint!r} does not exist")
    try:
        return load(checkpoint, map_location="cpu").to(device).eval()
    except ValueError as e:
        raise CLIError(str(e)) from None


def _cmd_upscale(args: argparse.Namespace) -> None:
    from .images import check_output, load_image
    from .infer import upscale

    if (args.scale is None) == (args.size is None):
        raise CLIError("give exactly one of --scale and --size")
    try:
        check_output(args.output, args.bits)
    except (ValueError, ImportError) as e:
        raise CLIError(str(e)) from None
    if not Path(args.input).is_file():
        raise CLIError(f"input image {args.input!r} does not exist")
    try:
        img = load_image(args.input)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.onnx is not None and args.checkpoint is not None:
        raise CLIError("give --onnx or --checkpoint, not both")
    model = (
        _load_onnx(args.onnx)
        if args.onnx
        else _load_model(args.checkpoint, args.device, args.quiet)
    )
    h, w = img.shape[-2:]
    if args.size is not None:
        out_w, out_h = (int(v) for v in parse_pair(args.size, "--size", integer=True))
        kwargs = {"size": (out_h, out_w)}
    else:
        r_w, r_h = parse_pair(args.scale, "--scale", integer=False)
        kwargs = {"scale": (r_h, r_w)}
    t0 = time.perf_counter()
    try:
        if args.onnx:  # tiles of the size fixed at export
            if args.tile is not None:
                raise CLIError(f"--tile is fixed at export for --onnx (this file: {model.tile})")
            if args.precision not in (None, "auto", model.precision):
                hint = (
                    f"`scaleeq export --precision {args.precision}` writes one"
                    if args.precision in ONNX_PRECISIONS
                    else f"exported files are {' or '.join(ONNX_PRECISIONS)}"
                )
                raise CLIError(
                    f"--precision {args.precision}: an --onnx file runs at the precision chosen "
                    f"at export time (this file: {model.precision}; {hint})"
                )
            out = model.upscale(img[None], progress=not args.quiet, **kwargs)
        else:
            out = upscale(
                model,
                img[None].to(args.device),
                max_window_pixels=args.tile * args.tile if args.tile is not None else None,
                progress=not args.quiet,
                precision=args.precision or "fp32",
                **kwargs,
            )
    except (ValueError, TypeError) as e:
        raise CLIError(str(e)) from None
    _save_image(out[0], args.output, args.bits)
    if not args.quiet:
        print(
            f"{args.input} ({w}x{h}) -> {args.output} ({out.shape[-1]}x{out.shape[-2]}) "
            f"in {time.perf_counter() - t0:.1f}s"
        )


def _load_onnx(path: str):
    try:
        from .onnx import OnnxUpscaler

        return OnnxUpscaler(path)
    except (ImportError, ValueError) as e:
        raise CLIError(str(e)) from None


def _cmd_export(args: argparse.Namespace) -> None:
    from .onnx import export_onnx, features_path, splits_by_default

    model = _load_stored_model(args.checkpoint, "cpu", args.quiet)
    tile = (args.tile, args.tile) if args.tile is not None else None
    split = splits_by_default(model) if args.split is None else args.split
    t0 = time.perf_counter()
    try:
        path = export_onnx(model, args.output, split=split, tile=tile, precision=args.precision)
    except (ImportError, ValueError, TypeError) as e:
        raise CLIError(str(e)) from None
    if not args.quiet:
        size = Path(path).stat().st_size / 2**20
        also = f" and {features_path(path).name}" if split else ""
        print(
            f"wrote {path}{also} ({size:.1f} MiB, {args.precision}) in "
            f"{time.perf_counter() - t0:.1f}s"
        )


def _save_image(img: torch.Tensor, path: str, bits: int) -> None:
    from .images import save_image

    try:
        save_image(img, path, bits=bits)
    except ImportError:
        raise CLIError("writing images needs Pillow: pip install scaleeq[examples]") from None
    except ValueError as e:
        raise CLIError(str(e)) from None


def _cmd_eval(args: argparse.Namespace) -> None:
    from .evaluate import evaluate

    scales: list = []
    for item in (t.strip() for t in args.scales.split(",")):
        if not item:
            continue
        if "x" in item:  # WIDTHxHEIGHT factors, as --scale: evaluated as (r_h, r_w)
            try:
                r_w, r_h = parse_pair(item, "--scales", integer=False)
            except CLIError:
                raise CLIError(
                    "--scales must be a comma-separated list of numbers or WIDTHxHEIGHT pairs, "
                    f"got {args.scales!r}"
                ) from None
            scales.append((r_h, r_w))
            continue
        try:
            scales.append(float(item))
        except ValueError:
            raise CLIError(
                "--scales must be a comma-separated list of numbers or WIDTHxHEIGHT pairs, "
                f"got {args.scales!r}"
            ) from None
    flat = [v for s in scales for v in (s if isinstance(s, tuple) else (s,))]
    if not scales or not all(math.isfinite(v) and v > 0 for v in flat):
        raise CLIError(f"--scales must hold positive numbers, got {args.scales!r}")
    if not Path(args.data).is_dir():
        raise CLIError(f"--data folder {args.data!r} does not exist")
    model = _load_model(args.checkpoint, args.device, args.quiet)
    try:
        report = evaluate(
            model, args.data, scales=scales, progress=not args.quiet, device=args.device,
            precision=args.precision,
        )  # fmt: skip
    except ValueError as e:
        raise CLIError(str(e)) from None
    print(report.markdown() if args.markdown else report.table())
    if args.json:
        Path(args.json).write_text(report.to_json())


def _cmd_bench(args: argparse.Namespace) -> None:
    from .bench import run_bench

    report = run_bench(device=args.device, quick=args.quick)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def _cmd_serve(args: argparse.Namespace) -> None:
    import importlib.util

    if any(importlib.util.find_spec(m) is None for m in ("starlette", "uvicorn", "PIL")):
        raise CLIError("scaleeq serve needs its extra: pip install 'scaleeq[serve]'")
    import uvicorn

    from .serve import Limits, ServiceConfig, create_app

    if not Path(args.path).exists():
        raise CLIError(f"path {args.path!r} does not exist")
    feature_scale: float | str = args.feature_scale
    if feature_scale != "level":
        try:
            feature_scale = float(feature_scale)
        except ValueError:
            raise CLIError(
                f"--feature-scale must be a number or 'level', got {args.feature_scale!r}"
            ) from None
    try:
        config = ServiceConfig(
            tile=args.tile if args.tile is not None else 512,
            limits=Limits(args.max_width, args.max_height, args.max_area),
            feature_scale=feature_scale,
            response_cache_bytes=args.response_cache_mb * 2**20,
            feature_cache_bytes=args.feature_cache_mb * 2**20,
            block_cache_bytes=args.block_cache_mb * 2**20,
            precision=args.precision,
        )
        model = _load_model(args.checkpoint, args.device, args.quiet)
        app = create_app(args.path, model, config=config, workers=args.workers, queue=args.queue)
    except (ValueError, ImportError) as e:
        raise CLIError(str(e)) from None
    if not args.quiet:
        print(f"serving {args.path} at http://{args.host}:{args.port}/ (IIIF Image API 3.0)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scaleeq", description="Arbitrary-scale super-resolution (EQSR operators)."
    )
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upscale", help="upscale an image with a saved model")
    up.add_argument("input")
    up.add_argument("output")
    up.add_argument("--scale", help="factor, or WIDTHxHEIGHT factors, e.g. 3.5 or 2.5x1.5")
    up.add_argument("--size", help="output size WIDTHxHEIGHT, e.g. 1920x1080")
    up.add_argument(
        "--checkpoint",
        help=(
            "file written by ArbitraryScaleSR.save (default: the built-in model, "
            "scaleeq.pretrained)"
        ),
    )
    up.add_argument(
        "--tile",
        type=int,
        default=None,
        help="tile side in output pixels (default: the upsampler's cache-sized tiles)",
    )
    up.add_argument(
        "--bits",
        type=int,
        choices=(8, 16),
        default=8,
        help="bits per sample of the output (16: PNG only)",
    )
    up.add_argument("--onnx", help="run a file written by `scaleeq export` in onnxruntime instead")
    up.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help=(
            "compute precision (default fp32; auto: bf16 where the hardware computes it "
            "natively, else fp32); an --onnx file runs at the precision it was exported at"
        ),
    )
    up.add_argument("--device", default="cpu")
    up.add_argument("--quiet", action="store_true")
    ex = sub.add_parser("export", help="export a model to ONNX (scale and input size as inputs)")
    ex.add_argument("output", help="the .onnx file to write")
    ex.add_argument("--checkpoint", help="default: the built-in model (scaleeq.pretrained)")
    ex.add_argument(
        "--tile",
        type=int,
        default=None,
        help=(
            "side of the output window one run renders, fixed in the file (default: half the "
            "upsampler's window budget with --split, 64 for the default upsampler; 256 without)"
        ),
    )
    ex.add_argument(
        "--split",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=(
            "two graphs: features once per image (OUTPUT's .features.onnx), then tiles "
            "(default where the model's features are on the input's grid); --no-split: one graph"
        ),
    )
    ex.add_argument(
        "--precision",
        choices=ONNX_PRECISIONS,
        default="fp32",
        help=(
            "fp16: the image computation in float16, weights stored as float16 (for GPU "
            "runtimes; inputs and outputs stay float32)"
        ),
    )
    ex.add_argument("--quiet", action="store_true")
    ev = sub.add_parser("eval", help="PSNR-Y / SSIM-Y on benchmark folders")
    ev.add_argument("--checkpoint", help="default: the built-in model (scaleeq.pretrained)")
    ev.add_argument("--data", required=True, help="folder of HR images, or of sets (Set5/HR, ...)")
    ev.add_argument(
        "--scales", default="2,3,4", help="e.g. 2,3,4,2.5,3x2 (WIDTHxHEIGHT: per-axis factors)"
    )
    ev.add_argument("--device", default="cpu")
    ev.add_argument(
        "--precision", choices=PRECISIONS, default="fp32", help="compute precision of the model"
    )
    ev.add_argument("--json", default=None)
    ev.add_argument("--markdown", action="store_true")
    ev.add_argument("--quiet", action="store_true")
    se = sub.add_parser("serve", help="IIIF Image API 3.0 server that super-resolves on zoom")
    se.add_argument("path", help="an image, or a folder of images")
    se.add_argument("--checkpoint", help="default: the built-in model (scaleeq.pretrained)")
    se.add_argument("--host", default="127.0.0.1")
    se.add_argument("--port", type=int, default=8000)
    se.add_argument("--workers", type=int, default=1, help="threads doing model work")
    se.add_argument("--queue", type=int, default=8, help="requests that may wait (more: 503)")
    se.add_argument("--tile", type=int, default=None, help="tile size in info.json (512)")
    se.add_argument("--max-width", type=int, default=4096)
    se.add_argument("--max-height", type=int, default=4096)
    se.add_argument("--max-area", type=int, default=4096 * 4096)
    se.add_argument(
        "--feature-scale", default="2", help="scale the LR features are conditioned on, or 'level'"
    )
    se.add_argument("--response-cache-mb", type=int, default=256)
    se.add_argument("--feature-cache-mb", type=int, default=1024)
    se.add_argument("--block-cache-mb", type=int, default=256)
    se.add_argument(
        "--precision", choices=PRECISIONS, default="fp32", help="compute precision of the model"
    )
    se.add_argument("--device", default="cpu")
    se.add_argument("--quiet", action="store_true")
    be = sub.add_parser("bench", help="time the upsampler and the aggregation backends")
    be.add_argument("--device", default="cpu")
    be.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    be.add_argument("--json", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tile = getattr(args, "tile", None)
    if tile is not None and tile < 1:
        print("scaleeq: error: --tile must be >= 1", file=sys.stderr)
        return 2
    try:
        commands = {
            "upscale": _cmd_upscale,
            "export": _cmd_export,
            "eval": _cmd_eval,
            "bench": _cmd_bench,
            "serve": _cmd_serve,
        }
        if getattr(args, "device", None) is not None:
            _check_device(args.device)
        if args.command in ("upscale", "eval", "bench", "serve"):
            from .allocator import keep_freed_memory

            keep_freed_memory()  # this process renders many tiles: reuse freed blocks
        commands[args.command](args)
    except CLIError as e:
        print(f"scaleeq: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scaleeq: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
