"""The ASGI application (Starlette) of ``scaleeq serve``: routes, headers, the bounded worker pool.

Routes (``{id}`` is an image's file name, with or without its extension):

- ``GET /`` the viewer page; ``GET /_scaleeq/images`` the identifiers; ``GET /_scaleeq/stats``
  counters and cache sizes;
- ``GET /{id}`` 303 to ``/{id}/info.json``; ``GET /{id}/info.json``;
- ``GET /{id}/{region}/{size}/{rotation}/{quality}.{format}``;
- ``GET /{id}/manifest.json`` a IIIF Presentation API 3.0 manifest of the image (for Mirador,
  Universal Viewer); ``GET /collection.json`` the collection of all of them
  (:mod:`scaleeq.serve.presentation`).

Cached responses are answered on the event loop; everything else (decoding, features, renders,
encoding) runs in a pool of ``workers`` threads with at most ``queue`` requests waiting; a
request beyond that gets 503 with ``Retry-After`` at once instead of a growing queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any

import torch

from . import presentation
from .grammar import IIIFError, parse_request
from .service import ImageService, ServiceConfig

__all__ = ["PROFILE_URI", "WorkerPool", "create_app"]

log = logging.getLogger("scaleeq.serve")

PROFILE_URI = "http://iiif.io/api/image/3/level2.json"
_CONTEXT = "http://iiif.io/api/image/3/context.json"
_LD = "application/ld+json"
_CORS = {"Access-Control-Allow-Origin": "*"}


class Busy(Exception):
    """The worker pool and its queue are full."""


class WorkerPool:
    """Runs blocking work in ``workers`` threads, with at most ``queue`` calls waiting.

    ``run`` raises :class:`Busy` at once when ``workers + queue`` calls are in flight.
    """

    def __init__(self, workers: int = 1, queue: int = 8) -> None:
        for name, v, lo in (("workers", workers, 1), ("queue", queue, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        self.workers, self.queue = workers, queue
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="scaleeq-serve")
        self.in_flight = 0
        self.rejected = 0

    async def run(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` in a worker thread; :class:`Busy` if the pool is full."""
        if self.in_flight >= self.workers + self.queue:
            self.rejected += 1
            raise Busy
        self.in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        finally:
            self.in_flight -= 1


def _viewer_html() -> bytes:
    return resources.files("scaleeq.serve").joinpath("static/viewer.html").read_bytes()


