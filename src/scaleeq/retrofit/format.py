"""The retrofitted-model file format: writing it (:func:`save`), reading and checking its
header (:func:`read_checkpoint`, :func:`check_meta`) and the content hash. Rebuilding a
model from a file is :mod:`scaleeq.retrofit.io` (it needs :func:`~scaleeq.retrofit`; this
module needs nothing above the model, so the model can save itself).

File format (version 1, unchanged since the first release): a safetensors file whose metadata
key ``"scaleeq"`` holds JSON, or a ``torch.save`` zip of ``{"scaleeq": meta, "state_dict": ...}``.
``meta`` = ``{"format": "scaleeq.ArbitraryScaleSR", "version": 1, "layout", "settings" (the
``retrofit`` keyword arguments), "base" (the original network's class, module and config),
"upsampler": {"class", "config"}, "sha256"}``. State-dict keys are ``backbone.*`` and
``upsampler.*``. ``sha256`` (added later; files without it still load) is the content hash of
the tensors (:func:`content_hash`), checked on load: a damaged file is refused.

Networks loaded with spandrel (added later, optional): ``meta["source"] = {"loader":
"spandrel", "version", "keys"}`` maps each key of the original network's state dict to the
file's key holding that tensor; the tensors the retrofit dropped (the fixed-scale tail) are
stored as ``source.<key>``. :func:`scaleeq.load` reassembles the original state dict and
rebuilds the network with ``spandrel.ModelLoader``, so no user code is needed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .._io import atomic_write
from ..contracts import Savable

if TYPE_CHECKING:
    from .model import ArbitraryScaleSR

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "META_KEY",
    "SOURCE_PREFIX",
    "check_meta",
    "content_hash",
    "key_location",
    "meta_from_tensor",
    "meta_tensor",
    "read_checkpoint",
    "save",
]

FORMAT = "scaleeq.ArbitraryScaleSR"
FORMAT_VERSION = 1


_META_KEYS = {
    "format": str,
    "version": int,
    "layout": str,
    "settings": dict,
    "base": dict,
    "upsampler": dict,
}
_OPTIONAL_META_KEYS = {"sha256": str, "source": dict}
SOURCE_PREFIX = "source."


def key_location(path: Path, key: str) -> str:
    return f"{path}: its stored metadata key {key!r}"


def check_meta(path: Path, meta: dict) -> None:
    """The top-level keys of a version-1 checkpoint: each present, of its kind, no others."""
    for key in _META_KEYS:
        if key not in meta:
            raise ValueError(f"{key_location(path, key)} is missing")
    for key, value in meta.items():
        kind = _META_KEYS.get(key) or _OPTIONAL_META_KEYS.get(key)
        if kind is None:
            raise ValueError(
                f"{key_location(path, key)} is not part of the format (keys: "
                f"{sorted(_META_KEYS) + sorted(_OPTIONAL_META_KEYS)})"
            )
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(
                f"{key_location(path, key)} must be a {kind.__name__}, got {type(value).__name__}"
            )
    for part, keys in (("base", ("class", "module", "config")), ("upsampler", ("class", "config"))):
        extra = sorted(set(meta[part]) - set(keys))
        if extra:
            raise ValueError(
                f"{key_location(path, f'{part}.{extra[0]}')} is not part of the format"
            )
        for k in keys:
            if k not in meta[part]:
                raise ValueError(f"{key_location(path, f'{part}.{k}')} is missing")
            value = meta[part][k]
            ok = isinstance(value, dict if k == "config" else str) or (
                part == "base" and k == "config" and value is None
            )
            if not ok:
                raise ValueError(
                    f"{key_location(path, f'{part}.{k}')} must be a "
                    f"{'dict' if k == 'config' else 'string'}, got {value!r}"
                )


#: The state-dict key that carries the metadata again, as UTF-8 JSON bytes, for loaders that
#: see only tensors (spandrel's ``ModelLoader``; :mod:`scaleeq.spandrel`). Not hashed; dropped
#: on load.
META_KEY = "scaleeq_meta"


def meta_tensor(meta: dict) -> torch.Tensor:
    """``meta`` as a uint8 tensor of its JSON text."""
    return torch.frombuffer(bytearray(json.dumps(meta).encode()), dtype=torch.uint8).clone()


def meta_from_tensor(t: torch.Tensor) -> dict:
    """The metadata stored by :func:`meta_tensor`."""
    return json.loads(bytes(t.detach().cpu().to(torch.uint8).numpy().tobytes()).decode())


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
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "layout": model.layout,
        "settings": model.settings,
        "base": model.base,
        "upsampler": {"class": type(model.upsampler).__name__, "config": model.upsampler.config},
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if model.source is not None:
        meta["source"] = _source_record(model, tensors)
    if dtype is not None:
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    meta["sha256"] = content_hash(tensors)
    tensors[META_KEY] = meta_tensor(meta)  # for loaders that read state dicts only (spandrel)
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


def _source_record(model: ArbitraryScaleSR, tensors: dict[str, torch.Tensor]) -> dict:
    """The ``source`` record of a spandrel network (see the module docstring); adds the
    dropped tail's tensors to ``tensors``."""
    from .._torchvision import import_spandrel

    spandrel = import_spandrel("saving a retrofitted spandrel network")

    by_id = {id(t): k for k, t in model.state_dict(keep_vars=True).items()}
    keys: dict[str, str] = {}
    for key, t in model.source.state_dict(keep_vars=True).items():
        if id(t) in by_id:
            keys[key] = by_id[id(t)]
        else:
            keys[key] = SOURCE_PREFIX + key
            tensors[keys[key]] = t.detach().cpu().contiguous()
    return {"loader": "spandrel", "version": spandrel.__version__, "keys": keys}


def read_checkpoint(
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
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a scaleeq ArbitraryScaleSR checkpoint "
            f"(format {meta.get('format') if isinstance(meta, dict) else None!r})"
        )
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: unsupported checkpoint version {meta.get('version')!r} "
            f"(expected {FORMAT_VERSION})"
        )
    return meta, tensors
