"""Small helpers shared by the test files."""

from __future__ import annotations

import torch
from torch import nn


def perturbed(module: nn.Module, std: float = 0.05, seed: int = 0) -> nn.Module:
    """``module`` with ``std``-scaled Gaussian noise added to every parameter (seeded, in each
    parameter's dtype), so that zero- or identity-initialised parts matter. The module's
    train / eval mode is left as it is."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module
