"""The IIIF Image API 3.0 request grammar: parse and resolve region, size, rotation, quality,
format.

``{identifier}/{region}/{size}/{rotation}/{quality}.{format}`` (https://iiif.io/api/image/3.0/).
Parsing needs no third-party package; every failure raises :class:`IIIFError` with the HTTP
status the spec asks for (400 malformed or unsatisfiable, 501 well-formed but not implemented)
and a message that names the parameter.

Resolution happens against an image of ``(width, height)`` pixels and the server's limits
(``maxWidth``, ``maxHeight``, ``maxArea``): :func:`resolve_region` gives the region in image
pixels, :func:`resolve_size` the returned size, following the spec's rules on ``^``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = [
    "FORMATS",
    "QUALITIES",
    "IIIFError",
    "ImageRequest",
    "Limits",
    "Region",
    "Size",
    "canonical_path",
    "parse_format",
    "parse_quality",
    "parse_region",
    "parse_request",
    "parse_rotation",
    "parse_size",
    "resolve_region",
    "resolve_size",
]

#: Formats this server writes (``jpg`` and ``png`` are level 2; ``webp`` is an extra format).
FORMATS = ("jpg", "png", "webp")
#: Formats the spec names that this server does not write (answered 501).
_OTHER_FORMATS = ("tif", "gif", "jp2", "pdf")
#: Qualities (all required at level 2).
QUALITIES = ("default", "color", "gray", "bitonal")

_INT = r"(?:0|[1-9][0-9]*)"
_NUM = r"(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)"
_RE_PX = re.compile(rf"^({_INT}),({_INT}),({_INT}),({_INT})$")
_RE_PCT = re.compile(rf"^pct:({_NUM}),({_NUM}),({_NUM}),({_NUM})$")
_RE_SIZE_W = re.compile(rf"^({_INT}),$")
_RE_SIZE_H = re.compile(rf"^,({_INT})$")
_RE_SIZE_WH = re.compile(rf"^(!)?({_INT}),({_INT})$")
_RE_SIZE_PCT = re.compile(rf"^pct:({_NUM})$")
_RE_ROT = re.compile(rf"^(!)?({_NUM})$")


class IIIFError(Exception):
    """A request the server refuses: ``status`` is the HTTP status, ``str(e)`` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """The server's output limits, advertised in ``info.json`` (``None``: unbounded)."""

    max_width: int | None = None
    max_height: int | None = None
    max_area: int | None = None


@dataclass(frozen=True)
class Region:
    """A parsed region: ``kind`` is ``"full"``, ``"square"``, ``"px"`` or ``"pct"``."""

    kind: str
    values: tuple[float, float, float, float] = (0, 0, 0, 0)


@dataclass(frozen=True)
class Size:
    """A parsed size: ``kind`` is ``"max"``, ``"w"``, ``"h"``, ``"wh"``, ``"confined"`` or
    ``"pct"``; ``upscale`` is the ``^`` prefix."""

    kind: str
    upscale: bool = False
    width: int | None = None
    height: int | None = None
    pct: float | None = None


@dataclass(frozen=True)
class ImageRequest:
    """The four parameters after the identifier, parsed."""

    region: Region
    size: Size
    rotation: int
    mirror: bool
    quality: str
    format: str


def _bad(name: str, text: str, expected: str) -> IIIFError:
    return IIIFError(400, f"{name} must be {expected}, got {text!r}")


def parse_region(text: str) -> Region:
    """``full``, ``square``, ``x,y,w,h`` (integers) or ``pct:x,y,w,h`` (numbers).

    Raises:
        IIIFError: 400 for anything else, or a zero width or height.
    """
    if text in ("full", "square"):
        return Region(text)
    m = _RE_PX.match(text)
    kind = "px"
    if m is None:
        m = _RE_PCT.match(text)
        kind = "pct"
    if m is None:
        raise _bad("region", text, "full, square, x,y,w,h or pct:x,y,w,h")
    values = tuple(float(v) for v in m.groups())
    if values[2] <= 0 or values[3] <= 0:
        raise IIIFError(400, f"region {text!r} has a zero width or height")
    if kind == "pct" and (values[0] >= 100 or values[1] >= 100):
        raise IIIFError(400, f"region {text!r} starts outside the image (at or beyond 100%)")
    return Region(kind, values)  # type: ignore[arg-type]


