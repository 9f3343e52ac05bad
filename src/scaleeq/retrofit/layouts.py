"""Layouts of fixed-scale SR networks that :func:`~scaleeq.retrofit` recognises: one adapter each.

An adapter knows three things about its layout: how to turn a (shallow) clone of the network
into a scale-aware body (insert :class:`~scaleeq.AFEBlock` layers, drop the fixed-scale tail),
how to run that body on an LR image with the scale as an argument, and the network's output
transform. Networks are recognised by structure (attribute names and the forward logic they
imply), never by class name.

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
    ``pixelshuffledirect`` and ``nearest+conv``. Each entry of ``layers`` is wrapped to run an
    AFE token block first. The adapter runs the body loop of ``forward_features`` itself
    (patch embedding, ``ape``, ``pos_drop``, the layers with HAT's ``params``, norm, unembedding)
    so that it can hand the scale to each layer; at retrofit time it checks that this loop
    reproduces the model's own ``forward_features``.
``"custom"``
    Anything else, with explicit ``body=`` (the name of a submodule mapping the image to
    features) and ``tail=`` (the submodule to drop); no AFE blocks are inserted. If the body's
    ``forward`` takes a ``scale`` keyword it gets the scale; otherwise it runs inside
    :func:`~scaleeq.scale_context` (for the user's own drop-in layers).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch
from torch import nn

from .._checkpoint import maybe_checkpoint
from .._checks import is_compiling
from ..layers.afe import AFEBlock, AFETokenBlock
from ..models._swin import crop_padding, pad_to_multiple
from ..scale import scale_context

__all__ = ["Layout", "detect_layout", "layout_for"]

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


def detect_layout(model: nn.Module) -> str:
    """Name the layout of ``model`` (``"swin"``, ``"basicsr"``, ``"edsr_pytorch"``).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: no layout matches; the message lists the attributes found and how to name
            the parts with ``retrofit(model, body=..., tail=...)``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    for layout in (SwinLayout, BasicSRLayout, EDSRPyTorchLayout):
        if layout.matches(model):
            return layout.name
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
    ``n_blocks``; ``forward(x, scale)`` hands the scale to each AFE block.

    With ``checkpointing`` set (``"reentrant"`` / ``"non_reentrant"``), each AFE block and each
    block runs under activation checkpointing while gradients are enabled.
    """

    def __init__(
        self, blocks: nn.Sequential, afe: nn.ModuleList, every: int, n_blocks: int
    ) -> None:
        super().__init__()
        self.blocks = blocks
        self.afe = afe
        self.every = every
        self.n_blocks = n_blocks
        self.checkpointing: str | None = None

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        mode = self.checkpointing
        for i, block in enumerate(self.blocks):
            if i < self.n_blocks and i % self.every == 0:
                x = maybe_checkpoint(self.afe[i // self.every], x, scale, mode=mode)
            x = maybe_checkpoint(block, x, mode=mode)
        return x


class _AFEThenLayer(nn.Module):
    """A Swin/HAT residual group preceded by an AFE token block.

    ``forward(x, x_size, scale, *args)``: ``args`` are the group's own extra arguments (HAT's
    ``params``), passed on unchanged.
    """

    def __init__(self, afe: AFETokenBlock, layer: nn.Module) -> None:
        super().__init__()
        self.afe = afe
        self.layer = layer
        self.checkpointing: str | None = None

    def _run(self, x: torch.Tensor, x_size: tuple[int, int], scale: torch.Tensor, *args: Any):
        return self.layer(self.afe(x, x_size, scale), x_size, *args)

    def forward(
        self, x: torch.Tensor, x_size: tuple[int, int], scale: torch.Tensor, *args: Any
    ) -> torch.Tensor:
        return maybe_checkpoint(self._run, x, x_size, scale, *args, mode=self.checkpointing)


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


def _run_body(body: nn.Module, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return body(x, scale) if isinstance(body, _Interleaved) else body(x)


class Layout:
    """One recognised layout: build the scale-aware body, run it, undo the input transform.

    Adapters hold no tensors (the backbone does), so they add nothing to a state dict.
    """

    name: ClassVar[str] = ""
    required: ClassVar[tuple[str, ...]] = ()
    sequential_body: ClassVar[bool] = False  # the layout needs ``body`` to be an nn.Sequential

    def __init__(self, pixel_range: float = 1.0, body: str | None = None) -> None:
        self.pixel_range = pixel_range
        self.body = body

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        if not all(hasattr(model, a) for a in cls.required):
            return False
        return not cls.sequential_body or isinstance(model.body, nn.Sequential)

    def input_conv(self, bb: nn.Module) -> nn.Conv2d | None:
        """The convolution that reads the LR image (its channels and dtype are the input's);
        ``None`` where the layout does not know it."""
        return None

    def build(self, model: nn.Module, backbone: nn.Module, settings: dict[str, Any]) -> int | None:
        """Insert AFE blocks and drop the tail on ``backbone`` (a shallow clone of ``model``);
        return the feature channels (``None`` if unknown)."""
        raise NotImplementedError

    def features(self, bb: nn.Module, lr: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """The body's features of ``lr`` ``(B, 3, h, w)`` in [0, 1], AFE layers at ``scale``."""
        raise NotImplementedError

    def output_range(self, bb: nn.Module) -> float:
        """The factor between the network's output units and [0, 1]."""
        return 1.0

    def output(self, bb: nn.Module, out: torch.Tensor) -> torch.Tensor:
        """The network's output transform applied to the upsampler's output."""
        return out

    def set_checkpointing(self, bb: nn.Module, mode: str | None) -> int:
        """Turn activation checkpointing of the AFE-carrying segments on (``mode``) or off;
        return how many segments it applies to."""
        count = 0
        for m in bb.modules():
            if isinstance(m, (_Interleaved, _AFEThenLayer)):
                m.checkpointing = mode
                count += 1
        return count


class _MeanRangeLayout(Layout):
    """Layouts whose network maps ``(lr - mean) * img_range`` through ``conv_first`` and undoes
    it on the output (BasicSR, SwinIR / HAT)."""

    def input_conv(self, bb):
        return bb.conv_first

    def output_range(self, bb):
        return float(bb.img_range)

    def output(self, bb, out):
        return out / bb.img_range + torch.as_tensor(bb.mean).to(out)


class BasicSRLayout(_MeanRangeLayout):
    name = "basicsr"
    required = _BASICSR
    sequential_body = True

    def build(self, model, backbone, settings):
        channels = _out_channels(model.conv_after_body)
        if settings["afe"] == "per_group":
            backbone.body = _interleave(
                model.body, channels, settings["afe_every"], len(model.body)
            )
        for name in ("upsample", "conv_last"):
            del backbone._modules[name]
        return channels

    def features(self, bb, lr, scale):
        x = bb.conv_first((lr - torch.as_tensor(bb.mean).to(lr)) * bb.img_range)
        return bb.conv_after_body(_run_body(bb.body, x, scale)) + x


class EDSRPyTorchLayout(Layout):
    name = "edsr_pytorch"
    required = _EDSR_PYTORCH
    sequential_body = True

    def input_conv(self, bb):
        return bb.sub_mean if isinstance(bb.sub_mean, nn.Conv2d) else None

    def build(self, model, backbone, settings):
        channels = _out_channels(model.head)
        pr = settings["pixel_range"]
        self.pixel_range = float(pr) if pr is not None else _infer_pixel_range(model)
        n = len(model.body) - 1 if isinstance(model.body[-1], nn.Conv2d) else len(model.body)
        if settings["afe"] == "per_group":
            backbone.body = _interleave(model.body, channels, settings["afe_every"], n)
        del backbone._modules["tail"]
        return channels

    def features(self, bb, lr, scale):
        x = bb.head(bb.sub_mean(lr * self.pixel_range))
        return _run_body(bb.body, x, scale) + x

    def output_range(self, bb):
        return float(self.pixel_range)

    def output(self, bb, out):
        return bb.add_mean(out) / self.pixel_range


class SwinLayout(_MeanRangeLayout):
    name = "swin"
    required = _SWIN

    def build(self, model, backbone, settings):
        channels = _out_channels(model.conv_after_body)
        if settings["afe"] == "per_group":
            pe = model.patch_embed
            dim = int(pe.embed_dim) if hasattr(pe, "embed_dim") else channels
            backbone.layers = nn.ModuleList(
                _AFEThenLayer(AFETokenBlock(dim, identity_init=True), layer)
                for layer in model.layers
            )
        for name in _SWIN_TAILS:
            backbone._modules.pop(name, None)
        self._check_body_loop(model, backbone)
        return channels

    @staticmethod
    def _layer_args(bb: nn.Module, x_size: tuple[int, int], device: torch.device) -> tuple:
        """HAT's layers take ``params`` (attention mask and relative position indices);
        SwinIR's take none. HAT-style models have ``calculate_mask`` on the model itself."""
        if not hasattr(bb, "calculate_mask"):
            return ()
        params = {"attn_mask": bb.calculate_mask(x_size).to(device)}
        for key, attr in (
            ("rpi_sa", "relative_position_index_SA"),
            ("rpi_oca", "relative_position_index_OCA"),
        ):
            if hasattr(bb, attr):
                params[key] = getattr(bb, attr)
        return (params,)

    def _body(self, bb: nn.Module, x: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        """``forward_features`` with the scale handed to each AFE-wrapped layer."""
        x_size = (x.shape[2], x.shape[3])
        extra = self._layer_args(bb, x_size, x.device)
        t = bb.patch_embed(x)
        if getattr(bb, "ape", False):
            t = t + bb.absolute_pos_embed
        if hasattr(bb, "pos_drop"):
            t = bb.pos_drop(t)
        for layer in bb.layers:
            if isinstance(layer, _AFEThenLayer):
                t = layer(t, x_size, scale, *extra)
            else:
                t = layer(t, x_size, *extra)
        return bb.patch_unembed(bb.norm(t), x_size)

    def _check_body_loop(self, model: nn.Module, backbone: nn.Module) -> None:
        """The loop above must reproduce the model's own ``forward_features`` (AFE blocks are
        the identity now); a variant that does more would silently change the features."""
        param = next(model.parameters(), None)
        if param is None or param.device.type == "meta":
            return
        ws = int(getattr(model, "window_size", 8))
        c = int(model.conv_first.out_channels)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(1, c, 2 * ws, 2 * ws, generator=gen).to(param)
        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                expected = model.forward_features(x)
                ours = self._body(model, x, None)
        finally:
            model.train(training)
        if expected.shape != ours.shape or not torch.allclose(expected, ours, atol=1e-5, rtol=1e-4):
            raise ValueError(
                f"retrofit cannot reproduce {type(model).__name__}.forward_features with the "
                "SwinIR/HAT body loop (patch_embed, ape, pos_drop, layers, norm, patch_unembed); "
                "retrofit it with explicit parts: retrofit(model, body=..., tail=...)"
            )

    def features(self, bb, lr, scale):
        h, w = lr.shape[-2:]
        if hasattr(bb, "check_image_size") and not is_compiling():  # (the same padding)
            x = bb.check_image_size(lr)
        else:
            x = pad_to_multiple(lr, int(getattr(bb, "window_size", 1)))
        x = bb.conv_first((x - torch.as_tensor(bb.mean).to(x)) * bb.img_range)
        x = bb.conv_after_body(self._body(bb, x, scale)) + x
        return crop_padding(x, (h, w))


class CustomLayout(Layout):
    name = "custom"

    def build(self, model, backbone, settings):
        backbone._modules.pop(settings["tail"], None)
        return None

    def features(self, bb, lr, scale):
        body = getattr(bb, self.body)
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
            if _is_out_of_memory(e):  # not the body's fault: let the caller see it as it is
                raise
            raise ValueError(
                f"the body {self.body!r} named in retrofit(body=...) failed on lr of shape "
                f"{tuple(lr.shape)} (it must map the image to features): {e}"
            ) from e


def _is_out_of_memory(e: RuntimeError) -> bool:
    """An allocation failure (CUDA's ``OutOfMemoryError`` or the CPU allocator's message)."""
    return isinstance(e, torch.cuda.OutOfMemoryError) or "can't allocate memory" in str(e)


_LAYOUTS: dict[str, type[Layout]] = {
    cls.name: cls for cls in (BasicSRLayout, EDSRPyTorchLayout, SwinLayout, CustomLayout)
}


def layout_for(name: str, *, body: str | None = None) -> Layout:
    """A fresh adapter for the layout called ``name``."""
    return _LAYOUTS[name](body=body)


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
