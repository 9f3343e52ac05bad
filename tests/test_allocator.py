"""scaleeq.allocator: the glibc setting the CLI applies to its own process; the upsampler's
kernel stays NCHW under a channels-last model."""

from __future__ import annotations

import platform

import pytest
import torch

import scaleeq
from scaleeq import allocator, cli
from scaleeq.layers.latent import nchw_convs

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_glibc_takes_the_setting():
    assert allocator.keep_freed_memory() is True
    assert allocator.keep_freed_memory(trim_bytes=2**20, mmap_bytes=2**20) is True
    # back to roughly glibc's own start for the rest of the test process
    allocator.keep_freed_memory(trim_bytes=128 * 2**10, mmap_bytes=128 * 2**10)


def test_without_glibc_nothing_changes(monkeypatch):
    monkeypatch.setattr(allocator, "_libc", lambda: None)
    assert allocator.keep_freed_memory() is False


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"trim_bytes": 0}, ValueError, "trim_bytes must be an int >= 1"),
        ({"trim_bytes": 1.5}, TypeError, "trim_bytes must be an int"),
        ({"mmap_bytes": True}, TypeError, "mmap_bytes must be an int"),
        ({"mmap_bytes": 64 * 2**20}, ValueError, "mmap_bytes must be at most 33554432"),
    ],
)
def test_bad_sizes_are_named(kwargs, error, message):
    """The wrong kind is a TypeError, a wrong value a ValueError; both name the argument."""
    with pytest.raises(error, match=message):
        allocator.keep_freed_memory(**kwargs)


@pytest.mark.parametrize(("command", "applies"), [("upscale", True), ("export", False)])
def test_the_cli_applies_it_to_rendering_commands_only(monkeypatch, tmp_path, command, applies):
    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    argv = {
        "upscale": ["upscale", str(tmp_path / "missing.png"), str(tmp_path / "o.png")],
        "export": [str(tmp_path / "m.onnx")],
    }[command]
    argv = argv if command == "upscale" else ["export", *argv]
    missing = ["--checkpoint", str(tmp_path / "missing.pt")]
    assert cli.main([*argv, *missing]) == 2  # the checkpoint is missing: a one-line error
    assert calls == ([1] if applies else [])


def test_kernel_stays_nchw_under_channels_last_weights():
    torch.manual_seed(0)
    seq = torch.nn.Sequential(
        torch.nn.Conv2d(8, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 18, 1)
    )
    x = torch.randn(2, 8, 9, 7)
    ref = seq(x)
    seq = seq.to(memory_format=torch.channels_last)
    assert not seq[0](x).is_contiguous()  # what torch gives: the weights' layout
    out = nchw_convs(seq, x)
    assert out.is_contiguous()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_a_channels_last_model_renders_what_the_nchw_model_renders():
    torch.manual_seed(0)
    from scaleeq.models import EDSR

    asr = scaleeq.retrofit(EDSR(num_feat=16, num_block=2, upscale=2)).eval()
    for p in asr.parameters():  # no layer at zero (AFE blocks start as the identity)
        p.data.add_(0.02 * torch.randn_like(p))
    lr = torch.rand(1, 3, 13, 11)
    with torch.no_grad():
        ref = scaleeq.upscale(asr, lr, scale=3.3)
        asr = asr.to(memory_format=torch.channels_last)
        out = scaleeq.upscale(asr, lr.contiguous(memory_format=torch.channels_last), scale=3.3)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
