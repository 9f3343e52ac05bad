"""IIIF Presentation API 3.0 documents for ``scaleeq serve``: a manifest per image, a collection.

Viewers such as Mirador and Universal Viewer open a *manifest*, not a bare ``info.json``. Each
served image (virtual ``@kx`` images included) gets ``/{id}/manifest.json``: one Canvas of the
image's size, painted by one Image annotation whose ``service`` is the server's Image API
service of that identifier (the same ``id`` as its ``info.json``). ``/collection.json`` lists
the manifests of every served image and its virtual images, for a viewer's catalogue.

Only the service's listing and image sizes are read here (no pixels, no web stack).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .grammar import parse_size, resolve_size

if TYPE_CHECKING:
    from .service import ImageService

__all__ = ["CONTEXT", "THUMBNAIL", "collection", "manifest"]

#: The JSON-LD context of Presentation API 3.0 (also the ``profile`` of its media type).
CONTEXT = "http://iiif.io/api/presentation/3/context.json"
#: The largest side of the thumbnail a manifest names.
THUMBNAIL = 256


def _label(text: str) -> dict[str, list[str]]:
    """A language map without a language (the identifier is not in any one language)."""
    return {"none": [text]}


def _image(service_id: str, width: int, height: int, size: str) -> dict[str, Any]:
    """An Image content resource: ``full/{size}/0/default.jpg`` of a service, with the
    service itself so viewers can ask for tiles instead of the one static image."""
    return {
        "id": f"{service_id}/full/{size}/0/default.jpg",
        "type": "Image",
        "format": "image/jpeg",
        "width": width,
        "height": height,
        "service": [{"id": service_id, "type": "ImageService3", "profile": "level2"}],
    }


def manifest(service: ImageService, identifier: str, base_url: str) -> dict[str, Any]:
    """The Presentation API 3.0 manifest of one image, served under ``base_url``.

    Its ``id`` is ``{base URI}/manifest.json``, where the base URI is the ``id`` of the image's
    ``info.json``; the Canvas has the image's size (``k`` times the source's for a ``@kx``
    virtual image). The painting annotation's body is ``full/max`` (the size the server's
    limits allow) and a thumbnail at most :data:`THUMBNAIL` pixels a side, both with the
    image service.

    Raises:
        IIIFError: 404 for an unknown identifier (the same rules as ``info.json``).
    """
    img, k = service.image(identifier)
    width, height = img.width * k, img.height * k
    service_id = service.base_uri(identifier, base_url)
    limits = service.config.limits
    body_size = resolve_size(parse_size("max"), width, height, limits)
    if max(width, height) <= THUMBNAIL:
        thumb_size = body_size
    else:
        thumb_size = resolve_size(parse_size(f"!{THUMBNAIL},{THUMBNAIL}"), width, height, limits)
    thumb = "max" if thumb_size == body_size else f"{thumb_size[0]},{thumb_size[1]}"
    canvas_id = f"{service_id}/canvas/1"
    name = img.name if k == 1 else f"{img.name}@{k}x"
    return {
        "@context": CONTEXT,
        "id": f"{service_id}/manifest.json",
        "type": "Manifest",
        "label": _label(name),
        "thumbnail": [_image(service_id, *thumb_size, thumb)],
        "items": [
            {
                "id": canvas_id,
                "type": "Canvas",
                "label": _label(name),
                "height": height,
                "width": width,
                "items": [
                    {
                        "id": f"{canvas_id}/page/1",
                        "type": "AnnotationPage",
                        "items": [
                            {
                                "id": f"{canvas_id}/annotation/1",
                                "type": "Annotation",
                                "motivation": "painting",
                                "body": _image(service_id, *body_size, "max"),
                                "target": canvas_id,
                            }
                        ],
                    }
                ],
            }
        ],
    }


def collection(service: ImageService, base_url: str) -> dict[str, Any]:
    """The Presentation API 3.0 collection of every served image's manifest: each image, then
    its virtual ``@kx`` images (``virtual_factors``), in identifier order."""
    base = base_url.rstrip("/")
    items = []
    for name in service.identifiers():
        for k in (1, *service.config.virtual_factors):
            identifier = name if k == 1 else f"{name}@{k}x"
            items.append(
                {
                    "id": f"{service.base_uri(identifier, base)}/manifest.json",
                    "type": "Manifest",
                    "label": _label(identifier),
                }
            )
    return {
        "@context": CONTEXT,
        "id": f"{base}/collection.json",
        "type": "Collection",
        "label": _label("scaleeq serve"),
        "items": items,
    }