def parse_size(text: str) -> Size:
    """``max``, ``w,``, ``,h``, ``pct:n``, ``w,h``, ``!w,h``, each optionally prefixed ``^``.

    Raises:
        IIIFError: 400 for anything else or a zero size.
    """
    up = text.startswith("^")
    body = text[1:] if up else text
    if body == "max":
        return Size("max", up)
    if m := _RE_SIZE_W.match(body):
        size = Size("w", up, width=int(m[1]))
    elif m := _RE_SIZE_H.match(body):
        size = Size("h", up, height=int(m[1]))
    elif m := _RE_SIZE_WH.match(body):
        size = Size("confined" if m[1] else "wh", up, width=int(m[2]), height=int(m[3]))
    elif m := _RE_SIZE_PCT.match(body):
        size = Size("pct", up, pct=float(m[1]))
        if size.pct == 0:
            raise IIIFError(400, f"size {text!r} is zero percent")
        if not up and size.pct > 100:
            raise IIIFError(400, f"size {text!r} is above 100% without the ^ (upscaling) prefix")
        return size
    else:
        raise _bad("size", text, "max, w,, ,h, pct:n, w,h or !w,h (optionally prefixed ^)")
    if size.width == 0 or size.height == 0:
        raise IIIFError(400, f"size {text!r} has a zero width or height")
    return size


def parse_rotation(text: str) -> tuple[int, bool]:
    """``n`` or ``!n`` (mirrored) -> ``(degrees, mirror)``; 0, 90, 180, 270 (and 360 as 0).

    Raises:
        IIIFError: 400 if malformed or outside [0, 360]; 501 for other angles (arbitrary
            rotation is not implemented).
    """
    m = _RE_ROT.match(text)
    if m is None:
        raise _bad("rotation", text, "a number of degrees in [0, 360], optionally prefixed !")
    deg = float(m[2])
    if deg > 360:
        raise IIIFError(400, f"rotation {text!r} is outside [0, 360]")
    if deg not in (0, 90, 180, 270, 360):
        raise IIIFError(501, f"rotation {text!r}: only multiples of 90 degrees are implemented")
    return int(deg) % 360, m[1] == "!"


def parse_quality(text: str) -> str:
    """One of :data:`QUALITIES`, else 400."""
    if text not in QUALITIES:
        raise _bad("quality", text, f"one of {', '.join(QUALITIES)}")
    return text


def parse_format(text: str) -> str:
    """One of :data:`FORMATS`; 501 for the spec's other formats, 400 for anything else."""
    if text in FORMATS:
        return text
    if text in _OTHER_FORMATS:
        raise IIIFError(
            501, f"format {text!r} is not implemented (use one of {', '.join(FORMATS)})"
        )
    raise _bad("format", text, f"one of {', '.join(FORMATS)}")


def parse_request(region: str, size: str, rotation: str, quality_format: str) -> ImageRequest:
    """Parse the four path segments after the identifier (the last is ``quality.format``)."""
    reg = parse_region(region)
    sz = parse_size(size)
    rot, mirror = parse_rotation(rotation)
    quality, dot, fmt = quality_format.rpartition(".")
    if not dot:
        raise _bad("quality.format", quality_format, "like default.jpg")
    return ImageRequest(reg, sz, rot, mirror, parse_quality(quality), parse_format(fmt))


def resolve_region(region: Region, width: int, height: int) -> tuple[int, int, int, int]:
    """The region ``(x, y, w, h)`` in pixels of a ``width x height`` image, cropped to it.

    ``square`` is the centred square of the shorter side. ``pct:`` edges are rounded to the
    nearest pixel (halves up), so adjacent percentage regions share their edges.

    Raises:
        IIIFError: 400 if the region lies entirely outside the image or rounds to nothing.
    """
    if region.kind == "full":
        return 0, 0, width, height
    if region.kind == "square":
        side = min(width, height)
        return (width - side) // 2, (height - side) // 2, side, side
    x, y, w, h = region.values
    if region.kind == "pct":
        x0, y0 = math.floor(x * width / 100 + 0.5), math.floor(y * height / 100 + 0.5)
        x1 = math.floor((x + w) * width / 100 + 0.5)
        y1 = math.floor((y + h) * height / 100 + 0.5)
    else:
        x0, y0, x1, y1 = int(x), int(y), int(x + w), int(y + h)
    x1, y1 = min(x1, width), min(y1, height)
    if x0 >= width or y0 >= height or x1 <= x0 or y1 <= y0:
        raise IIIFError(
            400, f"region {region.values} is outside the image of {width} x {height} pixels"
        )
    return x0, y0, x1 - x0, y1 - y0


