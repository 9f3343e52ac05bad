"""Image files: listing, reading (8- and 16-bit, through Pillow and pypng) and writing them
atomically, as ``(3, H, W)`` float tensors in [0, 1]."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import torch

from ._checks import check_tensor
from ._io import atomic_write, check_target

__all__ = ["IMAGE_SUFFIXES", "check_output", "list_images", "load_image", "save_image"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder`` (or in its ``HR`` subfolder), sorted.

    Raises:
        ValueError: the folder does not exist or holds no images.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"image folder {str(root)!r} does not exist")
    if (root / "HR").is_dir():
        root = root / "HR"
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(
            f"image folder {str(root)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})"
        )
    return files


# Pillow modes of 16-bit images (``I``: how Pillow reads 16-bit grayscale PNGs)
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Decode an image file to ``(3, H, W)`` float32 RGB in [0, 1] (needs Pillow).

    Values keep their meaning whatever the storage: 8-bit images are divided by 255, 16-bit
    ones (``I;16`` PNG / TIFF, and Pillow's 32-bit ``I`` mode, which is how it reads 16-bit
    grayscale PNGs) by 65535, float images (``F``, e.g. float TIFF) are taken as [0, 1] and
    must lie in it. Grayscale is replicated to three channels; palette images are expanded;
    alpha is dropped (RGBA, LA); other modes (CMYK, YCbCr, ...) are converted to RGB.
    16-bit colour PNGs (RGB, RGBA, gray+alpha; interlaced or not), which Pillow reads at 8 bits,
    are decoded at full precision with pypng (16-bit colour TIFFs keep Pillow's 8 bits).

    Raises:
        ValueError: the file is missing or not a readable image, or a float image has values
            outside [0, 1] (or non-finite ones); the message names the file.
        ImportError: Pillow is missing, or pypng for a 16-bit colour PNG.
    """
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - examples extra
        raise ImportError("reading images needs Pillow: pip install scaleeq[examples]") from e

    try:
        with open(path, "rb") as f:
            head = f.read(26)
        if _is_16_bit_colour_png(head):
            arr, mode = _load_with_pypng(path, Image.MAX_IMAGE_PIXELS), "16-bit PNG"
        else:
            arr, mode = _load_with_pillow(path)
    except (OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"cannot read image {str(path)!r}: {e}") from e
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if mode in _SIXTEEN_BIT_MODES and arr.max() > 1:
        raise ValueError(f"cannot read image {str(path)!r}: integer values above 16 bits")
    return torch.from_numpy(np.ascontiguousarray(arr[..., :3])).permute(2, 0, 1).float()


def check_output(path: str | os.PathLike, bits: object) -> None:
    """Raise ``ValueError`` unless :func:`save_image` can write ``bits`` to ``path``: bits 8
    (any format) or 16 (``.png``), and a file name in an existing folder. The CLI asks before
    it renders."""
    if bits not in (8, 16) or isinstance(bits, bool):
        raise ValueError(f"bits must be 8 or 16, got {bits!r}")
    if bits == 16 and Path(path).suffix.lower() != ".png":
        raise ValueError(f"bits=16 is supported for .png files only, got {str(path)!r}")
    check_target(path)
    if bits == 8:
        _pillow_format(path)


def _pillow_format(path: str | os.PathLike) -> str:
    """Pillow's format name for ``path``'s suffix (one it can write), else ``ValueError``."""
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - examples extra
        raise ImportError("writing images needs Pillow: pip install scaleeq[examples]") from e
    suffix = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(
            f"cannot write {str(path)!r}: unknown image format {suffix or '(no suffix)'!r}"
        )
    return fmt


