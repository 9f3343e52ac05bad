"""The IIIF image service behind ``scaleeq serve``: images, the region/size mapping, caches,
renders.

Nothing here needs the web stack (only torch, numpy and Pillow); :mod:`scaleeq.serve.app`
wraps :class:`ImageService` in an ASGI application.

**How a request maps to the model's render.** A request asks for the region ``(x, y, w, h)``
of an image of ``W x H`` pixels at the size ``(w', h')``. Per axis, the request's *zoom level*
is the whole-image size at its factor: ``W_full = round(W * w' / w)`` and
``H_full = round(H * h' / h)`` (halves up, in exact integer arithmetic). The response is the
window ``(top, left, h', w')`` of the render of the whole image at ``(H_full, W_full)``, with
``left = round(x * W_full / W)`` and ``top = round(y * H_full / H)`` (moved back inside the
render if an inconsistently sized edge tile would overrun it). Tiles whose regions tile the image
and whose sizes follow one factor therefore get abutting windows of one render: no seams.

Where a level is larger than the image on both axes, the model renders it: the render is cut
into fixed ``block x block`` blocks (aligned to the render's origin), each rendered once through
the upsampler's exact windowed path and kept as 8-bit pixels in the block cache, so a pixel's
value never depends on which request asked for it (tiles are bit-identical crops of the one
render). Levels at or below native size on both axes are resampled from the source with
Pillow's antialiased Lanczos filter. A level that upscales one axis and shrinks the other is
rendered at native size on the shrunk axis, then resampled along it.

**Virtual upscaled images.** ``name@4x`` (factors in ``virtual_factors``) is the image
super-resolved x4, as a IIIF image of ``4 W x 4 H`` pixels: stock viewers (OpenSeadragon,
Mirador) that never ask for ``^`` sizes then zoom beyond the source's native resolution with
ordinary tiles. Its coordinates are divided by 4 before the mapping above.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import torch

from ..images import IMAGE_SUFFIXES
from ..precision import autocast
from .cache import ByteLRU
from .config import ServiceConfig
from .encode import MEDIA_TYPES, encode
from .grammar import (
    FORMATS,
    IIIFError,
    ImageRequest,
    canonical_path,
    resolve_region,
    resolve_size,
)
from .mapping import AxisMap, map_axis

__all__ = ["AxisMap", "ImageService", "ServiceConfig", "map_axis"]

_VIRTUAL = re.compile(r"^(.+)@([1-9][0-9]*)x$")
#: Characters of a URI path segment left as they are (RFC 3986 ``pchar`` less the unreserved
#: ones, which are never encoded): sub-delimiters, ``:`` and ``@``.
_SEGMENT_SAFE = "!$&'()*+,;=:@"


@dataclass
class _Image:
    """A served file: its path, its identity (to invalidate caches) and its size."""

    name: str
    path: Path
    stamp: tuple[int, int]
    width: int
    height: int


class ImageService:
    """Answers IIIF requests for the images in ``root`` (a folder, or one image file).

    Thread-safe: requests may run concurrently from a worker pool; the LR features of an
    image are computed once however many requests wait for them (a per-key lock).

    Attributes:
        feature_computations: total number of ``model.features`` calls.
        feature_counts: those calls per ``(identifier, conditioning scale)``.
        responses, features, blocks, sources: the byte-capped LRU caches.
    """

    def __init__(
        self, root: str | os.PathLike, model: torch.nn.Module, config: ServiceConfig | None = None
    ) -> None:
        self.root = Path(root).resolve()
        if not self.root.exists():
            raise ValueError(f"path {str(root)!r} does not exist")
        if self.root.is_file() and self.root.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"path {str(root)!r} is not an image ({', '.join(IMAGE_SUFFIXES)})")
        self.model = model.eval()
        self.config = config or ServiceConfig()
        c = self.config
        self.responses = ByteLRU(c.response_cache_bytes, "response cache")
        self.features = ByteLRU(c.feature_cache_bytes, "feature cache")
        self.blocks = ByteLRU(c.block_cache_bytes, "block cache")
        self.sources = ByteLRU(c.source_cache_bytes, "source cache")
        self.feature_computations = 0
        self.feature_counts: Counter[tuple[str, str]] = Counter()
        self.renders = 0
        self._stripes = [threading.RLock() for _ in range(64)]  # per-key locks, bounded
        self._count_lock = threading.Lock()
        self._listing: dict[str, Path] = {}
        self._listed_at = -math.inf
        self._meta: dict[Path, _Image] = {}
        self.model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())

    # ---- identifiers -------------------------------------------------------------------------

    def _scan(self) -> dict[str, Path]:
        """Identifier -> file, from the folder's listing (never from joining a client's text)."""
        files = [self.root] if self.root.is_file() else sorted(
            p for p in self.root.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )  # fmt: skip
        names: dict[str, Path] = {}
        for p in files:
            real = p.resolve()
            if not real.is_file():
                continue
            if self.root.is_dir() and not real.is_relative_to(self.root):
                continue  # a symlink leading out of the served folder
            names.setdefault(p.name, real)
            names.setdefault(p.stem, real)
        return names

    def identifiers(self) -> list[str]:
        """The identifiers served (file names without their extension)."""
        return sorted({p.stem for p in self._lookup_table(force=True).values()})

    def _lookup_table(self, force: bool = False) -> dict[str, Path]:
        now = time.monotonic()
        if force or now - self._listed_at > 1.0:
            self._listing, self._listed_at = self._scan(), now
        return self._listing

    def image(self, identifier: str) -> tuple[_Image, int]:
        """``(image, k)`` for an identifier (``k`` > 1 for a ``@kx`` virtual image).

        Raises:
            IIIFError: 404 for an unknown identifier.
        """
        name, k = identifier, 1
        m = _VIRTUAL.match(identifier)
        if m and int(m[2]) in self.config.virtual_factors and identifier not in self._listing:
            name, k = m[1], int(m[2])
        path = self._lookup_table().get(name)
        if path is None:  # a file added since the last listing
            path = self._lookup_table(force=True).get(name)
        if path is None:
            raise IIIFError(404, f"no image with identifier {identifier!r}")
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            meta = self._meta.get(path)
            if meta is None or meta.stamp != stamp:
                from PIL import Image

                with Image.open(path) as im:
                    width, height = im.size
                meta = _Image(path.stem, path, stamp, width, height)
                self._meta[path] = meta
        except (OSError, ValueError, SyntaxError) as e:
            raise IIIFError(500, f"cannot read image {identifier!r}: {e}") from None
        return meta, k

    # ---- info.json ---------------------------------------------------------------------------

    @staticmethod
    def base_uri(identifier: str, base_url: str) -> str:
        """The image's base URI under ``base_url``: the ``id`` of its ``info.json`` and the
        service its manifest names. The identifier is percent-encoded as one path segment
        (``my cat`` is ``my%20cat``, ``#1`` is ``%231``); plain names are unchanged."""
        return f"{base_url.rstrip('/')}/{quote(identifier, safe=_SEGMENT_SAFE)}"

    def info(self, identifier: str, base_url: str) -> dict[str, Any]:
        """The ``info.json`` document (level 2) of ``identifier``, served under ``base_url``."""
        img, k = self.image(identifier)
        c = self.config
        width, height = img.width * k, img.height * k
        factors = [1]
        while max(math.ceil(width / factors[-1]), math.ceil(height / factors[-1])) > c.tile:
            factors.append(factors[-1] * 2)
        doc: dict[str, Any] = {
            "@context": "http://iiif.io/api/image/3/context.json",
            "id": self.base_uri(identifier, base_url),
            "type": "ImageService3",
            "protocol": "http://iiif.io/api/image",
            "profile": "level2",
            "width": width,
            "height": height,
        }
        lim = c.limits
        limits = {
            "maxWidth": lim.max_width,
            "maxHeight": lim.max_height,
            "maxArea": lim.max_area,
        }
        doc.update({key: v for key, v in limits.items() if v is not None})
        doc["tiles"] = [{"width": c.tile, "height": c.tile, "scaleFactors": factors}]
        doc["preferredFormats"] = ["jpg", "webp"]
        doc["extraFormats"] = ["webp"]
        doc["extraFeatures"] = [
            "baseUriRedirect",
            "canonicalLinkHeader",
            "cors",
            "jsonldMediaType",
            "mirroring",
            "profileLinkHeader",
            "regionByPct",
            "regionByPx",
            "regionSquare",
            "rotationBy90s",
            "sizeByConfinedWh",
            "sizeByH",
            "sizeByPct",
            "sizeByW",
            "sizeByWh",
            "sizeUpscaling",
        ]
        return doc

    # ---- requests ----------------------------------------------------------------------------

    def resolve(
        self, identifier: str, req: ImageRequest
    ) -> tuple[_Image, int, tuple[int, int, int, int], tuple[int, int], str]:
        """Check a request against its image and the limits (cheap; no pixels are read).

        Returns:
            ``(image, k, region, size, canonical path)``.

        Raises:
            IIIFError: 404 unknown identifier; 400 region, size, limits or ``max_factor``.
        """
        img, k = self.image(identifier)
        vw, vh = img.width * k, img.height * k
        region = resolve_region(req.region, vw, vh)
        size = resolve_size(req.size, region[2], region[3], self.config.limits)
        for axis, out, reg, src, virt in (
            ("width", size[0], region[2], img.width, vw),
            ("height", size[1], region[3], img.height, vh),
        ):
            factor = out * virt / (reg * src)
            if factor > self.config.max_factor:
                raise IIIFError(
                    400,
                    f"size {size[0]} x {size[1]} of region {region[2]} x {region[3]} upscales the "
                    f"{axis} x{factor:.3g} relative to the source, above the server's max_factor "
                    f"of {self.config.max_factor:g}",
                )
        canon = canonical_path(identifier, region, size, (vw, vh), req, self.config.limits)
        return img, k, region, size, canon

    def cached_response(self, canonical: str) -> tuple[bytes, str] | None:
        """``(body, media type)`` of a cached response, or ``None``."""
        return self.responses.get(canonical)

    def respond(self, identifier: str, req: ImageRequest) -> tuple[bytes, str, str]:
        """Render and encode a request: ``(body, media type, canonical path)`` (blocking)."""
        img, k, region, size, canon = self.resolve(identifier, req)
        hit = self.responses.get(canon)
        if hit is not None:
            return hit[0], hit[1], canon
        pixels = self.pixels(img, k, region, size)
        c = self.config
        body = encode(pixels, req, jpeg_quality=c.jpeg_quality, webp_quality=c.webp_quality)
        media = MEDIA_TYPES[req.format]
        self.responses.put(canon, (body, media), len(body) + len(canon))
        return body, media, canon

    def pixels(
        self, img: _Image, k: int, region: tuple[int, int, int, int], size: tuple[int, int]
    ) -> np.ndarray:
        """The response's pixels before rotation and quality: ``(h', w', 3)`` uint8."""
        x, y, w, h = region
        ax = map_axis(img.width, img.width * k, x, w, size[0])
        ay = map_axis(img.height, img.height * k, y, h, size[1])
        if not (ax.model or ay.model):
            return self._resample(self._source(img)[1], (ax.lo, ay.lo, ax.hi, ay.hi), size)
        # model axes: the window of the level's render; other axes: native size, resampled
        rows = (
            (ay.start, ay.length)
            if ay.model
            else (math.floor(ay.lo), math.ceil(ay.hi) - math.floor(ay.lo))
        )
        cols = (
            (ax.start, ax.length)
            if ax.model
            else (math.floor(ax.lo), math.ceil(ax.hi) - math.floor(ax.lo))
        )
        full = (ay.full if ay.model else img.height, ax.full if ax.model else img.width)
        out = self.render_window(img, full, (rows[0], cols[0], rows[1], cols[1]))
        if ax.model and ay.model:
            return out
        from PIL import Image

        box = (
            0.0 if ax.model else ax.lo - cols[0],
            0.0 if ay.model else ay.lo - rows[0],
            float(cols[1]) if ax.model else ax.hi - cols[0],
            float(rows[1]) if ay.model else ay.hi - rows[0],
        )
        return self._resample(Image.fromarray(out), box, size)

    @staticmethod
    def _resample(
        src: Any, box: tuple[float, float, float, float], size: tuple[int, int]
    ) -> np.ndarray:
        """Pillow's antialiased Lanczos resampling of ``box`` of ``src`` to ``size``."""
        from PIL import Image

        if all(float(b).is_integer() for b in box) and (box[2] - box[0], box[3] - box[1]) == size:
            return np.asarray(src.crop(tuple(int(b) for b in box)))
        return np.asarray(src.resize(size, Image.Resampling.LANCZOS, box=box))

    # ---- pixels: sources, features, render blocks ----------------------------------------------

    def _lock(self, key: Any) -> threading.RLock:
        """The lock of ``key``'s stripe: work on one key runs once, however many wait for it."""
        return self._stripes[hash(key) % len(self._stripes)]

    def _source(self, img: _Image) -> tuple[torch.Tensor, Any]:
        """``(lr (1, 3, H, W) float32, the same as an 8-bit Pillow RGB image)``, cached."""
        key = (img.path, img.stamp)
        hit = self.sources.get(key)
        if hit is not None:
            return hit
        with self._lock(("source", key)):
            hit = self.sources.get(key)
            if hit is not None:
                return hit
            from PIL import Image

            from ..images import load_image

            try:
                lr = load_image(img.path)[None]
            except ValueError as e:
                raise IIIFError(500, str(e)) from None
            arr = (lr[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            value = (lr, Image.fromarray(np.ascontiguousarray(arr)))
            self.sources.put(key, value, lr.numel() * 5)
            return value

    def _feature_key(self, full: tuple[int, int], img: _Image) -> tuple[float, float]:
        fs = self.config.feature_scale
        if fs == "level":
            return full[0] / img.height, full[1] / img.width
        return float(fs), float(fs)

    def feature_map(self, img: _Image, scale: tuple[float, float]) -> torch.Tensor:
        """The model's LR features of ``img`` conditioned on ``scale``, computed once (cached)."""
        key = (img.path, img.stamp, scale)
        hit = self.features.get(key)
        if hit is not None:
            return hit
        with self._lock(("features", key)):
            hit = self.features.get(key)
            if hit is not None:
                return hit
            lr = self._source(img)[0]
            param = next(self.model.parameters())
            with torch.inference_mode(), autocast(self.config.precision, param.device):
                feat = self.model.features(
                    lr.to(device=param.device, dtype=param.dtype),
                    torch.tensor([list(scale)], dtype=torch.float64),
                )
            with self._count_lock:
                self.feature_computations += 1
                self.feature_counts[(img.name, f"{scale[0]:g}x{scale[1]:g}")] += 1
            self.features.put(key, feat, feat.numel() * feat.element_size())
            return feat

    def render_window(
        self, img: _Image, full: tuple[int, int], window: tuple[int, int, int, int]
    ) -> np.ndarray:
        """``window = (top, left, height, width)`` of the model's render of ``img`` at size
        ``full = (H_full, W_full)``, as ``(height, width, 3)`` uint8, assembled from blocks."""
        from ..geometry import render_plan

        top, left, height, width = window
        b = self.config.block
        fkey = self._feature_key(full, img)
        plan = None
        out = np.empty((height, width, 3), np.uint8)
        for by in range(top // b, (top + height - 1) // b + 1):
            for bx in range(left // b, (left + width - 1) // b + 1):
                key = (img.path, img.stamp, fkey, full, by, bx)
                block = self.blocks.get(key)
                if block is None:
                    if plan is None:
                        feat = self.feature_map(img, fkey)
                        plan = render_plan((img.height, img.width), 1, size=full)
                    block = self._render_block(key, feat, plan, by, bx)
                y0, x0 = max(top, by * b), max(left, bx * b)
                y1 = min(top + height, by * b + block.shape[0])
                x1 = min(left + width, bx * b + block.shape[1])
                out[y0 - top : y1 - top, x0 - left : x1 - left] = block[
                    y0 - by * b : y1 - by * b, x0 - bx * b : x1 - bx * b
                ]
        return out

    def _render_block(
        self, key: Any, feat: torch.Tensor, plan: Any, by: int, bx: int
    ) -> np.ndarray:
        """Render block ``(by, bx)`` of ``plan``'s output (once: other requests wait for it)."""
        with self._lock(key):
            block = self.blocks.get(key)
            if block is not None:
                return block
            b = self.config.block
            full = plan.out_size
            bh, bw = min(b, full[0] - by * b), min(b, full[1] - bx * b)
            with torch.inference_mode(), autocast(self.config.precision, feat.device):
                t = self.model.render(feat, plan=plan.with_window((by * b, bx * b, bh, bw)))
            with self._count_lock:
                self.renders += 1
            q = (t[0].float().clamp(0, 1) * 255).round().to(torch.uint8)
            block = np.ascontiguousarray(q.permute(1, 2, 0).cpu().numpy())
            self.blocks.put(key, block, block.nbytes)
            return block

    # ---- encoding ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters and cache sizes (served at ``/_scaleeq/stats``)."""
        return {
            "feature_computations": self.feature_computations,
            "feature_counts": {f"{n}@{s}": v for (n, s), v in sorted(self.feature_counts.items())},
            "block_renders": self.renders,
            "model_bytes": self.model_bytes,
            "caches": {
                c.name.split()[0]: c.stats()
                for c in (self.responses, self.features, self.blocks, self.sources)
            },
            "formats": list(FORMATS),
        }