def _round(v: float) -> int:
    return max(1, math.floor(v + 0.5))


def _max_size(rw: int, rh: int, limits: Limits, upscale: bool) -> tuple[int, int]:
    """The largest size of the region's aspect ratio within the limits (and within the region
    itself unless ``upscale``)."""
    f = math.inf if upscale else 1.0
    if limits.max_width is not None:
        f = min(f, limits.max_width / rw)
    if limits.max_height is not None:
        f = min(f, limits.max_height / rh)
    if limits.max_area is not None:
        f = min(f, math.sqrt(limits.max_area / (rw * rh)))
    if math.isinf(f):
        raise IIIFError(400, "size ^max needs maxWidth, maxHeight or maxArea; the server has none")
    if f == 1.0:
        return rw, rh
    w, h = max(1, math.floor(rw * f)), max(1, math.floor(rh * f))
    return w, h


def resolve_size(size: Size, rw: int, rh: int, limits: Limits) -> tuple[int, int]:
    """The returned size ``(w, h)`` for a region of ``rw x rh`` pixels.

    Without ``^`` the result may not exceed the region (400); with ``^`` it may. Any result
    above ``maxWidth`` / ``maxHeight`` / ``maxArea`` is refused (400), except ``max`` and
    ``^max``, which are defined as the largest size the limits allow.

    Raises:
        IIIFError: 400 as above, or a size that rounds to nothing.
    """
    if size.kind == "max":
        return _max_size(rw, rh, limits, size.upscale)
    if size.kind == "w":
        assert size.width is not None
        w, h = size.width, _round(rh * size.width / rw)
    elif size.kind == "h":
        assert size.height is not None
        w, h = _round(rw * size.height / rh), size.height
    elif size.kind == "pct":
        assert size.pct is not None
        w, h = _round(rw * size.pct / 100), _round(rh * size.pct / 100)
    elif size.kind == "wh":
        assert size.width is not None and size.height is not None
        w, h = size.width, size.height
    else:  # confined: the largest size of the region's aspect ratio inside (width, height)
        assert size.width is not None and size.height is not None
        f = min(size.width / rw, size.height / rh)
        w, h = min(size.width, _round(rw * f)), min(size.height, _round(rh * f))
    if not size.upscale and (w > rw or h > rh):
        raise IIIFError(
            400,
            f"size {w} x {h} is larger than the region ({rw} x {rh}); prefix the size with ^ "
            "to ask for upscaling",
        )
    for name, value, limit in (
        ("maxWidth", w, limits.max_width),
        ("maxHeight", h, limits.max_height),
        ("maxArea", w * h, limits.max_area),
    ):
        if limit is not None and value > limit:
            raise IIIFError(
                400, f"size {w} x {h} exceeds the server's {name} of {limit} (see info.json)"
            )
    return w, h


def canonical_path(
    identifier: str,
    region: tuple[int, int, int, int],
    size: tuple[int, int],
    image_size: tuple[int, int],
    req: ImageRequest,
    limits: Limits,
) -> str:
    """The canonical URI path of a resolved request (spec section 4.7): region ``full`` or
    ``x,y,w,h``; size ``max`` when it is the max size, else ``w,h`` (``^w,h`` when upscaled);
    rotation ``n`` or ``!n``; then ``quality.format``."""
    x, y, w, h = region
    reg = "full" if (x, y, w, h) == (0, 0, *image_size) else f"{x},{y},{w},{h}"
    upscaled = size[0] > w or size[1] > h
    if not upscaled and size == _max_size(w, h, limits, False):
        sz = "max"
    else:
        sz = f"{'^' if upscaled else ''}{size[0]},{size[1]}"
    rot = f"{'!' if req.mirror else ''}{req.rotation}"
    return f"{identifier}/{reg}/{sz}/{rot}/{req.quality}.{req.format}"
