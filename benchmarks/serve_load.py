"""Load and latency benchmark of ``scaleeq serve`` over loopback (CPU, built-in model).

Starts ``python -m scaleeq serve`` on a synthetic 1000 x 750 photo in a subprocess (so its RSS
is the server's own), then

1. **latency**: features warmed by one request, then distinct 512 x 512 JPEG tiles at 2x-4x
   beyond native (``/{region}/^512,512/``; nothing in the response or block caches), p50 with
   one client and p95 with 4 concurrent clients;
2. **load**: 16 concurrent asyncio/httpx clients for ``--duration`` seconds of mixed requests
   (OpenSeadragon-style tiles of the ``@4x`` virtual image at every level, ``^`` tiles at
   random factors in [1.5, 6], downscaled tiles, info.json), counting statuses (503 is the
   designed answer of a full worker pool), latencies, tiles/s, and the server's RSS sampled
   from /proc against its caches' caps + the model's size.

::

    python benchmarks/serve_load.py --json benchmarks/results/serve_load_cpu.json
    python benchmarks/serve_load.py --duration 10 --latency-tiles 4     # quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch

MiB = 2**20


def synthetic_photo(path: Path, width: int, height: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 128 + 100 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    g = 128 + 90 * np.sign(np.sin((xx + yy) / 11.0))
    b = (xx * 0.7 + yy * 1.3) % 256
    arr = np.stack([r, g, b], -1) + rng.normal(0, 8, (height, width, 3))
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def latency_urls(rng: random.Random, n: int, width: int, height: int) -> list[str]:
    """Distinct 512 x 512 tiles at 2x-4x beyond native: region 512/f pixels, size ^512,512."""
    urls = []
    for i in range(n):
        f = 2 + 2 * i / max(1, n - 1)
        side = round(512 / f)
        x, y = rng.randrange(0, width - side), rng.randrange(0, height - side)
        urls.append(f"/photo/{x},{y},{side},{side}/^512,512/0/default.jpg")
    return urls


def mixed_url(rng: random.Random, width: int, height: int) -> str:
    kind = rng.random()
    if kind < 0.45:  # OpenSeadragon on photo@4x: 512 tiles at scale factors 1, 2, 4, 8
        sf = rng.choice([1, 2, 4, 8])
        side = 512 * sf
        vw, vh = width * 4, height * 4
        x, y = rng.randrange(0, vw, side), rng.randrange(0, vh, side)
        w, h = min(side, vw - x), min(side, vh - y)
        return f"/photo@4x/{x},{y},{w},{h}/{-(-w // sf)},{-(-h // sf)}/0/default.jpg"
    if kind < 0.85:  # the viewer at a random zoom: a 256 x 256 output window
        f = rng.uniform(1.5, 6)
        side = max(8, round(256 / f))
        x, y = rng.randrange(0, width - side), rng.randrange(0, height - side)
        return f"/photo/{x},{y},{side},{side}/^256,256/0/default.jpg"
    if kind < 0.95:  # downscaled
        return f"/photo/full/{rng.choice([125, 250, 500])},/0/default.jpg"
    return "/photo/info.json"


async def run_clients(base: str, urls_fn, clients: int, duration: float, pid: int) -> dict:
    lat: dict[int, list[float]] = {}
    counts: dict[int, int] = {}
    rss_max = 0
    stop = time.monotonic() + duration
    tiles = 0

    async def one(cid: int) -> None:
        nonlocal tiles
        rng = random.Random(cid)
        async with httpx.AsyncClient(base_url=base, timeout=120) as c:
            while time.monotonic() < stop:
                url = urls_fn(rng)
                t = time.perf_counter()
                try:
                    r = await c.get(url)
                    code = r.status_code
                except httpx.HTTPError:
                    code = -1
                dt = time.perf_counter() - t
                counts[code] = counts.get(code, 0) + 1
                lat.setdefault(code, []).append(dt)
                if code == 200 and "info.json" not in url:
                    tiles += 1
                if code == 503:
                    await asyncio.sleep(float(r.headers.get("retry-after", "1")) * rng.random())

    async def sample() -> None:
        nonlocal rss_max
        while time.monotonic() < stop:
            rss_max = max(rss_max, rss_bytes(pid))
            await asyncio.sleep(0.25)

    await asyncio.gather(sample(), *(one(i) for i in range(clients)))
    ok = lat.get(200, [])
    return {
        "clients": clients,
        "duration_s": duration,
        "status_counts": {str(k): v for k, v in sorted(counts.items())},
        "errors": sum(v for k, v in counts.items() if k not in (200, 503)),
        "tiles_per_s": tiles / duration,
        "p50_s": pct(ok, 50),
        "p95_s": pct(ok, 95),
        "rss_max_bytes": rss_max,
    }


async def timed(base: str, urls: list[str], clients: int) -> list[float]:
    out: list[float] = []
    queue = list(urls)

    async def one() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=120) as c:
            while queue:
                url = queue.pop()
                t = time.perf_counter()
                r = await c.get(url)
                if r.status_code != 200:
                    raise RuntimeError(f"{url}: {r.status_code} {r.text}")
                out.append(time.perf_counter() - t)

    await asyncio.gather(*(one() for _ in range(clients)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--latency-tiles", type=int, default=16, help="tiles per latency phase")
    p.add_argument("--width", type=int, default=1000)
    p.add_argument("--height", type=int, default=750)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--queue", type=int, default=8)
    p.add_argument("--response-cache-mb", type=int, default=64)
    p.add_argument("--feature-cache-mb", type=int, default=256)
    p.add_argument("--block-cache-mb", type=int, default=64)
    p.add_argument("--json", default=None)
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="scaleeq-serve-load-"))
    synthetic_photo(tmp / "photo.png", args.width, args.height)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "scaleeq", "serve", str(tmp), "--port", str(port), "--quiet",
        "--workers", str(args.workers), "--queue", str(args.queue),
        "--response-cache-mb", str(args.response_cache_mb),
        "--feature-cache-mb", str(args.feature_cache_mb),
        "--block-cache-mb", str(args.block_cache_mb),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/photo/info.json", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {proc.stderr.read().decode()}")
            time.sleep(0.2)
        rss_idle = rss_bytes(proc.pid)
        t = time.perf_counter()
        httpx.get(f"{base}/photo/0,0,64,64/^128,128/0/default.jpg", timeout=300)
        feature_s = time.perf_counter() - t
        rng = random.Random(1)
        one = asyncio.run(
            timed(base, latency_urls(rng, args.latency_tiles, args.width, args.height), 1)
        )
        four = asyncio.run(
            timed(base, latency_urls(rng, args.latency_tiles, args.width, args.height), 4)
        )
        load = asyncio.run(
            run_clients(
                base,
                lambda r: mixed_url(r, args.width, args.height),
                args.clients,
                args.duration,
                proc.pid,
            )
        )
        stats = httpx.get(f"{base}/_scaleeq/stats", timeout=30).json()
    finally:
        proc.terminate()
        proc.wait(30)
    caps = (
        args.response_cache_mb + args.feature_cache_mb + args.block_cache_mb + 256
    ) * MiB  # + source cache
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "image": f"{args.width}x{args.height} synthetic photo",
        "workers": args.workers,
        "queue": args.queue,
        "first_request_with_features_s": feature_s,
        "latency_512_jpeg_2x_4x": {
            "one_client_p50_s": statistics.median(one),
            "one_client_p95_s": pct(one, 95),
            "four_clients_p50_s": statistics.median(four),
            "four_clients_p95_s": pct(four, 95),
            "tiles": args.latency_tiles,
            "target": "p50 <= 0.3 s (1 client), p95 <= 1.2 s (4 clients)",
            "met": statistics.median(one) <= 0.3 and pct(four, 95) <= 1.2,
        },
        "load": load,
        "rss_idle_bytes": rss_idle,
        "rss_growth_bytes": load["rss_max_bytes"] - rss_idle,
        "cache_caps_bytes": caps,
        "model_bytes": stats["model_bytes"],
        "rss_within_caps": load["rss_max_bytes"] - rss_idle <= caps + stats["model_bytes"],
        "server_stats": stats,
    }
    lat = report["latency_512_jpeg_2x_4x"]
    print(f"features (first request): {feature_s:.2f} s")
    print(
        f"512x512 JPEG at 2x-4x: 1 client p50 {lat['one_client_p50_s']:.3f} s; "
        f"4 clients p95 {lat['four_clients_p95_s']:.3f} s (target met: {lat['met']})"
    )
    print(
        f"load: {load['clients']} clients x {load['duration_s']:.0f} s: "
        f"statuses {load['status_counts']}, errors {load['errors']}, "
        f"{load['tiles_per_s']:.2f} tiles/s, p50 {load['p50_s']:.3f} s, p95 {load['p95_s']:.3f} s"
    )
    print(
        f"RSS: idle {rss_idle / MiB:.0f} MiB, max {load['rss_max_bytes'] / MiB:.0f} MiB, "
        f"growth {report['rss_growth_bytes'] / MiB:.0f} MiB vs caps {caps / MiB:.0f} MiB "
        f"+ model {stats['model_bytes'] / MiB:.1f} MiB"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