def save_image(img: torch.Tensor, path: str | os.PathLike, *, bits: int = 8) -> Path:
    """Write ``img`` ``(3, H, W)`` or ``(1, H, W)`` in [0, 1] to ``path``, atomically.

    Values are clamped to [0, 1] and rounded to ``bits``: 8 (any format Pillow writes, chosen
    by the suffix; needs Pillow) or 16 (``.png`` only, written with pypng: Pillow cannot
    write 16-bit colour PNGs). :func:`load_image` reads both back to the same values (to
    1/255 and 1/65535).

    Returns:
        the path written.

    Raises:
        TypeError: ``img`` is not a floating-point tensor.
        ValueError: a bad shape, non-finite values, ``bits`` not 8 or 16, 16 bits for a format
            other than PNG, an unknown suffix, or a path that cannot be written (a directory,
            a missing folder); the message names the path.
        ImportError: Pillow (8 bits) or pypng (16 bits) is missing.
    """
    check_tensor(img, "img", ndim=3, layout="(C, H, W)")
    if img.shape[0] not in (1, 3) or min(img.shape[1:]) < 1:
        raise ValueError(f"img must have shape (3, H, W) or (1, H, W), got {tuple(img.shape)}")
    check_output(path, bits)
    path = Path(path)
    img = img.detach().float().cpu()
    if not bool(torch.isfinite(img).all()):
        raise ValueError(f"cannot write {str(path)!r}: the image holds NaN or infinite values")
    top = 2**bits - 1
    arr = (img.clamp(0, 1) * top).round().permute(1, 2, 0).numpy()
    arr = arr.astype(np.uint16 if bits == 16 else np.uint8)
    if arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if bits == 16:
        png = _pypng()
        h, w = arr.shape[:2]
        writer = png.Writer(w, h, greyscale=arr.ndim == 2, alpha=False, bitdepth=16)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                writer.write(f, arr.reshape(h, -1))

    else:
        from PIL import Image

        fmt = _pillow_format(path)
        pil = Image.fromarray(arr)

        def write(tmp: str) -> None:
            pil.save(tmp, format=fmt)

    try:
        return atomic_write(path, write)
    except OSError as e:
        raise ValueError(f"cannot write {str(path)!r}: {e}") from e


# PNG signature, then the IHDR chunk: length 13, type, width, height, bit depth, colour type
_PNG_START = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"


def _is_16_bit_colour_png(head: bytes) -> bool:
    """Whether a file's first 26 bytes start a 16-bit RGB, RGBA or gray+alpha PNG (the ones
    Pillow reads at 8 bits)."""
    return (
        len(head) >= 26 and head.startswith(_PNG_START) and head[24] == 16 and head[25] in (2, 4, 6)
    )


def _pypng():
    """The ``png`` module (PyPI: pypng), imported when a 16-bit PNG is read or written."""
    try:
        import png
    except ImportError as e:
        raise ImportError(
            "16-bit PNGs need pypng: pip install pypng (or pip install scaleeq[examples])"
        ) from e
    return png


def _load_with_pypng(path: str | os.PathLike, max_pixels: int | None) -> np.ndarray:
    """A 16-bit colour PNG's colour as float64 ``(H, W)`` (gray) or ``(H, W, 3)`` in [0, 1]
    (alpha dropped); more than ``2 * max_pixels`` pixels are refused, as Pillow refuses."""
    png = _pypng()
    with open(path, "rb") as f:
        try:
            width, height, rows, info = png.Reader(file=f).asDirect()
            if max_pixels is not None and width * height > 2 * max_pixels:
                raise ValueError(f"{width}x{height} pixels: a decompression bomb?")
            samples = np.vstack([np.asarray(row, np.float64) for row in rows])
        except (png.Error, zlib.error) as e:  # pypng's errors are not ValueErrors
            raise ValueError(str(e)) from e
    planes = info["planes"]  # 2 gray+alpha, 3 RGB, 4 RGBA (a tRNS chunk adds alpha)
    samples = samples.reshape(height, width, planes)
    arr = samples[..., 0] if planes <= 2 else samples[..., :3]  # alpha dropped
    return arr / (2 ** info["bitdepth"] - 1)  # 65535 (less with an sBIT chunk)


def _load_with_pillow(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """``(values in [0, 1] as float64 (H, W) or (H, W, C), Pillow's mode)``."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        mode = im.mode
        if mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            mode = im.mode
        if mode in _SIXTEEN_BIT_MODES:
            arr = np.asarray(im).astype(np.float64) / 65535.0
        elif mode == "F":
            arr = np.asarray(im).astype(np.float64)
            if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
                raise ValueError(
                    f"float image values must lie in [0, 1], got [{arr.min():g}, {arr.max():g}]"
                )
        elif mode in ("1", "L", "LA"):
            arr = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
        else:  # RGB, RGBA (alpha dropped), CMYK, YCbCr, ...
            arr = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
    return arr, mode
