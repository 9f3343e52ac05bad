"""Save and load retrofitted models (weights + the configuration to rebuild them).

File format (version 1, unchanged since the first release): a safetensors file whose metadata
key ``"scaleeq"`` holds JSON, or a ``torch.save`` zip of ``{"scaleeq": meta, "state_dict": ...}``.
``meta`` = ``{"format": "scaleeq.ArbitraryScaleSR", "version": 1, "layout", "settings" (the
``retrofit`` keyword arguments), "base" (the original network's class, module and config),
"upsampler": {"class", "config"}, "sha256"}``. State-dict keys are ``backbone.*`` and
``upsampler.*``. ``sha256`` (added later; files without it still load) is the content hash of
the tensors (:func:`content_hash`), checked on load: a damaged file is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .._io import atomic_write
from ..contracts import Savable

if TYPE_CHECKING:
    from .model import ArbitraryScaleSR

__all__ = ["content_hash", "load", "save"]

_FORMAT = "scaleeq.ArbitraryScaleSR"
_FORMAT_VERSION = 1


def _upsampler_classes() -> dict[str, type[nn.Module]]:
    from ..layers import NeuralKrigingUpsampler
    from ..layers.baselines import BicubicFeatureUpsampler, LIIFUpsampler

    return {c.__name__: c for c in (NeuralKrigingUpsampler, LIIFUpsampler, BicubicFeatureUpsampler)}


def content_hash(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors in key order: each key, dtype, shape and raw bytes."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save(
    model: ArbitraryScaleSR, path: str | os.PathLike, *, dtype: torch.dtype | None = None
) -> None:
    """See :meth:`ArbitraryScaleSR.save`."""
    if not isinstance(model.upsampler, Savable):
        raise TypeError(
            f"cannot save: the upsampler {type(model.upsampler).__name__} has no `config` dict "
            "of constructor arguments to rebuild it from (scaleeq.contracts.Savable)"
        )
    meta = {
        "format": _FORMAT,
        "version": _FORMAT_VERSION,
        "layout": model.layout,
        "settings": model.settings,
        "base": model.base,
        "upsampler": {"class": type(model.upsampler).__name__, "config": model.upsampler.config},
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    meta["sha256"] = content_hash(tensors)
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import save_file
        except ImportError as e:
            raise ValueError(
                f"cannot write {path}: the safetensors package is not installed "
                "(pip install safetensors), or use a .pt path"
            ) from e
        atomic_write(
            path, lambda tmp: save_file(tensors, tmp, metadata={"scaleeq": json.dumps(meta)})
        )
    else:
        atomic_write(path, lambda tmp: torch.save({"scaleeq": meta, "state_dict": tensors}, tmp))


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
    from .build import retrofit

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {str(path)!r} is not a file")
    meta, tensors = _read_checkpoint(path, map_location)
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
    base = meta.get("base") or {}
    if model is None:
        from .. import models as _models

        cls = (
            getattr(_models, str(base.get("class")), None)
            if str(base.get("module", "")).startswith("scaleeq.")
            else None
        )
        if cls is None or base.get("config") is None:
            raise ValueError(
                f"{path} holds a retrofitted {base.get('module')}.{base.get('class')}, which scaleeq "
                "cannot rebuild by itself: pass model=<a new instance of that architecture>"
            )
        try:
            model = cls(**base["config"])
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"{path}: its stored {cls.__name__} configuration is invalid: {e}"
            ) from e
    up_meta = meta.get("upsampler") or {}
    up_cls = _upsampler_classes().get(str(up_meta.get("class")))
    if up_cls is None:
        raise ValueError(f"{path}: unsupported upsampler {up_meta.get('class')!r}")
    settings = meta.get("settings") or {}
    try:
        upsampler = up_cls(**(up_meta.get("config") or {}))
        asr = retrofit(model, upsampler=upsampler, **settings)
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: its stored settings cannot rebuild the model: {e}") from e
    try:
        asr.load_state_dict(tensors)
    except RuntimeError as e:
        raise ValueError(f"{path}: the stored weights do not fit the rebuilt model: {e}") from e
    return asr.to(map_location)


def _read_checkpoint(
    path: Path, map_location: str | torch.device
) -> tuple[dict, dict[str, torch.Tensor]]:
    with open(path, "rb") as f:
        magic = f.read(4)
    try:
        if magic[:2] == b"PK":  # torch.save's zip container
            payload = torch.load(path, map_location=map_location, weights_only=True)
            if (
                not isinstance(payload, dict)
                or "scaleeq" not in payload
                or "state_dict" not in payload
            ):
                raise ValueError("no scaleeq metadata")
            meta, tensors = payload["scaleeq"], payload["state_dict"]
        else:
            try:
                from safetensors import safe_open
            except ImportError as e:
                raise ValueError("it is not a torch file and safetensors is not installed") from e
            tensors = {}
            with safe_open(str(path), framework="pt", device=str(map_location)) as f:
                metadata = f.metadata() or {}
                for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                    tensors[key] = f.get_tensor(key)
            if "scaleeq" not in metadata:
                raise ValueError("no scaleeq metadata")
            meta = json.loads(metadata["scaleeq"])
    except Exception as e:
        raise ValueError(
            f"{path} is not a readable scaleeq checkpoint ({type(e).__name__}: {e})"
        ) from e
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError(
            f"{path} is not a scaleeq ArbitraryScaleSR checkpoint (format {meta.get('format') if isinstance(meta, dict) else None!r})"
        )
    if meta.get("version") != _FORMAT_VERSION:
        raise ValueError(
            f"{path}: unsupported checkpoint version {meta.get('version')!r} (expected {_FORMAT_VERSION})"
        )
    return meta, tensors
