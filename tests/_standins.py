"""Stand-ins for the SR networks users have, written for these tests.

Each mirrors the attribute names and forward logic of one public layout (BasicSR, the original
EDSR-PyTorch code, SwinIR/HAT as in their official code / BasicSR / spandrel) at toy size; the
Swin stand-ins replace attention by a token MLP, since retrofit never looks inside a group.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

MEAN = (0.4488, 0.4371, 0.4040)


class _Shuffle(nn.Sequential):
    def __init__(self, scale: int, c: int) -> None:
        layers: list[nn.Module] = []
        if scale == 3:
            layers += [nn.Conv2d(c, 9 * c, 3, padding=1), nn.PixelShuffle(3)]
        else:
            for _ in range(scale.bit_length() - 1):
                layers += [nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2)]
        super().__init__(*layers)


class _ResBlockNoBN(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class _CA(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, 2, 1), nn.ReLU(), nn.Conv2d(2, c, 1), nn.Sigmoid()
        )

    def forward(self, x):
        return x * self.attention(x)


class _RCAB(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.rcab = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), _CA(c)
        )

    def forward(self, x):
        return x + self.rcab(x)


class _BasicSRGroup(nn.Module):  # BasicSR ResidualGroup: residual_group + conv
    def __init__(self, c: int, n: int) -> None:
        super().__init__()
        self.residual_group = nn.Sequential(*[_RCAB(c) for _ in range(n)])
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(self.residual_group(x)) + x


class BasicSREDSR(nn.Module):
    """BasicSR's EDSR: ``mean`` is a plain tensor attribute, not a buffer."""

    def __init__(
        self,
        c: int = 8,
        n: int = 4,
        upscale: int = 2,
        img_range: float = 255.0,
        group: bool = False,
    ) -> None:
        super().__init__()
        self.img_range = img_range
        self.mean = torch.Tensor(MEAN).view(1, 3, 1, 1)
        self.conv_first = nn.Conv2d(3, c, 3, padding=1)
        blocks = (
            [_BasicSRGroup(c, 2) for _ in range(n)]
            if group
            else [_ResBlockNoBN(c) for _ in range(n)]
        )
        self.body = nn.Sequential(*blocks)
        self.conv_after_body = nn.Conv2d(c, c, 3, padding=1)
        self.upsample = _Shuffle(upscale, c)
        self.conv_last = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x):
        self.mean = self.mean.type_as(x)
        x = (x - self.mean) * self.img_range
        x = self.conv_first(x)
        res = self.conv_after_body(self.body(x))
        res += x
        x = self.conv_last(self.upsample(res))
        return x / self.img_range + self.mean


def basicsr_rcan(**kw) -> BasicSREDSR:
    """BasicSR's RCAN has EDSR's attributes, with residual groups as the body."""
    return BasicSREDSR(group=True, **kw)


class _MeanShift(nn.Conv2d):
    def __init__(self, rgb_range: float, sign: int) -> None:
        super().__init__(3, 3, 1)
        std = torch.ones(3)
        self.weight.data = torch.eye(3).view(3, 3, 1, 1) / std.view(3, 1, 1, 1)
        self.bias.data = sign * rgb_range * torch.Tensor(MEAN) / std
        for p in self.parameters():
            p.requires_grad = False


class _EPResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(True), nn.Conv2d(c, c, 3, padding=1)
        )
        self.res_scale = 1

    def forward(self, x):
        res = self.body(x).mul(self.res_scale)
        res += x
        return res


class _EPGroup(nn.Module):  # EDSR-PyTorch RCAN ResidualGroup: body = [RCAB..., conv]
    def __init__(self, c: int, n: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*[_RCAB(c) for _ in range(n)], nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x):
        res = self.body(x)
        res += x
        return res


class EDSRPyTorch(nn.Module):
    """The original EDSR-PyTorch EDSR (and RCAN with ``group=True``): input in [0, rgb_range]."""

    def __init__(
        self,
        c: int = 8,
        n: int = 4,
        upscale: int = 2,
        rgb_range: float = 255.0,
        group: bool = False,
    ) -> None:
        super().__init__()
        self.sub_mean = _MeanShift(rgb_range, -1)
        self.add_mean = _MeanShift(rgb_range, 1)
        self.head = nn.Sequential(nn.Conv2d(3, c, 3, padding=1))
        blocks = [_EPGroup(c, 2) for _ in range(n)] if group else [_EPResBlock(c) for _ in range(n)]
        self.body = nn.Sequential(*blocks, nn.Conv2d(c, c, 3, padding=1))
        self.tail = nn.Sequential(_Shuffle(upscale, c), nn.Conv2d(c, 3, 3, padding=1))

    def forward(self, x):
        x = self.sub_mean(x)
        x = self.head(x)
        res = self.body(x)
        res += x
        x = self.tail(res)
        return self.add_mean(x)


