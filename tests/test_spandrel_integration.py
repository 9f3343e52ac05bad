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


def test_a_spandrel_rcan_file_of_the_edsr_pytorch_layout_keeps_loading(tmp_path):
    """Before spandrel's RCAN had its own adapter, retrofit took it as EDSR-PyTorch; such
    files store ``layout="edsr_pytorch"`` and must load with the same outputs."""
    from spandrel.architectures.RCAN import RCAN

    torch.manual_seed(0)
    net = perturbed(RCAN(scale=2, n_resgroups=2, n_resblocks=1, n_feats=16, reduction=4), 0.02)
    old = perturbed(scaleeq.retrofit(net, layout="edsr_pytorch"), std=0.01).eval()
    assert old.layout == "edsr_pytorch" and scaleeq.retrofit(net).layout == "rcan"
    old.source = None  # an old file: no spandrel record
    old.save(tmp_path / "old.pt")
    fresh = RCAN(scale=2, n_resgroups=2, n_resblocks=1, n_feats=16, reduction=4)
    back = scaleeq.load(tmp_path / "old.pt", model=fresh).eval()
    assert back.layout == "edsr_pytorch"
    x = torch.rand(1, 3, 7, 6)
    with torch.no_grad():
        assert torch.equal(back(x, scale=2.6), old(x, scale=2.6))
        # the same features as the new adapter gives
        new = scaleeq.retrofit(net, afe="none")
        torch.testing.assert_close(
            scaleeq.retrofit(net, layout="edsr_pytorch", afe="none").features(x, 2.6),
            new.features(x, 2.6),
        )


def test_an_edited_header_that_passes_every_check_is_still_refused(tmp_path):
    """The metadata tensor (for state-dict loaders) and the file's header must agree."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    asr = _model()
    path = tmp_path / "m.safetensors"
    asr.save(path)
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["scaleeq"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    meta["upsampler"]["config"]["backend"] = "reference"  # a valid value, another model
    save_file(tensors, str(path), metadata={"scaleeq": json.dumps(meta)})
    with pytest.raises(ValueError, match="is damaged: its metadata tensor"):
        scaleeq.load(path)


def test_span_fused_once_for_export_gives_the_same_outputs():
    """SPAN's Conv3XC re-fuses its weights through ``.data`` on every eval call (untraceable);
    ``prepare_export`` fuses once in the export's copy and must not change any output."""
    import copy

    from spandrel.architectures.SPAN import SPAN

    torch.manual_seed(0)
    net = perturbed(SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2), std=0.02)
    desc = spandrel.ModelLoader().load_from_state_dict(net.state_dict())
    asr = perturbed(scaleeq.retrofit(desc), std=0.01, seed=1).eval()
    fused = copy.deepcopy(asr)
    fused.adapter.prepare_export(fused.backbone)
    convs = [m for m in fused.backbone.modules() if type(m).__name__ == "Conv3XC"]
    assert convs
    storage = convs[0].eval_conv.weight.data_ptr()
    lr = torch.rand(2, 3, 11, 9, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = fused(lr, scale=2.7)
        want = asr(lr, scale=2.7)
    assert convs[0].eval_conv.weight.data_ptr() == storage  # no longer rewritten per call
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
