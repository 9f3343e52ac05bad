"""16-bit colour PNG, which Pillow can neither write nor read at full precision.

Pillow reads 16-bit RGB / RGBA PNGs as 8-bit ``RGB`` / ``RGBA`` (the low byte is dropped) and
refuses to write them. These two functions do exactly that much with numpy and zlib: write
non-interlaced 8- or 16-bit PNGs (``Sub`` filter), and read non-interlaced PNGs of any colour
type without a palette at 8 or 16 bits (all five scanline filters). Everything else goes
through Pillow (:func:`scaleeq.data.load_image` uses this only where Pillow would lose bits).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

__all__ = ["decode_png", "encode_png", "png_header"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel (no palette)
_COLOUR_TYPE = {v: k for k, v in _CHANNELS.items()}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(arr: np.ndarray) -> bytes:
    """PNG bytes of ``arr``: ``(H, W)`` or ``(H, W, C)`` (C = 1..4: gray, gray+alpha, RGB,
    RGBA), ``uint8`` (8-bit) or ``uint16`` (16-bit, stored big-endian)."""
    if arr.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"PNG samples must be uint8 or uint16, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in _COLOUR_TYPE or min(arr.shape[:2]) < 1:
        raise ValueError(f"a PNG image must be (H, W) or (H, W, 1..4), got {arr.shape}")
    h, w, c = arr.shape
    depth = 8 * arr.dtype.itemsize
    raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder(">")).view(np.uint8)
    raw = raw.reshape(h, w * c * arr.dtype.itemsize)
    bpp = c * arr.dtype.itemsize
    filtered = raw.copy()
    filtered[:, bpp:] = raw[:, bpp:] - raw[:, :-bpp]  # Sub filter, modulo 256 in uint8
    scanlines = np.concatenate([np.ones((h, 1), np.uint8), filtered], axis=1)
    header = struct.pack(">IIBBBBB", w, h, depth, _COLOUR_TYPE[c], 0, 0, 0)
    return (
        SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 6))
        + _chunk(b"IEND", b"")
    )


def png_header(data: bytes) -> tuple[int, int, int, int, int] | None:
    """``(width, height, bit_depth, colour_type, interlace)`` of PNG bytes, or ``None``."""
    if len(data) < 33 or not data.startswith(SIGNATURE) or data[12:16] != b"IHDR":
        return None
    w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return w, h, depth, colour, interlace


def _chunks(data: bytes):
    pos = len(SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length or len(data) < pos + 12 + length:
            raise ValueError("truncated PNG chunk")
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"PNG chunk {kind!r} fails its CRC check")
        yield kind, body
        if kind == b"IEND":
            return
        pos += 12 + length
    raise ValueError("truncated PNG: no IEND chunk")


def _unfilter(lines: np.ndarray, filters: np.ndarray, bpp: int) -> np.ndarray:
    """Undo the PNG scanline filters of ``lines`` ``(H, W * bpp)`` uint8.

    Sub, Average and Paeth depend on the reconstructed left pixel, so pixels are reconstructed
    along anti-diagonals (every pixel of one depends only on the two before it): ``H + W``
    vectorised steps instead of ``H * W`` scalar ones.
    """
    if not filters.any():
        return lines
    h = lines.shape[0]
    w = lines.shape[1] // bpp
    f = lines.reshape(h, w, bpp).astype(np.int16)
    out = np.zeros((h + 1, w + 1, bpp), np.int16)  # row 0 and column 0: the zero border
    for d in range(h + w - 1):
        y = np.arange(max(0, d - w + 1), min(d, h - 1) + 1)
        x = d - y
        a, b, c = out[y + 1, x], out[y, x + 1], out[y, x]  # left, up, up-left
        t = filters[y][:, None]
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        pred = np.select([t == 1, t == 2, t == 3, t == 4], [a, b, (a + b) // 2, paeth], 0)
        out[y + 1, x + 1] = (f[y, x] + pred) & 0xFF
    return out[1:, 1:].astype(np.uint8).reshape(h, w * bpp)


def decode_png(data: bytes) -> np.ndarray:
    """Samples of a non-interlaced 8- or 16-bit PNG without a palette: ``(H, W, C)`` uint8 or
    uint16 (C: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA).

    Raises:
        ValueError: not such a PNG, or a damaged one (bad CRC, truncated, wrong data length).
    """
    header = png_header(data)
    if header is None:
        raise ValueError("not a PNG file")
    w, h, depth, colour, interlace = header
    if depth not in (8, 16) or colour not in _CHANNELS or interlace != 0:
        raise ValueError(
            f"unsupported PNG: bit depth {depth}, colour type {colour}, interlace {interlace}"
        )
    idat = b"".join(body for kind, body in _chunks(data) if kind == b"IDAT")
    c = _CHANNELS[colour]
    bpp = c * depth // 8
    stride = 1 + w * bpp
    try:  # never inflate more than the header promises (a zip bomb stops here)
        raw = zlib.decompressobj().decompress(idat, h * stride + 1)
    except zlib.error as e:
        raise ValueError(f"damaged PNG image data: {e}") from e
    if len(raw) != h * stride:
        raise ValueError(f"PNG image data holds {len(raw)} bytes, expected {h * stride}")
    scan = np.frombuffer(raw, np.uint8).reshape(h, stride)
    filters = scan[:, 0]
    if filters.max(initial=0) > 4:
        raise ValueError(f"unknown PNG filter type {int(filters.max())}")
    lines = _unfilter(scan[:, 1:], filters, bpp)
    if depth == 16:
        return lines.view(">u2").reshape(h, w, c).astype(np.uint16)
    return lines.reshape(h, w, c).copy()
