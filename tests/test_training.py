"""The Fig. 4 data pipeline and the training loop: determinism, learning, exact resume, DDP."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from scaleeq import NeuralKrigingUpsampler, retrofit
from scaleeq.data import ArbitraryScalePatches
from scaleeq.demo import synthetic_images
from scaleeq.models import EDSR
from scaleeq.training import train


def images(n=4, size=72):
    return list(synthetic_images(n, size, generator=torch.Generator().manual_seed(1)))


def tiny_model():
    torch.manual_seed(0)
    return retrofit(
        EDSR.from_preset("tiny", upscale=2),
        upsampler=NeuralKrigingUpsampler(16, hidden=16, blocks=1),
    )


class TestPatches:
    def test_shapes_scale_range_and_window(self):
        ds = ArbitraryScalePatches(
            images(), patch=16, scale_range=(1.5, 3.0), samples_per_epoch=40, per_axis=True
        )
        scales = []
        for i in range(len(ds)):
            item = ds[i]
            assert item["lr"].shape == (3, 16, 16) and item["hr"].shape == (3, 16, 16)
            crop = (item["scale"] * 16).round()
            assert bool(((item["scale"] * 16 - crop).abs() < 1e-9).all())  # exact crop ratio
            assert 0 <= int(item["top"]) <= crop[0] - 16 and 0 <= int(item["left"]) <= crop[1] - 16
            scales.append(item["scale"])
        s = torch.stack(scales)
        assert float(s.min()) >= 1.5 - 1 / 32 and float(s.max()) <= 3.0 + 1 / 32
        assert bool((s[:, 0] != s[:, 1]).any())  # per-axis scales

    def test_deterministic_and_epoch_dependent(self):
        a = ArbitraryScalePatches(images(), patch=16, seed=3)
        b = ArbitraryScalePatches(images(), patch=16, seed=3)
        for i in (0, 5):
            assert all(torch.equal(a[i][k], b[i][k]) for k in a[i])
        b.set_epoch(1)
        assert not torch.equal(a[0]["lr"], b[0]["lr"])
        assert not torch.equal(
            a[0]["lr"], ArbitraryScalePatches(images(), patch=16, seed=4)[0]["lr"]
        )

    def test_target_is_the_window_of_the_lr_source_crop(self):
        from scaleeq.resize import imresize

        img = images(1, 64)[0]
        ds = ArbitraryScalePatches([img], patch=16, augment=False, scale_range=(2, 2))
        item = ds[0]
        assert item["scale"].tolist() == [2.0, 2.0]
        top, left = int(item["top"]), int(item["left"])
        hits = [
            (y, x)
            for y in range(64 - 15)
            for x in range(64 - 15)
            if torch.equal(img[:, y : y + 16, x : x + 16], item["hr"])
        ]
        assert hits, "the target is a window of the source image"
        # the LR is the MATLAB-bicubic downscale of the 32x32 crop that holds the window
        assert any(
            0 <= y - top <= 32 and 0 <= x - left <= 32
            and torch.allclose(
                imresize(img[:, y - top : y - top + 32, x - left : x - left + 32],
                         size=(16, 16)).clamp(0, 1),
                item["lr"],
            )
            for y, x in hits
        )  # fmt: skip

    def test_errors(self):
        with pytest.raises(ValueError, match="scale_range"):
            ArbitraryScalePatches(images(), scale_range=(0.5, 2))
        with pytest.raises(ValueError, match="source\\[0\\] must be a \\(3, H, W\\) tensor"):
            ArbitraryScalePatches([torch.rand(4, 4)])
        with pytest.raises(ValueError, match="does not exist"):
            ArbitraryScalePatches("/nonexistent/folder")
        with pytest.raises(ValueError, match="smaller than the patch"):
            ArbitraryScalePatches([torch.rand(3, 10, 10)], patch=16)[0]


def test_twenty_steps_lower_the_loss():
    ds = ArbitraryScalePatches(images(), patch=16, samples_per_epoch=64)
    result = train(
        tiny_model(), ds, steps=20, batch_size=4, lr=1e-3, progress=False, log=lambda m: None
    )
    assert len(result.losses) == 20
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < 0.8 * first


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    ds = ArbitraryScalePatches(images(), patch=16, samples_per_epoch=32)
    kw = {"batch_size": 4, "lr": 1e-3, "progress": False, "log": lambda m: None, "ema_decay": 0.9}
    full = train(tiny_model(), ds, steps=10, **kw)
    ck = tmp_path / "state.pt"
    first = train(tiny_model(), ds, steps=6, checkpoint=ck, **kw)
    second = train(tiny_model(), ds, steps=10, checkpoint=ck, **kw)  # a new process would do this
    assert second.start_step == 6 and second.end_step == 10
    assert first.losses + second.losses == full.losses
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporaries


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        ds = ArbitraryScalePatches(images(), patch=16, samples_per_epoch=32)
        model = tiny_model()
        res = train(model, ds, steps=3, batch_size=4, lr=1e-3, progress=False, log=lambda m: None)
        torch.save({"losses": res.losses, "weights": model.state_dict()}, f"{out}.{rank}")
    finally:
        torch.distributed.destroy_process_group()


def test_two_process_gloo_ddp_matches_single_process(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "ddp")
    mp.spawn(_ddp_worker, args=(2, port, out), nprocs=2, join=True)
    r0, r1 = torch.load(f"{out}.0"), torch.load(f"{out}.1")
    single_model = tiny_model()
    ds = ArbitraryScalePatches(images(), patch=16, samples_per_epoch=32)
    single = train(
        single_model, ds, steps=3, batch_size=4, lr=1e-3, progress=False, log=lambda m: None
    )
    # both ranks hold the same weights, and the same as one process on the whole batch
    for k, v in r0["weights"].items():
        assert torch.equal(v, r1["weights"][k]), k
        torch.testing.assert_close(v, single_model.state_dict()[k], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        torch.tensor(r0["losses"]), torch.tensor(single.losses), rtol=1e-4, atol=1e-6
    )


def test_bf16_training_keeps_fp32_master_weights_and_learns(tmp_path):
    ds = ArbitraryScalePatches(images(), patch=16, samples_per_epoch=64)
    runs = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = tiny_model()
        ck = tmp_path / f"{precision}.pt"
        result = train(
            model, ds, steps=20, batch_size=4, lr=1e-3, progress=False, log=lambda m: None,
            precision=precision, checkpoint=ck,
        )  # fmt: skip
        assert all(p.dtype == torch.float32 for p in model.parameters())
        state = torch.load(ck, weights_only=False)["optimizer"]["state"]
        assert all(
            v.dtype == torch.float32 for s in state.values() for k, v in s.items() if k != "step"
        )
        runs[precision] = result.losses
    bf16 = runs["bf16"]
    assert sum(bf16[-5:]) / 5 < 0.8 * sum(bf16[:5]) / 5  # it learns
    assert bf16 != runs["fp32"]  # and it did run at the lower precision


def test_fp16_training_and_unknown_precisions_are_refused():
    ds = ArbitraryScalePatches(images(), patch=16, samples_per_epoch=64)
    with pytest.raises(ValueError, match="fp16.*not supported for training.*bf16"):
        train(tiny_model(), ds, steps=1, batch_size=4, progress=False, precision="fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        train(tiny_model(), ds, steps=1, batch_size=4, progress=False, precision="half")
