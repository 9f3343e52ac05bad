"""The Fig. 4 data pipeline and the training loop: determinism, learning, exact resume, DDP."""

from __future__ import annotations

import os
import re
import select
import socket
import struct
import sys
from fractions import Fraction
from typing import ClassVar

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

import scaleeq.training as training
from scaleeq import NeuralKrigingUpsampler, retrofit
from scaleeq.data import ArbitraryScalePatches
from scaleeq.demo import synthetic_images
from scaleeq.models import EDSR
from scaleeq.training import _batch, save_atomic, train


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


# -- Tests written for surviving mutants of training.py (docs/testing.md) -----------------------
# Each states an invariant or compares with an independent reference (a plain-torch training
# loop written here, hand-computed schedules, the documented defaults); none takes its expected
# value from the code under test. Everything is tiny: 4x4 patches, a model with a few dozen
# weights, a few steps.


P = 4  # patch (LR patch and rendered window)
N = 5  # samples per epoch: batches of a few steps cross an epoch boundary


def _patches(cls=ArbitraryScalePatches):
    g = torch.Generator().manual_seed(0)
    imgs = [torch.rand(3, 10, 9, generator=g) for _ in range(3)]
    return cls(imgs, patch=P, scale_range=(1.0, 2.0), per_axis=True, samples_per_epoch=N)


class _Recording(ArbitraryScalePatches):
    """The real dataset, remembering which ``(epoch, index)`` samples were drawn."""

    def sample(self, epoch, index):
        self.__dict__.setdefault("calls", []).append((epoch, index))
        return super().sample(epoch, index)


