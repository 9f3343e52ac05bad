"""Real-CUGAN as spandrel ships it (``spandrel.architectures.RealCUGAN``: ``UpCunet2x``,
``UpCunet3x``, ``UpCunet4x``, each optionally ``pro``, and ``UpCunet2x_fast``).

**Where an LR feature map exists.** A Real-CUGAN network is two U-Nets in a row. ``unet1``
works on the (reflect-padded) LR image and *ends* in its fixed-scale upsampler:
``unet1.conv_bottom``, a ``ConvTranspose2d`` of stride 2 (x2, x4) or 3 (x3). ``unet2`` then
refines at that higher resolution; the x4 network adds ``conv_final`` + ``PixelShuffle(2)`` on
top. So in ``UpCunet2x`` / ``3x`` / ``4x`` the only LR feature map before a fixed-scale layer
is the input of ``unet1.conv_bottom`` (64 channels), and that is the cut: the tail dropped is
``unet1.conv_bottom``, **the whole of ``unet2``** (the HR refinement U-Net, about 80 % of the
weights) and, for x4, ``conv_final`` / ``ps``. What is kept is ``unet1``'s encoder-decoder at
LR (three stages, one SE block) — the honest head and body of the network, but a small one.

``UpCunet2x_fast`` differs: it pixel-unshuffles the input first, so ``unet1`` runs at half
resolution and its ``conv_bottom`` brings the map back to the *input* resolution; ``unet2``
runs there and only ``conv_final`` + ``PixelShuffle(2)`` upsample. Its cut is the input of
``conv_final`` (``unet2(x) + crop(x)``, 64 channels at the input resolution, stride 1): both
U-Nets are kept.

**Padding and the border.** Every variant reflect-pads the image (by 18 / 14 / 19 / 38 pixels
on every side, and at the bottom / right to a multiple of 2, or 4 for x3) and the U-Nets'
unpadded convolutions shrink the map again; the map at the cut keeps a border of 11 / 7 / 12 /
2 pixels on *every* side. :meth:`RealCUGANAdapter.features` pads exactly as the network does
(the SE blocks average over the whole padded map, so the padding must match) and crops the
border, giving ``(B, 64, h, w)`` on the input's pixel grid. Because the reference map is
larger than the features on all four sides,
:func:`~scaleeq.retrofit.adapters.base.check_cut` reads it through
:meth:`~RealCUGANAdapter.cut_reference` (the crop of the border).

Like the network, the retrofit rejects images smaller than its reflect padding (at least 20 /
18 / 21 pixels a side; 42 for the fast variant, which spandrel limits to multiples of 4: the
adapter pads the fast variant to a multiple of 4, identical to the network wherever the
network runs, so other sizes work too).

**AFE blocks** go at the input of every U-Net stage after the first (the first reads the
image): in ``unet1`` before ``conv2`` (the bottleneck, at half resolution) and before ``conv3``
(the skip merge); in the fast variant's ``unet2`` also before ``conv2``, ``conv3`` (quarter
resolution, 128 channels), ``conv4`` and ``conv5``. ``afe_every`` does not apply.

**Carried over / not:** ``pro`` models map the input to ``0.7 x + 0.15`` and the output back
(:meth:`~RealCUGANAdapter.output`, ``output_range`` 0.7). x4 and fast add the nearest upsampling
of the input after the tail (``residual = "nearest"``); x2 / x3 have no input residual (their
``unet2(y) + y`` skip lies inside the dropped tail). The ``alpha`` argument of the x2/x3/x4
``forward`` scales a layer inside ``unet2`` only (dropped; the fast variant has no ``alpha``).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..._activation_checkpoint import maybe_checkpoint
from ...layers.afe import AFEBlock
from ...ops.coords import ceil_div, pad_to
from ...scale import ScaleCondition
from .base import Adapter

__all__ = [
    "RealCUGAN4xAdapter",
    "RealCUGANAdapter",
    "RealCUGANFastAdapter",
]

_UNET1 = ("conv1", "conv1_down", "conv2", "conv2_up", "conv3", "conv_bottom")
_UNET2 = (
    "conv1",
    "conv1_down",
    "conv2",
    "conv2_down",
    "conv3",
    "conv3_up",
    "conv4",
    "conv4_up",
    "conv5",
    "conv_bottom",
)
_SLOPE = 0.1  # the U-Nets' leaky ReLU


def _has(module: nn.Module | None, names: tuple[str, ...]) -> bool:
    return module is not None and all(
        isinstance(getattr(module, n, None), nn.Module) for n in names
    )


def _unetconv(module: nn.Module) -> bool:
    """Real-CUGAN's ``UNetConv``: ``conv`` (two unpadded 3x3 convs) and ``seblock``."""
    conv = getattr(module, "conv", None)
    return isinstance(conv, nn.Sequential) and hasattr(module, "seblock")


