"""The paper's arbitrary-scale training data pipeline (EQSR, Fig. 4).

Each sample: a scale ``r ~ U(r_min, r_max)`` (optionally per axis), an HR crop of
``round(patch * r)`` pixels, its LR version ``imresize``-d to ``patch x patch``, and a
``patch x patch`` window of that HR grid (its position and pixels), augmented by flips and
90-degree rotations. Every sample of a batch has the same number of queries, so batches stack,
and the model renders each window through the upsampler's exact windowed path::

    out = model(batch["lr"], scale=batch["scale"], window=(batch["top"], batch["left"], 48, 48))
    loss = (out - batch["hr"]).abs().mean()

Image files are read and written by :mod:`scaleeq.images` (its names are also importable
from here).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ._checks import check_int
from .images import IMAGE_SUFFIXES, check_output, list_images, load_image, save_image
from .resize import imresize
from .scale import rule_output_size

__all__ = [
    "IMAGE_SUFFIXES",
    "ArbitraryScalePatches",
    "check_output",
    "list_images",
    "load_image",
    "save_image",
]


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
        crop = rule_output_size((self.patch, self.patch), (r_h, r_w))  # the HR crop's size
        crop_h, crop_w = min(crop[0], img.shape[1]), min(crop[1], img.shape[2])
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
