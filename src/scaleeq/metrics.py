"""Evaluation metrics of the SR protocol: PSNR and SSIM on the Y channel, and EQ_S (Eq. 6).

All functions take RGB images in [0, 1] as ``(B, 3, H, W)`` tensors and return one value per
image, ``(B,)`` float64. The luma is ITU-R BT.601 studio range, as in MATLAB's ``rgb2ycbcr``:
``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` (in [16, 235] on the 0-255 scale).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_tensor
from .contracts import is_sr_model
from .resize import imresize
from .scale import parse_scale

__all__ = ["eq_s", "psnr_y", "rgb_to_y", "shave", "ssim_y"]


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """BT.601 luma on the 0-255 scale: ``(B, 3, H, W)`` in [0, 1] -> ``(B, 1, H, W)``."""
    check_tensor(img, "img", ndim=4, layout="(B, 3, H, W)")
    if img.shape[1] != 3:
        raise ValueError(f"img must have 3 (RGB) channels, got {img.shape[1]}")
    w = img.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1)
    return 16.0 + (img * w).sum(dim=1, keepdim=True)


def _crop_pair(scale: object | None, crop: int | tuple[int, int] | None) -> tuple[int, int]:
    if crop is not None:
        if isinstance(crop, int) and not isinstance(crop, bool):
            return crop, crop
        if isinstance(crop, tuple) and len(crop) == 2 and all(isinstance(c, int) for c in crop):
            return crop
        raise TypeError(f"crop must be an int or a pair of ints, got {crop!r}")
    if scale is None:
        return 0, 0
    r = parse_scale(scale, dtype=torch.float64)
    if r.shape[0] != 1:
        raise ValueError("scale must be one number or pair here (the border crop is shared)")
    return math.ceil(float(r[0, 0])), math.ceil(float(r[0, 1]))


def shave(img: torch.Tensor, crop: tuple[int, int]) -> torch.Tensor:
    """Remove ``crop = (ch, cw)`` pixels from every border of ``(..., H, W)``."""
    ch, cw = crop
    h, w = img.shape[-2:]
    if 2 * ch >= h or 2 * cw >= w:
        raise ValueError(f"crop {crop} leaves nothing of an image of size {(h, w)}")
    return img[..., ch : h - ch, cw : w - cw]


def _pair(sr: torch.Tensor, hr: torch.Tensor) -> None:
    check_tensor(sr, "sr", ndim=4, layout="(B, 3, H, W)")
    check_tensor(hr, "hr", ndim=4, layout="(B, 3, H, W)")
    if sr.shape != hr.shape:
        raise ValueError(
            f"sr and hr must have the same shape, got {tuple(sr.shape)} and {tuple(hr.shape)}"
        )


def psnr_y(
    sr: torch.Tensor,
    hr: torch.Tensor,
    *,
    scale: object | None = None,
    crop: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """PSNR (dB) on the Y channel, per image, with ``crop`` border pixels removed.

    Args:
        sr, hr: ``(B, 3, H, W)`` RGB in [0, 1].
        scale: the SR factor; the default crop is ``ceil(scale)`` per axis.
        crop: explicit border crop (int or pair), overrides ``scale``.

    Returns:
        ``(B,)`` float64; ``inf`` for identical images.
    """
    _pair(sr, hr)
    border = _crop_pair(scale, crop)
    ys = shave(rgb_to_y(sr.double()), border)
    yh = shave(rgb_to_y(hr.double()), border)
    mse = (ys - yh).square().mean(dim=(1, 2, 3))
    return 10 * torch.log10(255.0**2 / mse)


def _gaussian_filter(x: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Valid (unpadded) 2-D Gaussian filtering of ``(B, 1, H, W)``, as two 1-D passes."""
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = (g / g.sum()).to(device=x.device, dtype=x.dtype)
    return F.conv2d(F.conv2d(x, g.view(1, 1, size, 1)), g.view(1, 1, 1, size))


def ssim_y(
    sr: torch.Tensor,
    hr: torch.Tensor,
    *,
    scale: object | None = None,
    crop: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """SSIM (Wang et al., 2004) on the Y channel (0-255), per image.

    The standard form: an 11x11 Gaussian window with sigma 1.5, ``C1 = (0.01 * 255)^2``,
    ``C2 = (0.03 * 255)^2``, statistics over the *valid* window positions only (no padding),
    averaged — as in the authors' MATLAB code and BasicSR.

    Returns:
        ``(B,)`` float64 in [-1, 1]; 1 for identical images.
    """
    _pair(sr, hr)
    border = _crop_pair(scale, crop)
    x = shave(rgb_to_y(sr.double()), border)
    y = shave(rgb_to_y(hr.double()), border)
    if min(x.shape[-2:]) < 11:
        raise ValueError(
            f"ssim_y needs images of at least 11x11 after cropping, got {tuple(x.shape[-2:])}"
        )
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y = _gaussian_filter(x), _gaussian_filter(y)
    sxx = _gaussian_filter(x * x) - mu_x**2
    syy = _gaussian_filter(y * y) - mu_y**2
    sxy = _gaussian_filter(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean(dim=(1, 2, 3))


@torch.no_grad()
def eq_s(model: nn.Module, x: torch.Tensor, scale: float) -> torch.Tensor:
    """Scale-equivariance score EQ_S (EQSR, Eq. 6), per image, in dB.

    ``PSNR_Y(phi(f(x; r)), f(phi(x; r)))`` with ``phi`` the model at scale ``r`` and ``f``
    MATLAB-bicubic downscaling by ``r``: "downscale then super-resolve" against "super-resolve
    then downscale". Both are images of ``x``'s size; border ``ceil(r)`` cropped.

    Args:
        model: an ``ArbitraryScaleSR``-like model (rendered tile by tile with
            :func:`scaleeq.upscale`, so memory stays bounded at large ``r``), or any callable
            ``model(lr, size=(H, W))``.
        x: ``(B, 3, H, W)`` in [0, 1].
        scale: ``r`` (> 1).
    """
    check_tensor(x, "x", ndim=4, layout="(B, 3, H, W)")
    if (
        isinstance(scale, bool)
        or not isinstance(scale, int | float)
        or not math.isfinite(scale)
        or scale <= 1
    ):
        raise ValueError(f"scale must be a number > 1, got {scale!r}")
    h, w = x.shape[-2:]
    small = (max(1, round(h / scale)), max(1, round(w / scale)))
    large = (round(h * scale), round(w * scale))

    def phi(lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if is_sr_model(model):  # tiled: bounded memory
            from .infer import upscale

            return upscale(model, lr, size=size)
        return model(lr, size=size)

    down_then_up = phi(imresize(x, size=small).clamp(0, 1), (h, w)).clamp(0, 1)
    up_then_down = imresize(phi(x, large).clamp(0, 1), size=(h, w)).clamp(0, 1)
    return psnr_y(down_then_up, up_then_down, scale=scale)
