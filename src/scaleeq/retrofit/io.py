"""Load retrofitted models: rebuild the network, the upsampler and the retrofit from a
file written by :meth:`ArbitraryScaleSR.save` (the format: :mod:`scaleeq.retrofit.format`).

Networks loaded with spandrel are rebuilt with ``spandrel.ModelLoader`` from the state dict
the file keeps (its ``source`` record), so no user code is needed.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .format import (
    META_KEY,
    SOURCE_PREFIX,
    check_meta,
    content_hash,
    key_location,
    meta_from_tensor,
    read_checkpoint,
)

if TYPE_CHECKING:
    from .model import ArbitraryScaleSR

__all__ = ["from_parts", "load"]


def _upsampler_classes() -> dict[str, type[nn.Module]]:
    from ..layers import NeuralKrigingUpsampler
    from ..layers.baselines import BicubicFeatureUpsampler, LIIFUpsampler

    return {c.__name__: c for c in (NeuralKrigingUpsampler, LIIFUpsampler, BicubicFeatureUpsampler)}


def _check_value(value: Any, annotation: str, default: Any) -> str | None:
    """Why ``value`` cannot be passed for a parameter annotated ``annotation`` (a string,
    ``from __future__ import annotations``) with ``default``; ``None`` if it can. Only the
    plain kinds a checkpoint stores are checked (numbers, bools, strings, sequences, None);
    the constructor checks values."""
    kinds = {k.strip() for k in str(annotation).split("|")} if annotation else set()
    if value is None:
        return None if "None" in kinds or default is None else "must not be null"
    if "bool" in kinds or isinstance(default, bool):
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if isinstance(value, bool):
        return f"must not be a bool, got {value!r}"
    if "int" in kinds or (type(default) is int and "float" not in kinds):
        return None if isinstance(value, int) else f"must be an int, got {value!r}"
    if "float" in kinds or isinstance(default, float):
        ok = isinstance(value, int | float) and math.isfinite(value)
        return None if ok else f"must be a finite number, got {value!r}"
    if "str" in kinds or isinstance(default, str):
        return None if isinstance(value, str) else f"must be a string, got {value!r}"
    if any(k.startswith(("tuple", "Sequence", "list")) for k in kinds) or isinstance(
        default, tuple | list
    ):
        return None if isinstance(value, list | tuple) else f"must be a list, got {value!r}"
    return None


def _check_arguments(
    path: Path,
    key: str,
    stored: object,
    fn: Any,
    defaulted: list[str],
    *,
    given: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Check a stored keyword-argument dict against ``fn``'s signature: every key a parameter,
    every parameter without a default present, every value of the parameter's kind.

    Parameters with a default may be missing (files written before the parameter existed):
    their names are appended to ``defaulted``, for the message if the weights then do not fit;
    ``given`` are the parameters the loader passes itself (not stored).

    Raises:
        ValueError: naming ``key`` and the bad entry.
    """
    if not isinstance(stored, dict):
        raise ValueError(f"{key_location(path, key)} must be a dict, got {type(stored).__name__}")
    params = {
        name: p
        for name, p in inspect.signature(fn).parameters.items()
        if name not in given and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }
    unknown = sorted(set(stored) - set(params))
    if unknown:
        raise ValueError(
            f"{key_location(path, f'{key}.{unknown[0]}')} is not an argument of "
            f"{getattr(fn, '__qualname__', fn)} (unknown keys: {unknown})"
        )
    missing = sorted(n for n, p in params.items() if p.default is p.empty and n not in stored)
    if missing:
        raise ValueError(f"{key_location(path, f'{key}.{missing[0]}')} is missing")
    defaulted.extend(f"{key}.{n}" for n in params if n not in stored)
    for name, value in stored.items():
        p = params[name]
        why = _check_value(value, p.annotation, None if p.default is p.empty else p.default)
        if why is not None:
            raise ValueError(f"{key_location(path, f'{key}.{name}')} {why}")
    return stored