class _PatchEmbed(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.embed_dim = c
        self.norm = nn.LayerNorm(c)

    def forward(self, x):
        return self.norm(x.flatten(2).transpose(1, 2))


class _PatchUnEmbed(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.embed_dim = c

    def forward(self, x, x_size):
        return x.transpose(1, 2).reshape(x.shape[0], self.embed_dim, x_size[0], x_size[1])


class _TokenGroup(nn.Module):
    """A residual group on tokens called as ``layer(x, x_size)`` (SwinIR's RSTB signature),
    or ``layer(x, x_size, params)`` (HAT's RHAG), with a conv on the image layout inside."""

    def __init__(self, c: int, hat: bool, use_checkpoint: bool = False) -> None:
        super().__init__()
        self.hat = hat
        self.use_checkpoint = use_checkpoint  # as SwinIR's / HAT's BasicLayer: blocks checkpointed
        self.mlp = nn.Sequential(
            nn.LayerNorm(c), nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c)
        )
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x, x_size, params=None):
        if self.hat:
            assert params is not None and params["attn_mask"].shape[0] > 0
        if self.use_checkpoint and torch.is_grad_enabled():
            t = x + torch.utils.checkpoint.checkpoint(self.mlp, x, use_reentrant=False)
        else:
            t = x + self.mlp(x)
        b, _, c = t.shape
        img = t.transpose(1, 2).reshape(b, c, *x_size)
        return self.conv(img).flatten(2).transpose(1, 2) + x


class SwinLike(nn.Module):
    """SwinIR (``hat=False``) / HAT (``hat=True``) layout with any of the three tails."""

    def __init__(
        self,
        c: int = 8,
        depth: int = 2,
        upscale: int = 2,
        upsampler: str = "pixelshuffle",
        window_size: int = 4,
        hat: bool = False,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.upscale = upscale
        self.upsampler = upsampler
        self.img_range = 1.0
        self.mean = torch.Tensor(MEAN).view(1, 3, 1, 1)
        self.hat = hat
        self.conv_first = nn.Conv2d(3, c, 3, padding=1)
        self.patch_embed = _PatchEmbed(c)
        self.patch_unembed = _PatchUnEmbed(c)
        self.layers = nn.ModuleList(_TokenGroup(c, hat, use_checkpoint) for _ in range(depth))
        self.norm = nn.LayerNorm(c)
        self.conv_after_body = nn.Conv2d(c, c, 3, padding=1)
        if upsampler == "pixelshuffle":
            self.conv_before_upsample = nn.Sequential(
                nn.Conv2d(c, 16, 3, padding=1), nn.LeakyReLU(inplace=True)
            )
            self.upsample = _Shuffle(upscale, 16)
            self.conv_last = nn.Conv2d(16, 3, 3, padding=1)
        elif upsampler == "pixelshuffledirect":
            self.upsample = nn.Sequential(
                nn.Conv2d(c, 3 * upscale**2, 3, padding=1), nn.PixelShuffle(upscale)
            )
        elif upsampler == "nearest+conv":
            self.conv_before_upsample = nn.Sequential(
                nn.Conv2d(c, 16, 3, padding=1), nn.LeakyReLU(inplace=True)
            )
            self.conv_up1 = nn.Conv2d(16, 16, 3, padding=1)
            self.conv_up2 = nn.Conv2d(16, 16, 3, padding=1)
            self.conv_hr = nn.Conv2d(16, 16, 3, padding=1)
            self.conv_last = nn.Conv2d(16, 3, 3, padding=1)
            self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        else:
            raise ValueError(upsampler)

    def check_image_size(self, x):
        _, _, h, w = x.size()
        mod_pad_h = (self.window_size - h % self.window_size) % self.window_size
        mod_pad_w = (self.window_size - w % self.window_size) % self.window_size
        return F.pad(x, (0, mod_pad_w, 0, mod_pad_h), "reflect")

    def calculate_mask(self, x_size):
        return torch.ones((x_size[0] // self.window_size) * (x_size[1] // self.window_size), 1)

    def forward_features(self, x):
        x_size = (x.shape[2], x.shape[3])
        params = {"attn_mask": self.calculate_mask(x_size).to(x.device)} if self.hat else None
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x, x_size, params) if self.hat else layer(x, x_size)
        x = self.norm(x)
        return self.patch_unembed(x, x_size)

    def forward(self, x):
        H, W = x.shape[2:]
        x = self.check_image_size(x)
        self.mean = self.mean.type_as(x)
        x = (x - self.mean) * self.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self.forward_features(x)) + x
        if self.upsampler == "pixelshuffle":
            x = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        elif self.upsampler == "pixelshuffledirect":
            x = self.upsample(x)
        else:
            x = self.conv_before_upsample(x)
            x = self.lrelu(self.conv_up1(F.interpolate(x, scale_factor=2, mode="nearest")))
            if self.upscale == 4:
                x = self.lrelu(self.conv_up2(F.interpolate(x, scale_factor=2, mode="nearest")))
            x = self.conv_last(self.lrelu(self.conv_hr(x)))
        x = x / self.img_range + self.mean
        return x[:, :, : H * self.upscale, : W * self.upscale]


def pre_tail_module(model: nn.Module) -> nn.Module:
    """The first module of each layout's fixed-scale tail (its input = the pre-tail features)."""
    if hasattr(model, "sub_mean"):
        return model.tail
    if hasattr(model, "conv_before_upsample"):
        return model.conv_before_upsample
    return model.upsample
