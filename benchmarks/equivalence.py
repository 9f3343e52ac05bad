"""Outputs of this checkout against another commit's, for a refactor that must not change them.

Builds the library's models and layers (retrofitted EDSR / RCAN / SwinIR, spandrel ESRGAN and
HAT, EQSR tiny in both modes, the bare upsamplers, AdaptiveConv2d and AFEBlock), gives every
parameter deterministic random values (so the identity-at-init AFE blocks matter), and runs
each call form: a float, a pair, a per-sample tensor, ``size=``, a window, ``scaleeq.upscale``
in tiles, the scale context, and a training step's gradients. The other commit's code also
saves each retrofitted model and the bare upsamplers' state dicts; this checkout loads those
files (the upsamplers' under the other commit's key names) and must give the same outputs.

Each side runs in its own subprocess with its ``src`` first on ``sys.path``. Prints the largest
absolute difference per case and exits 1 if any exceeds ``--atol`` (default 1e-6).

Usage::

    python benchmarks/equivalence.py --baseline-commit 63f7aa9 [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import sys, zlib, torch
sys.path.insert(0, sys.argv[1])
mode, folder = sys.argv[2], sys.argv[3]
import scaleeq
from scaleeq import models
torch.set_num_threads(1)

def randomize(m):
    with torch.no_grad():
        for name, t in m.state_dict(keep_vars=True).items():
            if t.is_floating_point():
                g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
                t.copy_(
                    torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype) * 0.05
                    + (1.0 if name.endswith("norm1.weight") or name.endswith("norm2.weight")
                       else 0.0)
                )
    return m.eval()

def spandrel_model(kind):
    import scaleeq._torchvision as tv
    tv.apply()
    if kind == "esrgan":
        from spandrel.architectures.ESRGAN import ESRGAN
        return ESRGAN(in_nc=3, out_nc=3, num_filters=16, num_blocks=2, scale=4)
    from spandrel.architectures.HAT import HAT
    return HAT(img_size=16, embed_dim=12, depths=(2, 2), num_heads=(2, 2), window_size=4,
               compress_ratio=3, squeeze_factor=4, mlp_ratio=2.0, upscale=2,
               upsampler="pixelshuffle")

def retrofitted():
    torch.manual_seed(0)
    out = {
        "edsr": scaleeq.retrofit(models.EDSR.from_preset("tiny", upscale=2)),
        "rcan": scaleeq.retrofit(models.RCAN.from_preset("tiny", upscale=2)),
        "swinir": scaleeq.retrofit(models.SwinIR.from_preset("tiny", upscale=2)),
        "edsr_skip": scaleeq.retrofit(models.EDSR.from_preset("tiny", upscale=2), skip="bicubic"),
    }
    try:
        out["esrgan"] = scaleeq.retrofit(spandrel_model("esrgan"))
        out["hat"] = scaleeq.retrofit(spandrel_model("hat"))
    except ImportError:
        pass
    return {k: randomize(v) for k, v in out.items()}

def sr_calls(m, name, res):
    g = torch.Generator().manual_seed(1)
    lr = torch.rand(2, 3, 9, 11, generator=g)
    per = torch.tensor([2.0, 3.3], dtype=torch.float64)
    with torch.no_grad():
        res[f"{name}/float"] = m(lr, scale=2.5)
        res[f"{name}/pair"] = m(lr, scale=(3.0, 1.5))
        res[f"{name}/size"] = m(lr, size=(20, 17))
        res[f"{name}/per_sample_window"] = m(lr, scale=per, window=(torch.tensor([1, 3]), 2, 8, 9))
        res[f"{name}/upscale_tiles"] = scaleeq.upscale(m, lr, scale=3.7, max_window_pixels=150)
    m.train()
    torch.manual_seed(5)  # drop-path in training mode
    out = m(lr, scale=per, window=(0, 0, 12, 12))
    out.square().mean().backward()
    for k, p in m.named_parameters():
        if "afe" in k and p.grad is not None:
            res[f"{name}/grad/{k}"] = p.grad.clone()
    m.zero_grad()
    m.eval()

res = {}
for name, m in retrofitted().items():
    sr_calls(m, name, res)
    if mode == "base":
        m.save(f"{folder}/{name}.safetensors")
    else:
        loaded = scaleeq.load(f"{folder}/{name}.safetensors").eval()
        sub = {}
        sr_calls(loaded, name, sub)
        res.update({f"loaded/{k}": v for k, v in sub.items() if "/grad/" not in k})

torch.manual_seed(0)
for name, kw in (("eqsr", {}), ("eqsr_official", {"official": True})):
    m = randomize(models.EQSR.from_preset("tiny", **kw))
    g = torch.Generator().manual_seed(2)
    lr = torch.rand(2, 3, 9, 11, generator=g)
    with torch.no_grad():
        res[f"{name}/float"] = m(lr, scale=2.5)
        res[f"{name}/pair"] = m(lr, scale=(3.0, 1.5))
        res[f"{name}/per_sample"] = m(lr, scale=torch.tensor([2.5, 2.52]))  # one output size
        res[f"{name}/size"] = m(lr, size=(20, 17))
    if not kw:
        with torch.no_grad():
            res[f"{name}/window"] = m(lr, scale=torch.tensor([2.0, 3.3]), window=(0, 1, 9, 8))

torch.manual_seed(0)
g = torch.Generator().manual_seed(3)
feat = torch.rand(2, 16, 7, 8, generator=g)
from scaleeq.layers import LIIFUpsampler, BicubicFeatureUpsampler
for name, up in (("nk", scaleeq.NeuralKrigingUpsampler(16, out_channels=3)),
                 ("nk_lean", scaleeq.NeuralKrigingUpsampler(16, out_channels=3, backend="lean")),
                 ("liif", LIIFUpsampler(16, out_channels=3)),
                 ("bicubic_feat", BicubicFeatureUpsampler(16, out_channels=3))):
    up = randomize(up)
    if mode == "base":
        torch.save(up.state_dict(), f"{folder}/{name}_state.pt")
    else:  # the other commit's state dict, under its key names, loads into this checkout's
        up.load_state_dict(torch.load(f"{folder}/{name}_state.pt"))
    with torch.no_grad():
        res[f"{name}/float"] = up(feat, scale=2.7)
        res[f"{name}/pair"] = up(feat, scale=(1.5, 3.0))
        res[f"{name}/window"] = up(feat, scale=torch.tensor([2.0, 3.0]), window=(1, 2, 5, 6))

x = torch.rand(2, 8, 6, 7, generator=g)
conv = randomize(scaleeq.AdaptiveConv2d(8, 8, 3))
afe = randomize(scaleeq.AFEBlock(8))
with torch.no_grad():
    for sname, s in (("float", 2.5), ("pair", (2.0, 3.5)), ("tensor", torch.tensor([1.5, 4.0]))):
        res[f"adaptive_conv/{sname}"] = conv(x, s)
        res[f"afe/{sname}"] = afe(x, s)
    with scaleeq.scale_context(3.1):
        res["adaptive_conv/context"] = conv(x)
        res["afe/context"] = afe(x)
    res["scale_encoding"] = scaleeq.ScaleEncoding(8)(torch.tensor([[1.5, 2.5], [3.0, 7.25]]))
torch.save(res, f"{folder}/{mode}.pt")
"""


