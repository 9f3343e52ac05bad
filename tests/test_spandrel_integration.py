"""scaleeq files loaded by spandrel (scaleeq.spandrel) and rendered at any scale."""

from __future__ import annotations

import pytest
import torch

spandrel = pytest.importorskip("spandrel")

import scaleeq  # noqa: E402
import scaleeq.spandrel as sqs  # noqa: E402
from scaleeq.models import EDSR  # noqa: E402

from ._helpers import perturbed  # noqa: E402


@pytest.fixture()
def registry():
    reg = spandrel.ArchRegistry()
    for support in spandrel.MAIN_REGISTRY:
        reg.add(support)
    return reg


def _model():
    torch.manual_seed(0)
    net = EDSR.from_preset("baseline", upscale=2, num_feat=16, num_block=2)
    return perturbed(scaleeq.retrofit(net, skip="bicubic"), std=0.01).eval()


def test_a_saved_file_loads_in_spandrel_and_renders_any_scale(tmp_path, registry):
    asr = _model()
    path = tmp_path / "m.safetensors"
    asr.save(path)
    with pytest.raises(spandrel.UnsupportedModelError):
        spandrel.ModelLoader(registry=registry).load_from_file(path)  # not registered yet
    arch = sqs.register(registry, scale=3)
    assert sqs.register(registry) is arch  # once
    desc = spandrel.ModelLoader(registry=registry).load_from_file(path)
    assert isinstance(desc, spandrel.ImageModelDescriptor)
    assert desc.architecture.id == sqs.ARCH_ID and desc.scale == 3 and desc.purpose == "SR"
    x = torch.rand(1, 3, 9, 7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref3, ref = asr(x, scale=3), asr(x, scale=3.3)
    torch.testing.assert_close(desc(x), ref3.clamp(0, 1), atol=0, rtol=0)  # spandrel's call
    torch.testing.assert_close(scaleeq.upscale(desc, x, scale=3.3), ref, atol=1e-6, rtol=0)


def test_register_refuses_a_bad_scale(registry):
    with pytest.raises(ValueError, match="scale must be an int"):
        sqs.register(registry, scale=2.5)
