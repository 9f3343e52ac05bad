"""``scaleeq serve``: a IIIF Image API 3.0 server (level 2) that super-resolves any region at any
size.

Upscaled requests (``^`` sizes, and the ``name@kx`` virtual images) are rendered by the model
as exact windows of the whole super-resolved image, so tiles of any zoom level join without
seams; downscaled ones are resampled with Pillow. See docs/serve.md.

The grammar (:mod:`scaleeq.serve.grammar`) and the service (:mod:`scaleeq.serve.service`)
need only torch, numpy and Pillow; :func:`create_app` needs the ``serve`` extra
(``pip install 'scaleeq[serve]'``: Starlette, uvicorn, Pillow), imported when it is called.
"""

from __future__ import annotations

from typing import Any

from .grammar import IIIFError, Limits, parse_request
from .service import ImageService, ServiceConfig, map_axis

__all__ = [
    "IIIFError",
    "ImageService",
    "Limits",
    "ServiceConfig",
    "create_app",
    "map_axis",
    "parse_request",
]


def create_app(*args: Any, **kwargs: Any) -> Any:
    """The ASGI app; see :func:`scaleeq.serve.app.create_app` (imports Starlette lazily)."""
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)
