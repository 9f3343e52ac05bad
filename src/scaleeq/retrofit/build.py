"""``retrofit(model)``: turn a fixed-scale SR network into an arbitrary-scale one."""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from .._checks import check_int, check_positive_float
from ..contracts import check_upsampler
from ..layers.afe import AFEBlock, AFETokenBlock
from ..layers.kriging import NeuralKrigingUpsampler
from ..sampling import SAMPLE_MODES
from .adapters import adapter_class, detect
from .adapters.base import check_cut
from .model import ArbitraryScaleSR

#: The ``skip`` options of :func:`retrofit`.
SKIPS = ("auto", "none", *SAMPLE_MODES)

__all__ = ["retrofit"]


def _shallow_clone(model: nn.Module) -> nn.Module:
    """A new module object sharing ``model``'s submodules, parameters and buffers, with its own
    registries, so replacing or removing a part of the clone leaves ``model`` untouched."""
    clone = copy.copy(model)
    clone._modules = dict(model._modules)
    clone._parameters = dict(model._parameters)
    clone._buffers = dict(model._buffers)
    return clone


def _unwrap(model: Any) -> nn.Module:
    """``model`` itself, or the network inside a spandrel model descriptor."""
    if isinstance(model, nn.Module):
        return model
    from .._torchvision import import_spandrel

    try:
        spandrel = import_spandrel("a model descriptor")
    except ImportError:
        spandrel = None
    if spandrel is not None and isinstance(model, spandrel.ImageModelDescriptor):
        if not isinstance(model.model, nn.Module):
            raise TypeError(f"the descriptor's model is not an nn.Module: {type(model.model)}")
        return model.model
    raise TypeError(
        f"model must be an nn.Module or a spandrel model descriptor, got {type(model).__name__}"
    )


def retrofit(
    model: nn.Module,
    *,
    afe: str = "per_group",
    afe_every: int | None = None,
    upsampler: nn.Module | None = None,
    body: str | None = None,
    tail: str | None = None,
    pixel_range: float | None = None,
    skip: str = "auto",
    layout: str | None = None,
) -> ArbitraryScaleSR:
    """Turn a fixed-scale SR network into an arbitrary-scale one, keeping its weights.

    The result shares the model's head and body modules (the same parameter objects: nothing
    is copied and the input model is not mutated), inserts :class:`~scaleeq.AFEBlock` layers in
    identity-at-init form at the start of each residual group, drops the fixed-scale tail and
    renders with a :class:`~scaleeq.NeuralKrigingUpsampler` (or an upsampler you pass) from the
    body's features. Recognised layouts: :mod:`scaleeq.retrofit.layouts`.

    Args:
        model: the network, or a spandrel ``ModelDescriptor`` (its ``.model``); every
            super-resolution architecture spandrel loads is recognised by structure
            (:mod:`scaleeq.retrofit.adapters`). Not modified.
        afe: ``"per_group"`` (an AFE block at the start of each residual group, or every
            ``afe_every`` blocks for EDSR-style bodies) or ``"none"``.
        afe_every: blocks per AFE block for bodies of plain residual blocks (default: a quarter
            of the body, so 4 AFE blocks); residual groups (RCAN, Swin) get one each.
        upsampler: an upsampler satisfying :class:`scaleeq.contracts.Upsampler`; default
            ``NeuralKrigingUpsampler(C)`` on the body's ``C`` feature channels.
        body, tail: for unrecognised models, the submodule mapping the image to features and
            the fixed-scale tail to drop.
        pixel_range: input range of EDSR-PyTorch models (default: inferred from ``sub_mean``).
        skip: ``"auto"`` (the default): the architecture's own global residual after its
            tail (e.g. Compact's nearest upsampling of the input), carried to every scale, or
            ``"none"`` where it has none (the upsampler's last layer keeps its initialisation,
            as the original tail's did). ``"none"``: the upsampler renders the image, as the
            original tail did. ``"bicubic"`` / ``"bilinear"`` / ``"nearest"``: it renders a
            residual over that interpolation of the input (its last layer starts at zero, so
            the model starts as that interpolation; bicubic trains much faster from scratch).
            The features then carry the input as extra channels. Saved files store the
            resolved choice.
        layout: use this adapter (by its stored name) instead of detecting one (``load``
            passes the file's layout).

    Returns:
        :class:`ArbitraryScaleSR`; at initialisation its features equal the model's pre-tail
        features at every scale.

    Raises:
        TypeError / ValueError: not a module, an unrecognised layout, a missing named part, an
            upsampler that does not satisfy the contract, or bad options; messages name the
            argument and what was found.
    """
    if skip not in SKIPS:
        raise ValueError(f"skip must be one of {SKIPS}, got {skip!r}")
    source = _spandrel_source(model)
    model = _unwrap(model)
    if afe not in ("per_group", "none"):
        raise ValueError(f"afe must be 'per_group' or 'none', got {afe!r}")
    if afe_every is not None:
        check_int(afe_every, "afe_every")
    if pixel_range is not None:
        check_positive_float(pixel_range, "pixel_range")
    if body is not None or tail is not None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        layout = "custom"
        for name, value in (("body", body), ("tail", tail)):
            if not isinstance(value, str) or not isinstance(getattr(model, value, None), nn.Module):
                raise ValueError(
                    f"{name}={value!r} must name a submodule of the model; it has "
                    f"{[n for n, _ in model.named_children()]}"
                )
    elif layout is None:
        layout = detect(model).name
    adapter = adapter_class(layout)(body=body)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    chosen = skip != "auto"  # an interpolation skip the caller asked for starts the model there
    if skip == "auto":
        skip = adapter.residual or "none"
    settings: dict[str, Any] = {
        "skip": skip,
        "afe": afe,
        "afe_every": afe_every,
        "body": body,
        "tail": tail,
        "pixel_range": pixel_range,
    }
    backbone = _shallow_clone(model)
    feat_channels = adapter.build(model, backbone, settings)
    check_cut(adapter, model, backbone)
    if upsampler is None:
        if feat_channels is None:
            raise ValueError("cannot infer the feature channels of the body; pass upsampler=...")
        upsampler = NeuralKrigingUpsampler(feat_channels)
    check_upsampler(upsampler)
    if skip != "none" and chosen:
        tail_layer = getattr(upsampler, "tail", None)
        if isinstance(tail_layer, (nn.Conv2d, nn.Linear)):  # start as bicubic
            nn.init.zeros_(tail_layer.weight)
            if tail_layer.bias is not None:
                nn.init.zeros_(tail_layer.bias)
    param = next(model.parameters(), None)
    if param is not None:  # new parts follow the model's device and dtype; shared parts stay put
        upsampler = upsampler.to(device=param.device, dtype=param.dtype)
        for module in backbone.modules():
            if isinstance(module, AFEBlock | AFETokenBlock | NeuralKrigingUpsampler):
                module.to(device=param.device, dtype=param.dtype)
    config = getattr(model, "config", None)
    base = {
        "class": type(model).__name__,
        "module": type(model).__module__,
        "config": config if isinstance(config, dict) else None,
    }
    return ArbitraryScaleSR(
        backbone,
        upsampler,
        adapter=adapter,
        settings=settings,
        base=base,
        skip=skip,
        source=model if source else None,
    )


def _spandrel_source(model: Any) -> bool:
    """Whether the network comes from spandrel (then ``save`` stores what ``load`` needs to
    rebuild it through spandrel's own loader)."""
    net = model.model if not isinstance(model, nn.Module) and hasattr(model, "model") else model
    return type(net).__module__.startswith("spandrel.")