def create_app(
    path: str | os.PathLike,
    model: torch.nn.Module | None = None,
    *,
    config: ServiceConfig | None = None,
    workers: int = 1,
    queue: int = 8,
    base_url: str | None = None,
) -> Any:
    """A Starlette ASGI app serving the images at ``path`` over IIIF Image API 3.0 (level 2).

    Args:
        path: an image file or a folder of images (not recursive).
        model: an SR model (``features`` + ``render``); default: :func:`scaleeq.pretrained`.
        config: caches, limits and rendering settings (:class:`ServiceConfig`).
        workers: threads doing model and image work.
        queue: requests that may wait for a worker; more get 503.
        base_url: the public URL the ``id`` of info.json starts with (default: the request's
            own scheme, host and root path).

    Returns:
        the app; ``app.state.service`` is the :class:`ImageService` (counters, caches),
        ``app.state.pool`` the :class:`WorkerPool`.

    Raises:
        ImportError: the ``serve`` extra is missing (``pip install 'scaleeq[serve]'``).
        ValueError: bad ``path``, ``workers``, ``queue`` or settings.
    """
    try:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import RedirectResponse, Response
        from starlette.routing import Route
    except ImportError as e:
        raise ImportError("scaleeq serve needs its extra: pip install 'scaleeq[serve]'") from e
    if model is None:
        from ..pretrained import pretrained

        model = pretrained()
    service = ImageService(path, model, config)
    pool = WorkerPool(workers, queue)
    viewer = _viewer_html()

    def text(status: int, message: str, **headers: str) -> Response:
        return Response(
            message + "\n", status, headers={**_CORS, **headers}, media_type="text/plain"
        )

    def json_ld(
        request: Request, doc: Any, context: str, default_ld: bool, **headers: str
    ) -> Response:
        """A JSON-LD document: ``application/ld+json`` with the context as ``profile`` when the
        client's ``Accept`` asks for it (or, with ``default_ld``, unless it asks only for
        ``application/json``), else ``application/json``."""
        accept = request.headers.get("accept", "")
        ld = _LD in accept or (default_ld and "application/json" not in accept)
        media = f'{_LD};profile="{context}"' if ld else "application/json"
        return Response(json.dumps(doc, indent=1), headers={**_CORS, **headers}, media_type=media)

    def base(request: Request) -> str:
        if base_url is not None:
            return base_url.rstrip("/")
        root = request.scope.get("root_path", "")
        return f"{request.url.scheme}://{request.url.netloc}{root}"

    async def handle(request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(
                status_code=204,
                headers={
                    **_CORS,
                    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
                    "Access-Control-Allow-Headers": "*",
                },
            )
        # the decoded path (request.url.path re-escapes ?, # and \ into %3F, %23, %5C)
        path = request.scope["path"][len(request.scope.get("root_path", "")) :]
        parts = path.strip("/").split("/")
        parts = [p for p in parts if p] or [""]
        try:
            return await route(request, parts)
        except IIIFError as e:
            return text(e.status, f"{e.status}: {e}")
        except Busy:
            return text(503, "503: the server is busy; retry shortly", **{"Retry-After": "1"})
        except ValueError as e:  # the render size guard and other checks below the grammar
            return text(400, f"400: {e}")
        except Exception:  # nothing a client sends may take the server down
            log.exception("request %s failed", request.url.path)
            return text(500, "500: internal error (logged by the server)")

    async def route(request: Request, parts: list[str]) -> Response:
        if parts == [""]:
            return Response(viewer, headers=_CORS, media_type="text/html; charset=utf-8")
        if parts == ["collection.json"]:
            doc = presentation.collection(service, base(request))
            return json_ld(request, doc, presentation.CONTEXT, True)
        if parts[0] == "_scaleeq" and len(parts) == 2:
            if parts[1] == "stats":
                body: Any = {
                    **service.stats(),
                    "pool": {
                        "workers": pool.workers,
                        "queue": pool.queue,
                        "in_flight": pool.in_flight,
                        "rejected": pool.rejected,
                    },
                }
            elif parts[1] == "images":
                body = []
                for name in service.identifiers():
                    img, _ = service.image(name)
                    body.append({"id": name, "width": img.width, "height": img.height})
                body = {"images": body, "virtual_factors": list(service.config.virtual_factors)}
            else:
                raise IIIFError(404, f"no such page {request.url.path!r}")
            return Response(json.dumps(body), headers=_CORS, media_type="application/json")
        identifier = parts[0]
        if len(parts) == 1:
            service.image(identifier)  # 404 if unknown
            location = f"{service.base_uri(identifier, base(request))}/info.json"
            return RedirectResponse(location, 303, headers=_CORS)
        if len(parts) == 2 and parts[1] == "info.json":
            doc = service.info(identifier, base(request))
            link = f'<{PROFILE_URI}>;rel="profile"'
            return json_ld(request, doc, _CONTEXT, False, Link=link)
        if len(parts) == 2 and parts[1] == "manifest.json":
            # the Presentation API recommends its JSON-LD media type by default
            doc = presentation.manifest(service, identifier, base(request))
            return json_ld(request, doc, presentation.CONTEXT, True)
        service.image(identifier)  # 404 before 400: an unknown image is unknown
        if len(parts) != 5:
            raise IIIFError(
                400,
                "a IIIF image request is /{identifier}/{region}/{size}/{rotation}/"
                f"{{quality}}.{{format}}; got {len(parts) - 1} parameters",
            )
        req = parse_request(*parts[1:])
        canon = service.resolve(identifier, req)[4]
        hit = service.cached_response(canon)
        if hit is None:
            body_bytes, media, canon = await pool.run(service.respond, identifier, req)
        else:
            body_bytes, media = hit
        # canon is "{identifier}/{parameters}": the identifier percent-encoded as in info.json
        canonical = service.base_uri(identifier, base(request)) + canon[len(identifier) :]
        headers = {
            **_CORS,
            "Link": f'<{PROFILE_URI}>;rel="profile", <{canonical}>;rel="canonical"',
            "Cache-Control": "public, max-age=86400",
        }
        return Response(body_bytes, headers=headers, media_type=media)

    app = Starlette(routes=[Route("/{path:path}", handle, methods=["GET", "HEAD", "OPTIONS"])])
    app.state.service = service
    app.state.pool = pool
    return app
