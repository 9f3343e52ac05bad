"""Settings of the IIIF image service (``scaleeq serve``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..precision import check_precision
from .grammar import Limits

__all__ = ["ServiceConfig"]


@dataclass
class ServiceConfig:
    """Settings of an :class:`ImageService` (see ``scaleeq serve --help`` and docs/serve.md).

    Attributes:
        tile: the tile size advertised in ``info.json``.
        limits: ``maxWidth`` / ``maxHeight`` / ``maxArea`` of any response.
        max_factor: the largest upscaling factor per axis relative to the source (400 above).
        feature_scale: the scale the model's LR features are conditioned on: a number (one
            feature map per image, reused by every zoom level; default 2.0, see docs/serve.md
            for why) or ``"level"`` (each zoom level conditions on its own factor: one feature
            map per image and level, exactly the model's own output at that factor).
        block: side of the render blocks (pixels of the zoom level's render).
        response_cache_bytes, feature_cache_bytes, block_cache_bytes, source_cache_bytes: caps.
        virtual_factors: the ``@kx`` virtual images offered (empty: none).
        jpeg_quality, webp_quality: encoder settings.
        precision: compute precision of the model's features and renders (``"fp32"``,
            ``"bf16"``, ``"fp16"``, ``"auto"``; :mod:`scaleeq.precision`). Tile geometry does not
            depend on it, so tiles stay exact windows of one render at any precision.
    """

    tile: int = 512
    limits: Limits = field(default_factory=lambda: Limits(4096, 4096, 4096 * 4096))
    max_factor: float = 16.0
    feature_scale: float | str = 2.0
    block: int = 128
    response_cache_bytes: int = 256 * 2**20
    feature_cache_bytes: int = 1024 * 2**20
    block_cache_bytes: int = 256 * 2**20
    source_cache_bytes: int = 256 * 2**20
    virtual_factors: tuple[int, ...] = (2, 4, 8)
    jpeg_quality: int = 90
    webp_quality: int = 90
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_precision(self.precision)
        for name in ("tile", "block"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 16:
                raise ValueError(f"{name} must be an int >= 16, got {v!r}")
        if not (isinstance(self.max_factor, int | float) and self.max_factor >= 1):
            raise ValueError(f"max_factor must be a number >= 1, got {self.max_factor!r}")
        fs = self.feature_scale
        if fs != "level" and not (
            isinstance(fs, int | float) and not isinstance(fs, bool) and 0 < fs < 1e3
        ):
            raise ValueError(f"feature_scale must be a positive number or 'level', got {fs!r}")
        if any(not isinstance(k, int) or k < 2 for k in self.virtual_factors):
            raise ValueError(f"virtual_factors must be ints >= 2, got {self.virtual_factors!r}")
