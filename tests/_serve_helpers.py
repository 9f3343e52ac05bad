"""Shared helpers of the serve tests: a synthetic photo and a real uvicorn server on loopback."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def synthetic_photo(path: Path, width: int = 64, height: int = 48, seed: int = 0) -> Path:
    """A textured RGB PNG (smooth gradients, edges and noise), so renders differ visibly."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 128 + 100 * np.sin(xx / 4.0) * np.cos(yy / 7.0)
    g = 128 + 90 * np.sign(np.sin((xx + yy) / 6.0))
    b = (xx * 3 + yy * 5) % 256
    arr = np.stack([r, g, b], -1) + rng.normal(0, 8, (height, width, 3))
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path)
    return path


class LiveServer:
    """Runs an ASGI app with uvicorn in a background thread on 127.0.0.1 (a free port)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start within 20 s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def reference_render(
    model: Any, path: Path, full: tuple[int, int], feature_scale: float = 2.0
) -> np.ndarray:
    """The model's whole render of the image at ``path`` at size ``full = (H, W)`` as 8-bit
    ``(H, W, 3)`` pixels, computed directly (not through the server)."""
    import torch

    from scaleeq.data import load_image

    lr = load_image(path)[None]
    with torch.inference_mode():
        scale = torch.tensor([[feature_scale, feature_scale]], dtype=torch.float64)
        out = model.render(model.features(lr, scale), size=full)
    return (out[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
