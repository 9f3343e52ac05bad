"""The last step of an IIIF response: mirror, rotate, apply the quality and encode the pixels
in the requested format (Pillow)."""

from __future__ import annotations

import io

import numpy as np

from .grammar import ImageRequest

__all__ = ["MEDIA_TYPES", "encode"]

#: The media type of each format the service answers in.
MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_PIL_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}


def encode(pixels: np.ndarray, req: ImageRequest, *, jpeg_quality: int, webp_quality: int) -> bytes:
    """``pixels`` ``(H, W, 3)`` uint8 mirrored (``!``), rotated clockwise, in the request's
    quality (``gray``, ``bitonal``) and encoded in its format (PNG at compression level 1)."""
    from PIL import Image, ImageOps

    im = Image.fromarray(pixels)
    if req.mirror:
        im = ImageOps.mirror(im)
    if req.rotation:
        im = im.transpose(
            {
                90: Image.Transpose.ROTATE_270,
                180: Image.Transpose.ROTATE_180,
                270: Image.Transpose.ROTATE_90,
            }[req.rotation]
        )
    if req.quality == "gray":
        im = im.convert("L")
    elif req.quality == "bitonal":
        im = im.convert("L").point(lambda v: 255 if v >= 128 else 0)
        if req.format != "jpg":
            im = im.convert("1")
    buf = io.BytesIO()
    fmt = _PIL_FORMATS[req.format]
    if req.format == "jpg":
        im.save(buf, fmt, quality=jpeg_quality)
    elif req.format == "webp":
        im.save(buf, fmt, quality=webp_quality)
    else:
        im.save(buf, fmt, compress_level=1)
    return buf.getvalue()