class Tiny(nn.Module):
    """``model(lr, scale=(B, 2), window=(top, left, P, P))`` with every input used; ``first``
    only takes part in the first forward of the model's life (counted by the integer buffer
    ``calls``, which is part of the state)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.mix = nn.Parameter(0.3 * torch.randn(3, 3, generator=g))
        self.bias = nn.Parameter(0.1 * torch.randn(3, generator=g))
        self.by_scale = nn.Parameter(torch.tensor(0.2))
        self.first = nn.Parameter(torch.tensor(0.5))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, lr, *, scale, window):
        top, left, ph, pw = window
        pos = scale.float().mean(1) + 0.01 * (top + left).float()
        out = torch.einsum("oc,bchw->bohw", self.mix, lr) + self.bias.view(1, 3, 1, 1)
        out = out + self.by_scale * pos.view(-1, 1, 1, 1)
        if int(self.calls) == 0:
            out = out + self.first
        self.calls += 1
        return out[..., :ph, :pw]


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_states_close(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


def _reference(model, ds, *, steps, batch_size, lr, lr_step, lr_gamma, ema_decay, part=(0, 1)):
    """Plain torch: Adam (0.9, 0.999), StepLR, L1 on the window, global batch ``t`` = samples
    ``t*B .. t*B+B-1`` of the epoch-after-epoch stream (``part=(rank, world)``: that rank's
    slice). Returns the losses and the EMA after each step."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=lr_step, gamma=lr_gamma)
    ema = _state(model)
    losses, emas = [], {}
    rank, world = part
    per = batch_size // world
    for t in range(steps):
        first = t * batch_size + rank * per
        items = [ds.sample(g // N, g % N) for g in range(first, first + per)]
        b = {k: torch.stack([it[k] for it in items]) for k in items[0]}
        out = model(b["lr"], scale=b["scale"], window=(b["top"], b["left"], P, P))
        loss = F.l1_loss(out, b["hr"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for k, v in model.state_dict().items():
                if v.is_floating_point():
                    ema[k] = ema_decay * ema[k] + (1 - ema_decay) * v
                else:
                    ema[k] = v.clone()
        losses.append(loss.item())
        emas[t + 1] = {k: v.clone() for k, v in ema.items()}
    return losses, emas


def _quiet(**kw):
    return {"progress": False, "log": lambda m: None} | kw


# -- _batch -------------------------------------------------------------------------------------


class _Stub:
    """Dataset stand-in whose samples say which ``(epoch, index)`` they are."""

    patch = P

    def __len__(self):
        return N

    def sample(self, epoch, index):
        return {"id": torch.tensor([epoch, index])}


@pytest.mark.parametrize(
    ("step", "batch_size", "rank", "world"),
    [(0, 1, 0, 1), (3, 3, 0, 1), (2, 4, 1, 2), (1, 6, 2, 3)],
)
def test_batch_is_this_ranks_slice_of_the_global_batch(step, batch_size, rank, world):
    # global batch t = samples t*B .. t*B+B-1 of the stream (epoch g // n, index g % n); rank r
    # of w takes the r-th of w equal slices; a batch of one sample works
    per = batch_size // world
    first = step * batch_size + rank * per
    want = [[g // N, g % N] for g in range(first, first + per)]
    got = _batch(_Stub(), step, batch_size, rank, world)
    assert list(got) == ["id"]
    assert got["id"].tolist() == want


# -- the training loop against a plain-torch reference ----------------------------------------


def test_train_equals_a_plain_torch_loop_with_ema_and_evaluation(tmp_path):
    # 3 steps of 2 samples (crossing an epoch), lr halved... quartered after 2 steps, EMA 0.75,
    # an evaluation after step 2 and at the end: same losses, weights and EMA as the reference;
    # evaluate_fn sees the EMA weights and training goes on from the live ones
    kw = {"steps": 3, "batch_size": 2, "lr": 0.05, "lr_step": 2, "lr_gamma": 0.25}
    ref_model = Tiny()
    ref_losses, ref_emas = _reference(ref_model, _patches(), ema_decay=0.75, **kw)
    model, ck = Tiny(), tmp_path / "state.pt"
    res = train(
        model, _patches(), ema_decay=0.75, checkpoint=ck, evaluate_fn=_state, eval_every=2,
        **_quiet(**kw),
    )  # fmt: skip
    torch.testing.assert_close(torch.tensor(res.losses), torch.tensor(ref_losses))
    assert (res.start_step, res.end_step) == (0, 3)
    _assert_states_close(_state(model), _state(ref_model))  # live weights restored after eval
    assert [s for s, _ in res.evaluations] == [2, 3]
    for step, seen in res.evaluations:
        _assert_states_close(seen, ref_emas[step])
    state = torch.load(ck, weights_only=False)
    assert state["step"] == 3
    _assert_states_close(state["ema"], ref_emas[3])
    _assert_states_close(state["model"], _state(ref_model))
    assert model.training  # back in training mode after evaluate_fn


def test_documented_defaults(tmp_path, capsys):
    # batch_size=16, lr=2e-4, lr_step=200_000, lr_gamma=0.5, Adam (0.9, 0.999), eval_every=0
    # (evaluate only at the end), progress=True (a tqdm bar on stderr)
    ds, ck = _patches(_Recording), tmp_path / "state.pt"
    res = train(Tiny(), ds, steps=2, checkpoint=ck, evaluate_fn=lambda m: 0, log=lambda m: None)
    assert ds.calls == [(g // N, g % N) for g in range(32)]
    assert [s for s, _ in res.evaluations] == [2]
    assert "train: 100%" in capsys.readouterr().err
    state = torch.load(ck, weights_only=False)
    group = state["optimizer"]["param_groups"][0]
    assert (group["lr"], tuple(group["betas"])) == (2e-4, (0.9, 0.999))
    assert (state["scheduler"]["step_size"], state["scheduler"]["gamma"]) == (200_000, 0.5)


def test_default_checkpoint_every_is_1000(tmp_path, monkeypatch):
    # a run interrupted at step 999 goes on to 1000: saved at 1000 (every 1000) and at the end
    ck = tmp_path / "state.pt"
    train(Tiny(), _patches(), steps=1, batch_size=1, checkpoint=ck, **_quiet())
    state = torch.load(ck, weights_only=False)
    state["step"] = 999
    torch.save(state, ck)
    saved = []
    monkeypatch.setattr(training, "save_atomic", lambda obj, path: saved.append(obj["step"]))
    train(Tiny(), _patches(), steps=1000, batch_size=1, checkpoint=ck, **_quiet())
    assert saved == [1000, 1000]


# -- checkpoints and resuming ------------------------------------------------------------------


def test_resume_equals_one_run_and_logs_it(tmp_path):
    # 4 steps in one go == 2 steps + resume to 4: losses, weights, EMA, optimizer, scheduler and
    # step in the checkpoint; the resumed run says so; a run with nothing left to do trains
    # nothing and logs only the resume
    kw = _quiet(batch_size=2, lr=0.05, lr_step=3, lr_gamma=0.5, ema_decay=0.75)
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    full = train(Tiny(), _patches(), steps=4, checkpoint=one, **kw)
    logs = []
    kw["log"] = logs.append
    first = train(Tiny(), _patches(), steps=2, checkpoint=two, **kw)
    assert re.fullmatch(r"trained steps 0\.\.2 in \d+s, last loss \d\.\d{4}", logs[-1])
    assert logs[-1].endswith(f"last loss {first.losses[-1]:.4f}")
    logs.clear()
    second = train(Tiny(), _patches(), steps=4, checkpoint=two, **kw)
    assert logs[0] == f"resumed from {two} at step 2" and len(logs) == 2
    assert logs[1].startswith("trained steps 2..4 in ")
    assert (second.start_step, second.end_step) == (2, 4)
    assert first.losses + second.losses == full.losses
    a, b = torch.load(one, weights_only=False), torch.load(two, weights_only=False)
    assert a["step"] == b["step"] == 4
    assert a["scheduler"] == b["scheduler"]
    for key in ("model", "ema"):
        _assert_states_close(a[key], b[key])
    for p, q in zip(
        a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True
    ):
        _assert_states_close(p, q)
    logs.clear()
    done = train(Tiny(), _patches(), steps=4, checkpoint=two, **kw)
    assert (done.losses, done.start_step, done.end_step) == ([], 4, 4)
    assert logs == [f"resumed from {two} at step 4"]


def test_resume_without_ema_from_a_checkpoint_with_ema(tmp_path):
    # ema_decay=None ignores the checkpoint's EMA instead of updating it with no decay
    ck = tmp_path / "state.pt"
    train(Tiny(), _patches(), steps=1, batch_size=1, ema_decay=0.5, checkpoint=ck, **_quiet())
    res = train(Tiny(), _patches(), steps=2, batch_size=1, checkpoint=ck, **_quiet())
    assert len(res.losses) == 1 and torch.load(ck, weights_only=False)["ema"] is None


def test_checkpoint_written_on_a_gpu_resumes_on_the_cpu(tmp_path, monkeypatch):
    # torch.load maps the saved tensors to `device`: a file whose tensors are tagged cuda:0
    # (as written on a GPU machine) resumes on a CPU-only machine
    ck = tmp_path / "state.pt"
    train(Tiny(), _patches(), steps=1, batch_size=1, checkpoint=ck, **_quiet())
    state = torch.load(ck, weights_only=False)
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(state, ck)
    res = train(Tiny(), _patches(), steps=2, batch_size=1, checkpoint=ck, **_quiet())
    assert (res.start_step, res.end_step) == (1, 2)


class _WithExtraState(Tiny):
    """A model whose state_dict carries a Python object (nn.Module extra state)."""

    def get_extra_state(self):
        return {"ratio": Fraction(2, 3)}

    def set_extra_state(self, state):
        self.loaded = state


def test_checkpoint_holding_python_objects_resumes(tmp_path):
    # the training state is the whole pickle (not weights-only): module extra state survives
    ck = tmp_path / "state.pt"
    train(_WithExtraState(), _patches(), steps=1, batch_size=1, checkpoint=ck, **_quiet())
    model = _WithExtraState()
    res = train(model, _patches(), steps=2, batch_size=1, checkpoint=ck, **_quiet())
    assert res.start_step == 1 and model.loaded == {"ratio": Fraction(2, 3)}


def test_checkpoint_and_evaluation_cadence(tmp_path, monkeypatch):
    # checkpoint_every=3 over 7 steps: saved at 3, 6 and the end (7); 0: only at the end.
    # eval_every=3: evaluated at 3, 6, 7 over 7 steps, at 3, 6 over 6 (not twice at the end)
    saved = []
    monkeypatch.setattr(training, "save_atomic", lambda obj, path: saved.append(obj["step"]))
    ck, kw = tmp_path / "state.pt", _quiet(batch_size=1, evaluate_fn=lambda m: "ok")
    res = train(Tiny(), _patches(), steps=7, checkpoint=ck, checkpoint_every=3, eval_every=3, **kw)
    assert saved == [3, 6, 7]
    assert res.evaluations == [(3, "ok"), (6, "ok"), (7, "ok")]
    saved.clear()
    res = train(Tiny(), _patches(), steps=6, checkpoint=ck, checkpoint_every=0, eval_every=3, **kw)
    assert saved == [6]
    assert res.evaluations == [(3, "ok"), (6, "ok")]


def test_save_atomic_creates_missing_folders(tmp_path):
    path = tmp_path / "a" / "b" / "state.pt"
    save_atomic({"x": torch.arange(3)}, path)
    assert torch.load(path)["x"].tolist() == [0, 1, 2]


# -- arguments and devices ---------------------------------------------------------------------


def test_argument_errors_name_the_argument():
    model, ds = Tiny(), _patches()
    bad = [
        ({"steps": -1}, r"^steps must be an int >= 0"),
        ({"batch_size": 0}, r"^batch_size must be an int >= 1"),
        ({"checkpoint_every": -1}, r"^checkpoint_every must be an int >= 0"),
        ({"eval_every": -1}, r"^eval_every must be an int >= 0"),
        ({"lr_step": 0}, r"^lr_step must be an int >= 1"),
        ({"lr": 0.0}, r"^lr must be a finite number > 0"),
    ] + [({"ema_decay": d}, r"^ema_decay must be a float in \(0, 1\)") for d in (0.0, 1.0, 1.5)]
    for kw, match in bad:
        with pytest.raises(ValueError, match=match):
            train(model, ds, **({"steps": 1} | kw), **_quiet())
    # zero steps and zero cadences are allowed
    res = train(model, ds, steps=0, checkpoint_every=0, eval_every=0, **_quiet())
    assert (res.losses, res.end_step) == ([], 0)


def test_model_goes_to_the_device():
    # device="meta": the model is moved there (before anything is computed)
    model = Tiny()
    train(model, _patches(), steps=0, device="meta", **_quiet())
    assert {t.device.type for t in _state(model).values()} == {"meta"}


# -- progress bar ------------------------------------------------------------------------------


def test_progress_bar(tmp_path, capsys, monkeypatch):
    # a tqdm bar "train" counting steps up to `steps` (from the resumed step), with the loss
    # and the learning rate; none with progress=False or without tqdm, and the results do not
    # change
    ck, kw = tmp_path / "state.pt", {"batch_size": 1, "lr": 0.01, "lr_step": 2, "log": print}
    res = train(Tiny(), _patches(), steps=3, checkpoint=ck, **kw)
    last = capsys.readouterr().err.rstrip("\n").split("\r")[-1]
    assert last.startswith("train: 100%") and " 3/3 [" in last and "it/s" in last, last
    assert last.rstrip().endswith(f"loss={res.losses[-1]:.4f}, lr=5.0e-03]"), last  # 0.01 / 2
    train(Tiny(), _patches(), steps=5, checkpoint=ck, **kw)
    assert " 5/5 [" in capsys.readouterr().err.split("\r")[-1]

    quiet = train(Tiny(), _patches(), steps=3, batch_size=1, lr=0.01, lr_step=2, progress=False)
    assert capsys.readouterr().err == "" and quiet.losses == res.losses
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # tqdm not installed
    no_tqdm = train(Tiny(), _patches(), steps=3, batch_size=1, lr=0.01, lr_step=2)
    assert capsys.readouterr().err == "" and no_tqdm.losses == res.losses


def test_progress_bar_follows_terminal_resizes(monkeypatch):
    # on a terminal (a pseudo-terminal here) widened from 60 to 90 columns during the run, the
    # bar is redrawn at the new width (tqdm uses columns - 1)
    import fcntl
    import pty
    import termios

    master, slave = pty.openpty()

    def resize(cols):
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 20, cols, 0, 0))

    resize(60)
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            monkeypatch.setattr(sys, "stderr", tty)
            train(
                Tiny(), _patches(), steps=3, batch_size=1, evaluate_fn=lambda m: resize(90),
                eval_every=1, log=lambda m: None,
            )  # fmt: skip
            tty.flush()
            monkeypatch.undo()
        out = b""
        while select.select([master], [], [], 0.05)[0]:
            out += os.read(master, 1 << 16)
    finally:
        os.close(master)
        os.close(slave)
    lines = [x for x in re.split(r"[\r\n]+", out.decode()) if x.startswith("train:")]
    assert len(lines[0].rstrip()) == 59 and len(lines[-1].rstrip()) == 89, lines


# -- torchrun: rank 1 of 2, with a stand-in process group -------------------------------------


class _FakeGroup:
    """``torch.distributed`` as seen by rank 1 of 2, the other rank's loss being 1.0."""

    def is_available(self):
        return True

    def is_initialized(self):
        return True

    def get_rank(self):
        return 1

    def get_world_size(self):
        return 2

    def all_reduce(self, t):
        t += 1.0


class _FakeDDP(nn.Module):
    wrapped: ClassVar[list] = []

    def __init__(self, module):
        super().__init__()
        self.inner = [module]
        _FakeDDP.wrapped.append(module)

    def forward(self, *args, **kwargs):
        return self.inner[0](*args, **kwargs)


def test_rank_one_trains_its_slice_and_stays_quiet(tmp_path, capsys, monkeypatch):
    # rank 1 of 2: wrapped in DDP, trains on the second half of every global batch, reports the
    # mean loss over the ranks; no log, bar, evaluation or checkpoint (rank 0 does those),
    # not even when resuming
    ck = tmp_path / "state.pt"
    train(Tiny(), _patches(), steps=1, batch_size=2, checkpoint=ck, **_quiet())
    before = ck.read_bytes()
    ref_model = Tiny()
    kw = {"batch_size": 4, "lr": 0.05, "lr_step": 2, "lr_gamma": 0.5}
    ref_losses, _ = _reference(ref_model, _patches(), steps=2, ema_decay=0.5, part=(1, 2), **kw)
    monkeypatch.setattr(training, "dist", _FakeGroup())
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", _FakeDDP)
    _FakeDDP.wrapped = []
    logs, model = [], Tiny()
    res = train(model, _patches(), steps=2, evaluate_fn=lambda m: 0, log=logs.append, **kw)
    assert _FakeDDP.wrapped == [model]
    want = [(x + 1.0) / 2 for x in ref_losses]
    torch.testing.assert_close(torch.tensor(res.losses), torch.tensor(want))
    _assert_states_close(_state(model), _state(ref_model))
    resumed = train(Tiny(), _patches(), steps=1, checkpoint=ck, log=logs.append, batch_size=2)
    assert resumed.start_step == 1 and ck.read_bytes() == before
    assert (logs, res.evaluations, capsys.readouterr().err) == ([], [], "")


@pytest.mark.filterwarnings("ignore:.*to a meta parameter.*:UserWarning")  # meta: no data
def test_resuming_on_another_device_restores_the_cpu_generator(tmp_path):
    """``map_location=device`` moves the saved RNG state too; ``torch.set_rng_state`` needs it
    on the CPU (resuming with ``device="cuda"`` failed before the first step). ``meta`` stands
    in for an accelerator: nothing is left to train, so only the resume runs."""
    ck = tmp_path / "ck.pt"
    train(
        Tiny(), _patches(), steps=1, batch_size=1, checkpoint=ck, progress=False, log=lambda s: None
    )
    saved = torch.load(ck, weights_only=False)["rng"]
    torch.manual_seed(123)  # move the generator away from the saved state
    result = train(
        Tiny(), _patches(), steps=1, batch_size=1, checkpoint=ck, progress=False,
        device="meta", log=lambda s: None,
    )  # fmt: skip
    assert result.start_step == 1
    assert torch.equal(torch.get_rng_state(), saved)


# -- Issue 16's hand-made mutants: wrong-number bugs the suite used to miss ----------------------
# Each states an invariant or compares against an independent reference, so the mutation
# it names fails it.


def test_ema_after_one_step_is_d_w0_plus_1_minus_d_w1(tmp_path):
    torch.manual_seed(0)
    model = NeuralKrigingUpsampler(3, hidden=8, blocks=1)

    class Wrap(torch.nn.Module):  # the training call signature on an image "feature map"
        def __init__(self):
            super().__init__()
            self.up = model

        def forward(self, lr, *, scale, window):
            return self.up(lr, scale=scale, window=window)

    net = Wrap()
    w0 = {k: v.detach().clone() for k, v in net.state_dict().items()}
    imgs = [torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    data = ArbitraryScalePatches(imgs, patch=8, samples_per_epoch=4)
    d = 0.9
    train(net, data, steps=1, batch_size=2, lr=1e-2, ema_decay=d, checkpoint=tmp_path / "s.pt",
          progress=False, log=lambda s: None)  # fmt: skip
    w1 = net.state_dict()
    ema = torch.load(tmp_path / "s.pt", weights_only=False)["ema"]
    moved = [k for k in w0 if w0[k].is_floating_point() and not torch.equal(w0[k], w1[k])]
    assert moved, "the step changed no weight"
    for k in moved:
        torch.testing.assert_close(ema[k], d * w0[k] + (1 - d) * w1[k])


def test_training_fails_before_the_first_step_on_bad_paths_and_data(tmp_path):
    np = pytest.importorskip("numpy")
    image = pytest.importorskip("PIL.Image")

    model = NeuralKrigingUpsampler(3, hidden=8, blocks=1)
    data = ArbitraryScalePatches([torch.rand(3, 30, 30)], patch=8, samples_per_epoch=4)
    calls = []
    model.register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match="is a directory"):
        train(model, data, steps=1000, batch_size=2, checkpoint=tmp_path, progress=False)
    assert calls == []  # refused before any step
    (tmp_path / "state.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"cannot resume from .*state\.pt.*delete it"):
        train(model, data, steps=1, batch_size=2, checkpoint=tmp_path / "state.pt", progress=False)
    folder = tmp_path / "imgs"
    folder.mkdir()
    image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "ok.png")
    image.fromarray(np.zeros((5, 40, 3), np.uint8)).save(folder / "small.png")
    (folder / "broken.png").write_bytes(b"not an image")
    with pytest.raises(
        ValueError, match=r"2 training image.*broken\.png \(unreadable.*small\.png \(40x5"
    ):
        ArbitraryScalePatches(folder, patch=8)
    with pytest.raises(ValueError, match=r"source images \[1\] are smaller than the patch 8"):
        ArbitraryScalePatches([torch.rand(3, 30, 30), torch.rand(3, 6, 30)], patch=8)
