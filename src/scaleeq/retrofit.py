"""``retrofit(model)``: turn a fixed-scale SR network into an arbitrary-scale one.

The input model is recognised by its structure (attribute names and the forward logic they
imply, never class names). The result, :class:`ArbitraryScaleSR`, shares the model's head and
body modules (the same parameter objects: nothing is copied and the input model is not
mutated), inserts :class:`~scaleeq.AFEBlock` layers in identity-at-init form at the start of
each residual group, drops the fixed-scale tail and renders with a
:class:`~scaleeq.NeuralKrigingUpsampler` (or an upsampler you pass) from the body's features.

Recognised layouts:

``"basicsr"``
    EDSR and RCAN as in BasicSR (and scaleeq.models): ``mean``, ``img_range``, ``conv_first``,
    ``body``, ``conv_after_body``, ``upsample``, ``conv_last``; features
    ``conv_after_body(body(x)) + x`` with ``x = conv_first((lr - mean) * img_range)``.
``"edsr_pytorch"``
    EDSR and RCAN as in the original EDSR-PyTorch code: ``sub_mean``, ``head``, ``body``
    (blocks or groups, then a conv), ``tail``, ``add_mean``; input in ``[0, pixel_range]``
    (inferred from ``sub_mean``, 255 by default).
``"swin"``
    SwinIR and HAT as in their official code, BasicSR and spandrel: ``conv_first``,
    ``patch_embed``, ``layers``, ``norm``, ``patch_unembed``, ``conv_after_body``,
    ``forward_features``, ``mean``, ``img_range``, ``window_size``; tails ``pixelshuffle``,
    ``pixelshuffledirect`` and ``nearest+conv``. The model's own ``forward_features`` runs (so
    HAT's attention parameters, ``ape`` and friends behave as in the original); each entry of
    ``layers`` is wrapped to run an AFE token block first.
``"custom"``
    Anything else, with explicit ``body=`` (the name of a submodule mapping the image to
    features) and ``tail=`` (the submodule to drop); no AFE blocks are inserted.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_tensor
from .layers.afe import AFEBlock, AFETokenBlock
from .layers.kriging import NeuralKrigingUpsampler
from .ops.coords import Window, sample_bicubic
from .scale import ScaleLike, _parse_scale, resolve_scale_and_size, scale_context

__all__ = ["ArbitraryScaleSR", "detect_layout", "load", "retrofit"]

_BASICSR = ("conv_first", "body", "conv_after_body", "upsample", "conv_last", "mean", "img_range")
_EDSR_PYTORCH = ("sub_mean", "head", "body", "tail", "add_mean")
_SWIN = (
    "conv_first",
    "patch_embed",
    "layers",
    "patch_unembed",
    "conv_after_body",
    "forward_features",
    "mean",
    "img_range",
)
_SWIN_TAILS = (
    "conv_before_upsample",
    "upsample",
    "conv_last",
    "conv_up1",
    "conv_up2",
    "conv_hr",
    "lrelu",
)
_FORMAT = "scaleeq.ArbitraryScaleSR"
_FORMAT_VERSION = 1


def detect_layout(model: nn.Module) -> str:
    """Name the layout of ``model`` (``"swin"``, ``"basicsr"``, ``"edsr_pytorch"``).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: no layout matches; the message lists the attributes found and how to name
            the parts with ``retrofit(model, body=..., tail=...)``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if all(hasattr(model, a) for a in _SWIN):
        return "swin"
    if all(hasattr(model, a) for a in _BASICSR) and isinstance(model.body, nn.Sequential):
        return "basicsr"
    if all(hasattr(model, a) for a in _EDSR_PYTORCH) and isinstance(model.body, nn.Sequential):
        return "edsr_pytorch"
    children = [name for name, _ in model.named_children()]
    raise ValueError(
        f"retrofit does not recognise {type(model).__name__}: it has the submodules {children}. "
        "Recognised layouts: BasicSR EDSR/RCAN (conv_first, body, conv_after_body, upsample, "
        "conv_last, mean, img_range), EDSR-PyTorch EDSR/RCAN (sub_mean, head, body, tail, "
        "add_mean), SwinIR/HAT (conv_first, patch_embed, layers, patch_unembed, conv_after_body, "
        "forward_features, mean, img_range). For another model, name its parts: "
        "retrofit(model, body='<submodule mapping the image to features>', tail='<fixed-scale tail>')"
    )


