"""One tiny spandrel model for the retrofit zoo tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ZooCase:
    """A tiny model of one architecture (and tail variant), built with spandrel's own class.

    Attributes:
        id: unique test id, e.g. ``"ESRGAN-x4-unshuffle"``.
        arch: the spandrel architecture id that must detect the state dict (``MAIN_REGISTRY``).
        build: returns a fresh model of spandrel's own class, tiny, randomly initialised
            (the harness seeds the global generator before calling it and perturbs every
            parameter, so no layer starts at zero).
        cut: dotted name (``model.get_submodule``) of the module whose *input* in the model's
            own forward is the LR feature map at the cut point (the first module of the tail).
        layout: the adapter name ``retrofit`` must pick.
        lr: an LR input size ``(h, w)`` the architecture accepts (prefer odd, non-square sizes
            where it pads internally).
        stride: the feature map's stride over the input (pixel-unshuffle fronts: 2 or 4).
        onnx: ``True`` if the ONNX export must match eager; else the documented reason why not.
        compile: ``True`` if ``torch.compile`` must work; else the documented reason why not.
        residual: the architecture's own global skip after its tail that ``skip="auto"`` carries
            (``"nearest"`` / ``"bilinear"`` / ``"bicubic"``), or ``None``.
        atol: tolerance of the cut-point feature comparison.
        cut_map: how the LR feature map sits inside the hooked input of ``cut``, as
            ``cut_map(ref, (h, w))``; default: its top-left ``ceil(h / stride)`` x
            ``ceil(w / stride)`` (networks that pad to a multiple crop after the tail). Written
            from the architecture's code, independently of the adapter.
    """

    id: str
    arch: str
    build: Callable[[], nn.Module]
    cut: str
    layout: str
    lr: tuple[int, int] = (11, 9)
    stride: int = 1
    onnx: bool | str = True
    compile: bool | str = True
    residual: str | None = None
    atol: float = 1e-5
    cut_map: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor] | None = None