def _side(src: Path, mode: str, folder: Path) -> None:
    subprocess.run([sys.executable, "-c", CHILD, str(src), mode, str(folder)], check=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline-commit", required=True, help="the commit to compare against")
    p.add_argument("--atol", type=float, default=1e-6)
    p.add_argument("--json", type=Path, help="write the per-case differences here")
    args = p.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        tree = Path(tmp) / "baseline"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(tree),
             args.baseline_commit], check=True,
        )  # fmt: skip
        stack.callback(
            subprocess.run, ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)]
        )
        folder = Path(tmp) / "out"
        folder.mkdir()
        _side(tree / "src", "base", folder)
        _side(REPO / "src", "new", folder)
        base = torch.load(folder / "base.pt")
        new = torch.load(folder / "new.pt")
    rows = {}
    for key, ref in base.items():
        for k in (key, f"loaded/{key}"):
            if k in new:
                got = new[k]
                diff = (
                    float("inf")
                    if got.shape != ref.shape
                    else float((got.double() - ref.double()).abs().max())
                )
                rows[k] = diff
    missing = sorted(set(base) - set(new))
    worst = max(rows.values())
    for k, v in sorted(rows.items()):
        print(f"{v:10.3g}  {k}")
    print(f"{len(rows)} comparisons, largest difference {worst:.3g}; missing: {missing}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"baseline": args.baseline_commit, "atol": args.atol, "max": worst, "cases": rows},
                indent=1,
            )
        )
    sys.exit(0 if worst <= args.atol and not missing else 1)


if __name__ == "__main__":
    main()