def _is_unet1(m: nn.Module | None) -> bool:
    return (
        _has(m, _UNET1)
        and _unetconv(m.conv1)
        and _unetconv(m.conv2)
        and isinstance(m.conv1_down, nn.Conv2d)
        and isinstance(m.conv2_up, nn.ConvTranspose2d)
        and isinstance(m.conv_bottom, nn.ConvTranspose2d)
    )


def _is_unet2(m: nn.Module | None) -> bool:
    return _has(m, _UNET2) and all(
        _unetconv(getattr(m, n)) for n in ("conv1", "conv2", "conv3", "conv4")
    )


def _afe(channels: int) -> AFEBlock:
    return AFEBlock(channels, identity_init=True)


class _Stages(nn.Module):
    """A U-Net re-run stage by stage with AFE blocks between the stages; ``forward(x, scale)``.

    Holds the original U-Net's own submodules under their own names (so state-dict keys stay
    those of the network) plus ``afe`` (empty with ``afe="none"``). With ``checkpointing`` set
    each stage and each AFE block runs under activation checkpointing while training.
    """

    def __init__(self, unet: nn.Module, names: tuple[str, ...], afe: nn.ModuleList) -> None:
        super().__init__()
        for n in names:
            setattr(self, n, getattr(unet, n))
        self.afe = afe
        self.checkpointing: str | None = None

    def _afe(self, i: int, x: torch.Tensor, scale: ScaleCondition) -> torch.Tensor:
        if len(self.afe) == 0:
            return x
        return maybe_checkpoint(self.afe[i], x, scale, mode=self.checkpointing)

    def _run(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return maybe_checkpoint(module, x, mode=self.checkpointing)


class UNet1Features(_Stages):
    """``unet1`` of Real-CUGAN: conv1 -> (down, conv2 with SE, up) + cropped skip -> conv3,
    then ``conv_bottom`` where it is kept (fast variant: it returns to the input resolution).

    AFE blocks (64 channels) before ``conv2`` and before ``conv3``.
    """

    def __init__(self, unet: nn.Module, afe: nn.ModuleList, keep_bottom: bool) -> None:
        super().__init__(unet, _UNET1 if keep_bottom else _UNET1[:-1], afe)
        self.keep_bottom = keep_bottom

    def forward(self, x: torch.Tensor, scale: ScaleCondition) -> torch.Tensor:
        x1 = self._run(self.conv1, x)
        x2 = F.leaky_relu(self.conv1_down(x1), _SLOPE)
        x1 = x1[:, :, 4:-4, 4:-4]
        x2 = self._run(self.conv2, self._afe(0, x2, scale))
        x2 = F.leaky_relu(self.conv2_up(x2), _SLOPE)
        x3 = F.leaky_relu(self.conv3(self._afe(1, x1 + x2, scale)), _SLOPE)
        return self.conv_bottom(x3) if self.keep_bottom else x3


class UNet2Features(_Stages):
    """``unet2`` of Real-CUGAN (the fast variant's, at the input resolution), ``alpha`` = 1.

    AFE blocks before ``conv2`` (64), ``conv3`` (128), ``conv4`` (128) and ``conv5`` (64).
    """

    def __init__(self, unet: nn.Module, afe: nn.ModuleList) -> None:
        super().__init__(unet, _UNET2, afe)

    def forward(self, x: torch.Tensor, scale: ScaleCondition) -> torch.Tensor:
        x1 = self._run(self.conv1, x)
        x2 = F.leaky_relu(self.conv1_down(x1), _SLOPE)
        x1 = x1[:, :, 16:-16, 16:-16]
        x2 = self._run(self.conv2, self._afe(0, x2, scale))
        x3 = F.leaky_relu(self.conv2_down(x2), _SLOPE)
        x2 = x2[:, :, 4:-4, 4:-4]
        x3 = self._run(self.conv3, self._afe(1, x3, scale))
        x3 = F.leaky_relu(self.conv3_up(x3), _SLOPE)
        x4 = self._run(self.conv4, self._afe(2, x2 + x3, scale))
        x4 = F.leaky_relu(self.conv4_up(x4), _SLOPE)
        x5 = F.leaky_relu(self.conv5(self._afe(3, x1 + x4, scale)), _SLOPE)
        return self.conv_bottom(x5)


class RealCUGANAdapter(Adapter):
    """``UpCunet2x`` / ``UpCunet3x`` (and ``pro``): cut at the input of ``unet1.conv_bottom``."""

    name = "realcugan"
    family = "Real-CUGAN"
    architectures = ("RealCUGAN",)

    #: reflect padding of every side, by the stride of ``unet1.conv_bottom``: (pad, multiple)
    _PADDING: ClassVar[dict[int, tuple[int, int]]] = {2: (18, 2), 3: (14, 4)}

    @classmethod
    def matches(cls, model):
        return (
            _is_unet1(getattr(model, "unet1", None))
            and _is_unet2(getattr(model, "unet2", None))
            and not hasattr(model, "conv_final")
            and _bottom_stride(model) in cls._PADDING
        )

    # -- structure ----------------------------------------------------------------------------
    def padding(self, model: nn.Module) -> tuple[int, int]:
        """The network's reflect padding of every side and the multiple it pads the size to."""
        return self._PADDING[_bottom_stride(model)]

    def border(self, model: nn.Module) -> int:
        """Rows / columns on every side of the cut map that lie outside the image: ``unet1``'s
        unpadded convolutions take 7 of the padding."""
        return self.padding(model)[0] - 7

    def cut_module(self, model: nn.Module) -> nn.Module:
        """The first module of the tail (its input, cropped by :meth:`border`, is the cut)."""
        return model.unet1.conv_bottom

    def cut_reference(
        self, model: nn.Module, ref: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """The LR features in ``ref``, the input of :meth:`cut_module` for an image of
        ``size``: the map covers the padded image less the same margin on every side, so its
        border is read off its own size (independently of :meth:`border`)."""
        mult = self.padding(model)[1]
        border = (ref.shape[-2] - ceil_div(size[0], mult) * mult) // 2
        return _crop(ref, border, size)

    def tail_module(self, model):
        return self.cut_module(model)  # read through cut_reference by check_cut

    def probe_size(self, model):
        return (22, 26)

    def _pro(self, backbone: nn.Module) -> bool:
        return getattr(backbone, "pro", None) is not None

    # -- building -----------------------------------------------------------------------------
    def _build_body(self, model: nn.Module, backbone: nn.Module, per_group: bool) -> None:
        afe = nn.ModuleList([_afe(64), _afe(64)] if per_group else [])
        backbone.unet1 = UNet1Features(model.unet1, afe, keep_bottom=False)
        for name in ("unet2", "conv_final", "ps"):
            backbone._modules.pop(name, None)

    def build(self, model, backbone, settings):
        self._geometry = (*self.padding(model), self.border(model))
        self._build_body(model, backbone, settings["afe"] == "per_group")
        return 64

    def set_checkpointing(self, backbone, mode):
        count = 0
        for m in backbone.modules():
            if isinstance(m, _Stages) and len(m.afe) > 0:
                m.checkpointing = mode
                count += 1
        return count

    # -- running ------------------------------------------------------------------------------
    def input_conv(self, backbone):
        return backbone.unet1.conv1.conv[0]

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """The network's reflect padding of the image (a new tensor)."""
        pad, mult, _ = self._geometry
        h, w = x.shape[-2:]
        return F.pad(x, (pad, pad + pad_to(w, mult), pad, pad + pad_to(h, mult)), mode="reflect")

    def features(self, backbone, lr, scale):
        x = lr * 0.7 + 0.15 if self._pro(backbone) else lr
        feat = backbone.unet1(self._pad(x), scale)
        return _crop(feat, self._geometry[2], (lr.shape[-2], lr.shape[-1]))

    def output_range(self, backbone):
        return 0.7 if self._pro(backbone) else 1.0

    def output(self, backbone, out):
        return (out - 0.15) / 0.7 if self._pro(backbone) else out


class RealCUGAN4xAdapter(RealCUGANAdapter):
    """``UpCunet4x`` (and ``pro``): cut at the input of ``unet1.conv_bottom``; the network
    adds the nearest x4 upsampling of its input after the tail."""

    name = "realcugan_4x"
    family = "Real-CUGAN x4"
    residual = "nearest"

    @classmethod
    def matches(cls, model):
        return (
            _is_unet1(getattr(model, "unet1", None))
            and _is_unet2(getattr(model, "unet2", None))
            and isinstance(getattr(model, "conv_final", None), nn.Conv2d)
            and isinstance(getattr(model, "ps", None), nn.PixelShuffle)
            and not isinstance(getattr(model, "inv", None), nn.PixelUnshuffle)
            and _bottom_stride(model) == 2
        )

    def padding(self, model):
        return (19, 2)


class RealCUGANFastAdapter(RealCUGANAdapter):
    """``UpCunet2x_fast``: pixel-unshuffle front, both U-Nets kept, cut at the input of
    ``conv_final`` (input resolution); nearest x2 residual after the tail."""

    name = "realcugan_fast"
    family = "Real-CUGAN x2 fast"
    residual = "nearest"

    @classmethod
    def matches(cls, model):
        return (
            _is_unet1(getattr(model, "unet1", None))
            and _is_unet2(getattr(model, "unet2", None))
            and isinstance(getattr(model, "conv_final", None), nn.Conv2d)
            and isinstance(getattr(model, "inv", None), nn.PixelUnshuffle)
        )

    def padding(self, model):
        return (38, 4)  # the network pads to a multiple of 2 but only runs on multiples of 4

    def border(self, model):
        return 2  # unet2's unpadded convolutions leave 2 of unet1's 22

    def cut_module(self, model):
        return model.conv_final

    def probe_size(self, model):
        return (44, 48)

    def _pro(self, backbone):
        return False

    def _build_body(self, model, backbone, per_group):
        afe1 = nn.ModuleList([_afe(64), _afe(64)] if per_group else [])
        afe2 = nn.ModuleList([_afe(64), _afe(128), _afe(128), _afe(64)] if per_group else [])
        backbone.unet1 = UNet1Features(model.unet1, afe1, keep_bottom=True)
        backbone.unet2 = UNet2Features(model.unet2, afe2)
        for name in ("conv_final", "ps"):
            backbone._modules.pop(name, None)

    def input_conv(self, backbone):
        return None  # the pixel-unshuffle front reads the image

    def features(self, backbone, lr, scale):
        x = backbone.unet1(backbone.inv(self._pad(lr)), scale)
        x = backbone.unet2(x, scale) + x[:, :, 20:-20, 20:-20]
        return _crop(x, self._geometry[2], (lr.shape[-2], lr.shape[-1]))


def _crop(feat: torch.Tensor, border: int, size: tuple[int, int]) -> torch.Tensor:
    """``feat`` without its ``border`` on every side, ``size`` rows and columns."""
    return feat[:, :, border : border + size[0], border : border + size[1]]


def _bottom_stride(model: nn.Module) -> int | None:
    bottom = getattr(getattr(model, "unet1", None), "conv_bottom", None)
    return int(bottom.stride[0]) if isinstance(bottom, nn.ConvTranspose2d) else None


ADAPTERS = (RealCUGANFastAdapter, RealCUGAN4xAdapter, RealCUGANAdapter)
