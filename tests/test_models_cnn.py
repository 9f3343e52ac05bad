"""scaleeq's own fixed-scale CNN backbones: EDSR and RCAN."""

from __future__ import annotations

import pytest
import torch

from scaleeq.models import EDSR, RCAN


@pytest.mark.parametrize("cls", [EDSR, RCAN])
@pytest.mark.parametrize("upscale", [2, 3, 4])
def test_shapes_and_rebuild_from_config(cls, upscale):
    model = cls.from_preset("tiny", upscale=upscale)
    x = torch.rand(2, 3, 7, 5)
    assert model(x).shape == (2, 3, 7 * upscale, 5 * upscale)
    rebuilt = cls(**model.config)
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt(x), model(x))


def test_edsr_baseline_parameter_count():
    # EDSR-baseline x4 has about 1.5 M parameters (Lim et al., 2017, Table 1)
    n = sum(p.numel() for p in EDSR.from_preset("baseline", upscale=4).parameters())
    assert 1.45e6 < n < 1.55e6


def test_mean_is_restored_at_init_scale():
    # With a zero last conv the output is exactly the mean image: the normalisation round-trips.
    model = EDSR.from_preset("tiny", upscale=2)
    torch.nn.init.zeros_(model.conv_last.weight)
    torch.nn.init.zeros_(model.conv_last.bias)
    y = model(torch.rand(1, 3, 4, 4))
    torch.testing.assert_close(y, model.mean.expand_as(y))


class TestErrors:
    @pytest.mark.parametrize("cls", [EDSR, RCAN])
    def test_bad_preset_and_upscale(self, cls):
        with pytest.raises(ValueError, match="preset must be one of"):
            cls.from_preset("huge")
        with pytest.raises(ValueError, match="upscale must be a power of 2 or 3"):
            cls.from_preset("tiny", upscale=5)

    def test_bad_input(self):
        model = EDSR.from_preset("tiny")
        with pytest.raises(ValueError, match="x must have 3 channels"):
            model(torch.rand(1, 4, 5, 5))
        with pytest.raises(ValueError, match="4-D"):
            model(torch.rand(3, 5, 5))
