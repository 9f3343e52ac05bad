"""The paper's arbitrary-scale training data pipeline (EQSR, Fig. 4) and image loading.

Each sample: a scale ``r ~ U(r_min, r_max)`` (optionally per axis), an HR crop of
``round(patch * r)`` pixels, its LR version ``imresize``-d to ``patch x patch``, and a
``patch x patch`` window of that HR grid (its position and pixels), augmented by flips and
90-degree rotations. Every sample of a batch has the same number of queries, so batches stack,
and the model renders each window through the upsampler's exact windowed path::

    out = model(batch["lr"], scale=batch["scale"], window=(batch["top"], batch["left"], 48, 48))
    loss = (out - batch["hr"]).abs().mean()
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ._checks import check_int, check_tensor
from ._io import atomic_write, check_target
from .resize import imresize

__all__ = ["IMAGE_SUFFIXES", "ArbitraryScalePatches", "list_images", "load_image", "save_image"]

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


def _check_image_files(paths: Sequence[Path], patch: int) -> None:
    """Open every file's header once: unreadable files and ones smaller than ``patch`` on a
    side are reported together, when the dataset is built."""
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - examples extra
        raise ImportError("reading images needs Pillow: pip install scaleeq[examples]") from e
    bad = []
    for path in paths:
        try:
            with Image.open(path) as im:
                w, h = im.size
                im.verify()
        except Exception as e:  # any decoder failure makes the file unusable
            bad.append(f"{path.name} (unreadable: {type(e).__name__})")
            continue
        if min(h, w) < patch:
            bad.append(f"{path.name} ({w}x{h}, smaller than the patch {patch})")
    if bad:
        raise ValueError(f"{len(bad)} training image(s) cannot be used: {', '.join(bad[:10])}")


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen, dtype=torch.float64))


class ArbitraryScalePatches(Dataset):
    """Fig. 4 patches from a folder of HR images or a list of ``(3, H, W)`` tensors in [0, 1].

    Args:
        source: folder path (``list_images``) or a sequence of tensors.
        patch: LR patch size and rendered window size (48 in the paper).
        scale_range: ``(r_min, r_max)`` for ``r ~ U(r_min, r_max)``; ``r_min >= 1``.
        per_axis: draw ``r_h`` and ``r_w`` independently: ``True`` for every sample, a float
            ``p`` in [0, 1] for a fraction ``p`` of the samples (the others are square), so one
            model learns square and non-square scales.
        samples_per_epoch: dataset length (patches per epoch).
        augment: random flips and 90-degree rotations.
        seed: base seed; sample ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``,
            so results do not depend on workers, samplers or ranks.

    Items are dicts: ``lr (3, patch, patch)``, ``hr (3, patch, patch)`` (the window's target),
    ``scale (2,)`` float64 (``H_crop / patch``, ``W_crop / patch``: exact, so the upsampler's
    output-size rule gives back the crop size), ``top``, ``left`` (int64: the window position in
    the crop's HR grid).

    Images are decoded once and kept in memory (per process).
    """

    def __init__(
        self,
        source: str | os.PathLike | Sequence[torch.Tensor],
        *,
        patch: int = 48,
        scale_range: tuple[float, float] = (1.0, 4.0),
        per_axis: bool | float = False,
        samples_per_epoch: int = 1000,
        augment: bool = True,
        seed: int = 0,
    ) -> None:
        lo, hi = scale_range
        if not (math.isfinite(lo) and math.isfinite(hi) and 1.0 <= lo <= hi):
            raise ValueError(f"scale_range must satisfy 1 <= r_min <= r_max, got {scale_range!r}")
        check_int(patch, "patch")
        check_int(samples_per_epoch, "samples_per_epoch")
        if isinstance(source, (str, os.PathLike)):
            self.paths: list[Path] | None = list_images(source)
            _check_image_files(self.paths, patch)  # now, not when first sampled
            self._images: list[torch.Tensor | None] = [None] * len(self.paths)
        else:
            images = list(source)
            if not images:
                raise ValueError("source holds no images")
            for i, img in enumerate(images):
                if not isinstance(img, torch.Tensor) or img.ndim != 3 or img.shape[0] != 3:
                    raise ValueError(
                        f"source[{i}] must be a (3, H, W) tensor, got "
                        f"{getattr(img, 'shape', type(img).__name__)}"
                    )
            small = [i for i, img in enumerate(images) if min(img.shape[1:]) < patch]
            if small:
                raise ValueError(
                    f"source images {small[:8]} are smaller than the patch {patch} on a side"
                )
            self.paths = None
            self._images = [img.float() for img in images]
        self.patch = patch
        self.scale_range = (float(lo), float(hi))
        if isinstance(per_axis, bool):
            per_axis = 1.0 if per_axis else 0.0
        if not isinstance(per_axis, (int, float)) or not 0.0 <= per_axis <= 1.0:
            raise ValueError(
                f"per_axis must be a bool or a probability in [0, 1], got {per_axis!r}"
            )
        self.per_axis = float(per_axis)
        self.samples_per_epoch = samples_per_epoch
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (new crops and scales), like ``DistributedSampler.set_epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def image(self, index: int) -> torch.Tensor:
        img = self._images[index]
        if img is None:
            assert self.paths is not None
            img = self._images[index] = load_image(self.paths[index])
        return img

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        return self.sample(self.epoch, index)

    def sample(self, epoch: int, index: int) -> dict[str, torch.Tensor]:
        """Sample ``index`` of ``epoch``: a pure function of ``(seed, epoch, index)``."""
        gen = torch.Generator().manual_seed(hash((self.seed, epoch, index)) & 0x7FFF_FFFF_FFFF_FFFF)
        img = self.image(int(torch.randint(len(self._images), (), generator=gen)))
        lo, hi = self.scale_range
        r_h = _uniform(gen, lo, hi)
        r_w = r_h
        if self.per_axis == 1.0 or (
            self.per_axis > 0.0 and float(torch.rand((), generator=gen)) < self.per_axis
        ):
            r_w = _uniform(gen, lo, hi)
        crop_h = min(math.floor(self.patch * r_h + 0.5), img.shape[1])
        crop_w = min(math.floor(self.patch * r_w + 0.5), img.shape[2])
        if crop_h < self.patch or crop_w < self.patch:
            raise ValueError(
                f"image of size {tuple(img.shape[1:])} is smaller than the patch {self.patch}"
            )
        y0 = int(torch.randint(img.shape[1] - crop_h + 1, (), generator=gen))
        x0 = int(torch.randint(img.shape[2] - crop_w + 1, (), generator=gen))
        hr = img[:, y0 : y0 + crop_h, x0 : x0 + crop_w]
        if self.augment:
            if bool(torch.rand((), generator=gen) < 0.5):
                hr = hr.flip(-1)
            if bool(torch.rand((), generator=gen) < 0.5):
                hr = hr.flip(-2)
            if bool(torch.rand((), generator=gen) < 0.5):
                hr = hr.transpose(-1, -2)  # with the flips: all 8 rotations/reflections
        crop_h, crop_w = hr.shape[1:]
        lr = imresize(hr, size=(self.patch, self.patch)).clamp(0, 1)
        top = int(torch.randint(crop_h - self.patch + 1, (), generator=gen))
        left = int(torch.randint(crop_w - self.patch + 1, (), generator=gen))
        target = hr[:, top : top + self.patch, left : left + self.patch]
        return {
            "lr": lr.contiguous(),
            "hr": target.contiguous(),
            "scale": torch.tensor([crop_h / self.patch, crop_w / self.patch], dtype=torch.float64),
            "top": torch.tensor(top),
            "left": torch.tensor(left),
        }
