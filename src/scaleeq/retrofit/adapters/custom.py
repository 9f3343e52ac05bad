"""Explicit parts: ``retrofit(model, body=..., tail=...)`` for any other network.

``body`` names a submodule mapping the image to features, ``tail`` the submodule to drop; no
AFE blocks are inserted. If the body's ``forward`` takes a ``scale`` keyword it gets the scale;
otherwise it runs inside :func:`~scaleeq.scale_context` (for the user's own drop-in layers).
"""

from __future__ import annotations

import inspect

import torch

from ...context import scale_context
from .base import Adapter

__all__ = ["CustomAdapter"]


class CustomAdapter(Adapter):
    name = "custom"
    family = "explicit parts"

    @classmethod
    def matches(cls, model):
        return False  # chosen only by name, with body= and tail=

    def build(self, model, backbone, settings):
        backbone._modules.pop(settings["tail"], None)
        return None

    def features(self, backbone, lr, scale):
        scale = scale.value  # the user's body gets the parsed (N, 2) tensor
        body = getattr(backbone, self.body)
        forward = getattr(body, "forward", body)
        try:
            takes_scale = "scale" in inspect.signature(forward).parameters
        except (TypeError, ValueError):
            takes_scale = False
        try:
            if takes_scale:
                return body(lr, scale=scale)
            with scale_context(scale):  # the user's own drop-in layers read it
                return body(lr)
        except RuntimeError as e:  # e.g. a body that does not read images: say which part
            if is_out_of_memory(e):  # not the body's fault: let the caller see it as it is
                raise
            raise ValueError(
                f"the body {self.body!r} named in retrofit(body=...) failed on lr of shape "
                f"{tuple(lr.shape)} (it must map the image to features): {e}"
            ) from e


def is_out_of_memory(e: RuntimeError) -> bool:
    """An allocation failure (CUDA's ``OutOfMemoryError`` or the CPU allocator's message)."""
    return isinstance(e, torch.cuda.OutOfMemoryError) or "can't allocate memory" in str(e)


ADAPTERS = (CustomAdapter,)