def _out_channels(module: nn.Module) -> int | None:
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels if convs else None


class _Interleaved(nn.Module):
    """Runs ``blocks`` in order with an AFE block before every ``every``-th of the first
    ``n_blocks`` (the scale comes from the scale context)."""

    def __init__(
        self, blocks: nn.Sequential, afe: nn.ModuleList, every: int, n_blocks: int
    ) -> None:
        super().__init__()
        self.blocks = blocks
        self.afe = afe
        self.every = every
        self.n_blocks = n_blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            if i < self.n_blocks and i % self.every == 0:
                x = self.afe[i // self.every](x)
            x = block(x)
        return x


class _AFEThenLayer(nn.Module):
    """A Swin/HAT residual group preceded by an AFE token block; same call signature."""

    def __init__(self, afe: AFETokenBlock, layer: nn.Module) -> None:
        super().__init__()
        self.afe = afe
        self.layer = layer

    def forward(
        self, x: torch.Tensor, x_size: tuple[int, int], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        return self.layer(self.afe(x, x_size), x_size, *args, **kwargs)


def _shallow_clone(model: nn.Module) -> nn.Module:
    """A new module object sharing ``model``'s submodules, parameters and buffers, with its own
    registries, so replacing or removing a part of the clone leaves ``model`` untouched."""
    clone = copy.copy(model)
    clone._modules = dict(model._modules)
    clone._parameters = dict(model._parameters)
    clone._buffers = dict(model._buffers)
    return clone


class ArbitraryScaleSR(nn.Module):
    """A retrofitted model: shared head and body + AFE blocks + an arbitrary-scale upsampler.

    Built by :func:`retrofit`; not meant to be constructed directly.

    Shape:
        - lr: :math:`(B, 3, h, w)` in the input range of the original model ([0, 1] for BasicSR
          and Swin layouts; EDSR-PyTorch models also take [0, 1] here: the wrapper scales).
        - scale / size / window: as :class:`~scaleeq.NeuralKrigingUpsampler`.
        - output: :math:`(B, 3, H, W)` or the window.
    """

    def __init__(
        self,
        backbone: nn.Module,
        upsampler: nn.Module,
        *,
        layout: str,
        settings: dict[str, Any],
        base: dict[str, Any],
        pixel_range: float = 1.0,
        body: str | None = None,
        skip: str = "none",
    ) -> None:
        super().__init__()
        self.skip = skip
        self.backbone = backbone
        self.upsampler = upsampler
        self.layout = layout
        self.settings = settings
        self.base = base
        self.pixel_range = pixel_range
        self._body_name = body

    # -- features -----------------------------------------------------------------------------
    def features(self, lr: torch.Tensor, scale: ScaleLike) -> torch.Tensor:
        """The body's features ``(B, C, h, w)`` that the upsampler renders from.

        Equal to the original model's pre-tail features while the AFE blocks are at their
        identity initialisation.
        """
        check_tensor(lr, "lr", ndim=4, layout="(B, C, h, w)")
        r = _parse_scale(scale, device=lr.device, dtype=lr.dtype)
        if r.shape[0] not in (1, lr.shape[0]):
            raise ValueError(
                f"scale holds {r.shape[0]} per-sample scales but lr has {lr.shape[0]} samples"
            )
        with scale_context(r):
            feat = getattr(self, f"_features_{self.layout}")(lr)
        if self.skip == "bicubic":  # carry the image along for the skip (see render)
            feat = torch.cat([feat, lr], dim=1)
        return feat

    def _output_range(self) -> float:
        if self.layout in ("basicsr", "swin"):
            return float(self.backbone.img_range)
        return float(self.pixel_range)

    def _mean(self, like: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.backbone.mean).to(like)

    def _features_basicsr(self, lr: torch.Tensor) -> torch.Tensor:
        bb = self.backbone
        x = bb.conv_first((lr - self._mean(lr)) * bb.img_range)
        return bb.conv_after_body(bb.body(x)) + x

    def _features_edsr_pytorch(self, lr: torch.Tensor) -> torch.Tensor:
        bb = self.backbone
        x = bb.head(bb.sub_mean(lr * self.pixel_range))
        return bb.body(x) + x

    def _features_swin(self, lr: torch.Tensor) -> torch.Tensor:
        bb = self.backbone
        h, w = lr.shape[-2:]
        if hasattr(bb, "check_image_size"):
            x = bb.check_image_size(lr)
        else:
            ws = int(getattr(bb, "window_size", 1))
            x = F.pad(lr, (0, (-w) % ws, 0, (-h) % ws), mode="reflect")
        x = bb.conv_first((x - self._mean(x)) * bb.img_range)
        x = bb.conv_after_body(bb.forward_features(x)) + x
        return x[:, :, :h, :w]

    def _features_custom(self, lr: torch.Tensor) -> torch.Tensor:
        return getattr(self.backbone, self._body_name)(lr)

    # -- rendering ----------------------------------------------------------------------------
    def render(
        self,
        feat: torch.Tensor,
        *,
        size: tuple[int, int] | None = None,
        scale: ScaleLike | None = None,
        window: Window | None = None,
    ) -> torch.Tensor:
        """Upsampler output for ``feat`` with the original model's output transform applied
        (``/ img_range + mean`` for BasicSR and Swin layouts, ``add_mean`` for EDSR-PyTorch).

        With ``skip="bicubic"`` the last 3 channels of ``feat`` are the input image: the
        upsampler's output (scaled back to [0, 1] units, no mean) is added to the bicubic
        interpolation of the image at the same HR queries.
        """
        if self.skip == "bicubic":
            feat, img = feat[:, :-3], feat[:, -3:]
            out = self.upsampler(feat, size=size, scale=scale, window=window)
            sizes = self.upsampler.full_sizes(
                tuple(feat.shape[-2:]), feat.shape[0], scale=scale, size=size
            )
            return out / self._output_range() + sample_bicubic(img, sizes, window)
        out = self.upsampler(feat, size=size, scale=scale, window=window)
        if self.layout in ("basicsr", "swin"):
            return out / self.backbone.img_range + self._mean(out)
        if self.layout == "edsr_pytorch":
            return self.backbone.add_mean(out) / self.pixel_range
        return out

    def forward(
        self,
        lr: torch.Tensor,
        *,
        scale: ScaleLike | None = None,
        size: tuple[int, int] | None = None,
        window: Window | None = None,
    ) -> torch.Tensor:
        check_tensor(lr, "lr", ndim=4, layout="(B, C, h, w)")
        b, _, h, w = lr.shape
        if scale is None:  # the scale the AFE blocks see follows the requested size
            r, _ = resolve_scale_and_size((h, w), b, size=size, device=lr.device, dtype=lr.dtype)
        else:
            r = scale
        return self.render(self.features(lr, r), size=size, scale=scale, window=window)

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write weights and the configuration needed to rebuild, atomically.

        Uses safetensors when installed (``.safetensors`` files), else ``torch.save``. The file
        appears complete or not at all: it is written to a temporary file in the same folder
        and renamed.

        Raises:
            ValueError: the upsampler has no ``config`` to rebuild it from.
        """
        up_config = getattr(self.upsampler, "config", None)
        if up_config is None:
            raise ValueError(
                f"cannot save: the upsampler {type(self.upsampler).__name__} has no `config` dict "
                "of constructor arguments to rebuild it from"
            )
        meta = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "layout": self.layout,
            "settings": self.settings,
            "base": self.base,
            "upsampler": {"class": type(self.upsampler).__name__, "config": up_config},
        }
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
        os.close(fd)
        try:
            if _use_safetensors(path):
                from safetensors.torch import save_file

                save_file(tensors, tmp, metadata={"scaleeq": json.dumps(meta)})
            else:
                torch.save({"scaleeq": meta, "state_dict": tensors}, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def _use_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        try:
            import safetensors.torch  # noqa: F401
        except ImportError as e:
            raise ValueError(
                f"cannot write {path}: the safetensors package is not installed "
                "(pip install safetensors), or use a .pt path"
            ) from e
        return True
    return False


def retrofit(
    model: nn.Module,
    *,
    afe: str = "per_group",
    afe_every: int | None = None,
    upsampler: nn.Module | None = None,
    body: str | None = None,
    tail: str | None = None,
    pixel_range: float | None = None,
    skip: str = "none",
) -> ArbitraryScaleSR:
    """Turn a fixed-scale SR network into an arbitrary-scale one, keeping its weights.

    Args:
        model: the network (recognised layouts in the module docstring). Not modified.
        afe: ``"per_group"`` (an AFE block at the start of each residual group, or every
            ``afe_every`` blocks for EDSR-style bodies) or ``"none"``.
        afe_every: blocks per AFE block for bodies of plain residual blocks (default: a quarter
            of the body, so 4 AFE blocks); residual groups (RCAN, Swin) get one each.
        upsampler: an upsampler with the NeuralKrigingUpsampler contract; default
            ``NeuralKrigingUpsampler(C)`` on the body's ``C`` feature channels.
        body, tail: for unrecognised models, the submodule mapping the image to features and
            the fixed-scale tail to drop.
        pixel_range: input range of EDSR-PyTorch models (default: inferred from ``sub_mean``).
        skip: ``"none"`` (the upsampler renders the image, as the original tail did) or
            ``"bicubic"``: it renders a residual over the bicubic upsampling of the input (its
            last layer starts at zero, so the model starts as bicubic). Trains much faster from
            scratch; the features then carry the input as 3 extra channels.

    Returns:
        :class:`ArbitraryScaleSR`; at initialisation its features equal the model's pre-tail
        features at every scale.

    Raises:
        TypeError / ValueError: not a module, an unrecognised layout, a missing named part or
            bad options; messages name the argument and what was found.
    """
    if skip not in ("none", "bicubic"):
        raise ValueError(f"skip must be 'none' or 'bicubic', got {skip!r}")
    if afe not in ("per_group", "none"):
        raise ValueError(f"afe must be 'per_group' or 'none', got {afe!r}")
    if afe_every is not None and (
        isinstance(afe_every, bool) or not isinstance(afe_every, int) or afe_every < 1
    ):
        raise ValueError(f"afe_every must be an int >= 1, got {afe_every!r}")
    if body is not None or tail is not None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        layout = "custom"
        for name, value in (("body", body), ("tail", tail)):
            if value is None or not isinstance(getattr(model, value, None), nn.Module):
                raise ValueError(
                    f"{name}={value!r} must name a submodule of the model; it has {[n for n, _ in model.named_children()]}"
                )
    else:
        layout = detect_layout(model)
    backbone = _shallow_clone(model)
    feat_channels: int | None = None
    range_ = 1.0
    settings: dict[str, Any] = {
        "skip": skip,
        "afe": afe,
        "afe_every": afe_every,
        "body": body,
        "tail": tail,
        "pixel_range": pixel_range,
    }
    if layout == "basicsr":
        feat_channels = _out_channels(model.conv_after_body)
        if afe == "per_group":
            backbone.body = _interleave(model.body, feat_channels, afe_every, len(model.body))
        for name in ("upsample", "conv_last"):
            del backbone._modules[name]
    elif layout == "edsr_pytorch":
        feat_channels = _out_channels(model.head)
        range_ = float(pixel_range) if pixel_range is not None else _infer_pixel_range(model)
        n = len(model.body) - 1 if isinstance(model.body[-1], nn.Conv2d) else len(model.body)
        if afe == "per_group":
            backbone.body = _interleave(model.body, feat_channels, afe_every, n)
        del backbone._modules["tail"]
    elif layout == "swin":
        feat_channels = _out_channels(model.conv_after_body)
        if afe == "per_group":
            dim = (
                int(model.patch_embed.embed_dim)
                if hasattr(model.patch_embed, "embed_dim")
                else feat_channels
            )
            backbone.layers = nn.ModuleList(
                _AFEThenLayer(AFETokenBlock(dim, identity_init=True), layer)
                for layer in model.layers
            )
        for name in _SWIN_TAILS:
            backbone._modules.pop(name, None)
    else:
        backbone._modules.pop(tail, None)
    if upsampler is None:
        if feat_channels is None:
            raise ValueError("cannot infer the feature channels of the body; pass upsampler=...")
        upsampler = NeuralKrigingUpsampler(feat_channels)
    elif not isinstance(upsampler, nn.Module):
        raise TypeError(f"upsampler must be an nn.Module, got {type(upsampler).__name__}")
    if skip == "bicubic":
        if not hasattr(upsampler, "full_sizes"):
            raise ValueError(
                "skip='bicubic' needs an upsampler with full_sizes() (a NeuralKrigingUpsampler)"
            )
        if isinstance(getattr(upsampler, "tail", None), (nn.Conv2d, nn.Linear)):  # start as bicubic
            nn.init.zeros_(upsampler.tail.weight)
            nn.init.zeros_(upsampler.tail.bias)
    param = next(model.parameters(), None)
    if param is not None:  # new parts follow the model's device and dtype; shared parts stay put
        upsampler = upsampler.to(device=param.device, dtype=param.dtype)
        for module in backbone.modules():
            if isinstance(module, (AFEBlock, NeuralKrigingUpsampler)):
                module.to(device=param.device, dtype=param.dtype)
    base = {
        "class": type(model).__name__,
        "module": type(model).__module__,
        "config": getattr(model, "config", None),
    }
    return ArbitraryScaleSR(
        backbone,
        upsampler,
        layout=layout,
        settings=settings,
        base=base,
        pixel_range=range_,
        body=body,
        skip=skip,
    )


def _interleave(
    body: nn.Sequential, channels: int | None, every: int | None, n_blocks: int
) -> _Interleaved:
    if channels is None:
        raise ValueError("cannot infer the body's channels for the AFE blocks; pass afe='none'")
    grouped = any(isinstance(m, nn.Sequential) for blk in body[:n_blocks] for m in blk.children())
    if every is None:
        every = 1 if grouped else max(1, n_blocks // 4)
    count = -(-n_blocks // every)
    afe = nn.ModuleList(AFEBlock(channels, identity_init=True) for _ in range(count))
    return _Interleaved(body, afe, every, n_blocks)


def _infer_pixel_range(model: nn.Module) -> float:
    """EDSR-PyTorch's ``sub_mean`` is a 1x1 conv with bias ``-pixel_range * mean / std``."""
    bias = getattr(model.sub_mean, "bias", None)
    weight = getattr(model.sub_mean, "weight", None)
    if bias is None or weight is None or bias.numel() != 3:
        return 255.0
    std = 1.0 / weight.detach().flatten(1).diagonal()[:3].abs().clamp_min(1e-12)
    mean = torch.tensor([0.4488, 0.4371, 0.4040])
    ratio = -bias.detach().cpu().float() * std.cpu().float() / mean
    value = float(ratio.mean())
    return value if value > 0 and bool((ratio - value).abs().max() < 1e-3 * value) else 255.0


def load(
    path: str | os.PathLike,
    *,
    model: nn.Module | None = None,
    map_location: str | torch.device = "cpu",
) -> ArbitraryScaleSR:
    """Load an :class:`ArbitraryScaleSR` written by :meth:`ArbitraryScaleSR.save`.

    Models from ``scaleeq.models`` are rebuilt from the stored configuration; for other models
    pass a freshly built instance of the original architecture as ``model``.

    Raises:
        ValueError: the file is missing, truncated, not a scaleeq checkpoint, or its weights do
            not fit the rebuilt model; the message says which.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {str(path)!r} is not a file")
    meta, tensors = _read_checkpoint(path, map_location)
    base = meta.get("base") or {}
    if model is None:
        from . import models as _models

        cls = (
            getattr(_models, str(base.get("class")), None)
            if base.get("module", "").startswith("scaleeq.")
            else None
        )
        if cls is None or base.get("config") is None:
            raise ValueError(
                f"{path} holds a retrofitted {base.get('module')}.{base.get('class')}, which scaleeq "
                "cannot rebuild by itself: pass model=<a new instance of that architecture>"
            )
        model = cls(**base["config"])
    up_meta = meta.get("upsampler") or {}
    if up_meta.get("class") != "NeuralKrigingUpsampler":
        raise ValueError(f"{path}: unsupported upsampler {up_meta.get('class')!r}")
    settings = meta.get("settings") or {}
    asr = retrofit(model, upsampler=NeuralKrigingUpsampler(**up_meta["config"]), **settings)
    try:
        asr.load_state_dict(tensors)
    except RuntimeError as e:
        raise ValueError(f"{path}: the stored weights do not fit the rebuilt model: {e}") from e
    return asr


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