def _rebuild_source(path: Path, source: dict, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """The original network, rebuilt by spandrel from the stored state dict."""
    keys = source.get("keys")
    if source.get("loader") != "spandrel" or not isinstance(keys, dict):
        raise ValueError(f"{key_location(path, 'source')} must be a spandrel record with 'keys'")
    missing = sorted(v for v in keys.values() if not isinstance(v, str) or v not in tensors)
    if missing:
        raise ValueError(
            f"{key_location(path, 'source.keys')} names tensors the file lacks: {missing[:4]}"
        )
    from .._torchvision import import_spandrel

    try:
        spandrel = import_spandrel(f"loading {path} (a retrofitted spandrel network)")
    except ImportError as e:
        raise ValueError(f"{e}, or pass model=<a new instance of that architecture>") from e
    state = {k: tensors[v] for k, v in keys.items()}
    try:
        desc = spandrel.ModelLoader().load_from_state_dict(state)
    except Exception as e:  # spandrel's own errors: unsupported or changed architecture
        raise ValueError(f"{path}: spandrel cannot rebuild the original network: {e}") from e
    return desc.model


def load(
    path: str | os.PathLike,
    *,
    model: nn.Module | None = None,
    map_location: str | torch.device = "cpu",
    allow_nonfinite: bool = False,
) -> ArbitraryScaleSR:
    """Load an :class:`~scaleeq.ArbitraryScaleSR` written by :meth:`ArbitraryScaleSR.save`.

    Models from ``scaleeq.models`` are rebuilt from the stored configuration; for other models
    pass a freshly built instance of the original architecture as ``model``.

    Args:
        path: the file.
        model: a fresh instance of the original architecture (models outside scaleeq).
        map_location: device to load onto.
        allow_nonfinite: accept weights holding NaN or infinity (refused by default).

    Raises:
        ValueError: the file is missing, truncated, damaged (its content hash does not match),
            not a scaleeq checkpoint, holds non-finite weights, or its weights do not fit the
            rebuilt model; the message says which.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {str(path)!r} is not a file")
    meta, tensors = read_checkpoint(path, map_location)
    asr = from_parts(
        meta, tensors, where=path, model=model, map_location=map_location,
        allow_nonfinite=allow_nonfinite,
    )  # fmt: skip
    if META_KEY in tensors:  # the copy for state-dict loaders must say the same as the header
        try:
            same = meta_from_tensor(tensors[META_KEY]) == json.loads(json.dumps(meta))
        except (UnicodeDecodeError, ValueError):
            same = False
        if not same:
            raise ValueError(
                f"{path} is damaged: its metadata tensor {META_KEY!r} does not match the "
                "metadata stored with the file"
            )
    return asr


def from_parts(
    meta: dict,
    tensors: dict[str, torch.Tensor],
    *,
    where: str | os.PathLike,
    model: nn.Module | None = None,
    map_location: str | torch.device = "cpu",
    allow_nonfinite: bool = False,
) -> ArbitraryScaleSR:
    """Rebuild a model from a checkpoint's metadata and tensors (what :func:`load` reads from
    a file; ``where`` names the source in messages). :mod:`scaleeq.spandrel` uses it for
    state dicts that spandrel read, whose metadata travels as :func:`meta_tensor`."""
    from .build import retrofit

    path = Path(where)
    tensors = dict(tensors)
    tensors.pop(META_KEY, None)
    check_meta(path, meta)
    expected = meta.get("sha256")
    if expected is not None and content_hash(tensors) != expected:
        raise ValueError(
            f"{path} is damaged: the content hash of its weights does not match the one stored "
            "when it was saved"
        )
    if not allow_nonfinite:
        bad = [
            k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()
        ]
        if bad:
            raise ValueError(
                f"{path} holds non-finite weights (NaN or inf) in {bad[:4]}; pass "
                "allow_nonfinite=True to load it anyway"
            )
    base = meta["base"]
    defaulted: list[str] = []  # stored keys that were missing and took their defaults
    if model is None and "source" in meta:
        model = _rebuild_source(path, meta["source"], tensors)
    tensors = {k: v for k, v in tensors.items() if not k.startswith(SOURCE_PREFIX)}
    if model is None:
        from .. import models as _models

        cls = (
            getattr(_models, str(base.get("class")), None)
            if str(base.get("module", "")).startswith("scaleeq.")
            else None
        )
        if cls is None or base.get("config") is None:
            raise ValueError(
                f"{path} holds a retrofitted {base.get('module')}.{base.get('class')}, "
                "which scaleeq "
                "cannot rebuild by itself: pass model=<a new instance of that architecture>"
            )
        config = _check_arguments(path, "base.config", base["config"], cls, defaulted)
        try:
            model = cls(**config)
        except (TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"{key_location(path, 'base.config')} is invalid: {e}") from e
    up_meta = meta["upsampler"]
    up_cls = _upsampler_classes().get(up_meta["class"])
    if up_cls is None:
        raise ValueError(
            f"{key_location(path, 'upsampler.class')}: unsupported upsampler {up_meta['class']!r} "
            f"(known: {sorted(_upsampler_classes())})"
        )
    up_config = _check_arguments(path, "upsampler.config", up_meta["config"], up_cls, defaulted)
    settings = _check_arguments(
        path, "settings", meta["settings"], retrofit, defaulted,
        given=("model", "upsampler", "layout"),
    )  # fmt: skip
    try:
        upsampler = up_cls(**up_config)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{key_location(path, 'upsampler.config')} is invalid: {e}") from e
    try:
        # the stored layout's adapter where it fits the network (files written before a more
        # specific adapter existed keep theirs), else detection, checked below
        layout = meta["layout"] if _fits(meta["layout"], model) else None
        asr = retrofit(model, upsampler=upsampler, layout=layout, **settings)
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        raise ValueError(f"{key_location(path, 'settings')} cannot rebuild the model: {e}") from e
    if asr.layout != meta["layout"]:
        raise ValueError(
            f"{key_location(path, 'layout')} is {meta['layout']!r}, but the model it rebuilds has "
            f"the layout {asr.layout!r}"
        )
    try:
        asr.load_state_dict(tensors)
    except RuntimeError as e:
        hint = (
            f" (these metadata keys were missing and took their defaults: {defaulted})"
            if defaulted
            else ""
        )
        raise ValueError(
            f"{path}: the stored weights do not fit the rebuilt model{hint}: {e}"
        ) from e
    return asr.to(map_location)


def _fits(layout: str, model: nn.Module) -> bool:
    from .adapters import adapter_class

    try:
        cls = adapter_class(layout)
    except ValueError:
        return False
    return cls.name != "custom" and cls.fits(model)
