"""scaleeq serve in a real browser: headless Chromium (Selenium + Debian's chromedriver).

1. The viewer page at ``/`` zoomed to 3.3x: once its tiles are in, the canvas' pixels equal
   the model's own render of that viewport at x3.3 (computed here, not by the server).
2. OpenSeadragon (``npm install openseadragon`` into a temporary folder at test time) opens a
   virtual ``@8x`` image's info.json and loads tiles beyond the source's native resolution
   with no errors.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver")
from PIL import Image  # noqa: E402

import scaleeq  # noqa: E402
from scaleeq.serve import ServiceConfig, create_app  # noqa: E402

from ._serve_helpers import LiveServer, reference_render, synthetic_photo  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or not Path(CHROMEDRIVER).exists(),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser_images")
    synthetic_photo(root / "zoom.png", 100, 75, seed=1)
    synthetic_photo(root / "photo.png", 64, 48)
    model = scaleeq.pretrained()
    app = create_app(root, model, config=ServiceConfig(tile=256), workers=1, queue=64)
    with LiveServer(app) as server:
        yield server, model, root


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--allow-file-access-from-files",
        "--force-device-scale-factor=1",
        "--window-size=300,200",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_script_timeout(60)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 300, "height": 200, "deviceScaleFactor": 1, "mobile": False},
    )
    yield driver
    driver.quit()


def _wait(driver, script: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {script}")


def test_viewer_at_3_3x_matches_the_models_render(served, browser):
    server, model, root = served
    browser.get(f"{server.url}/?id=zoom&format=png&debounce=50")
    _wait(browser, "return window.scaleeqViewer && window.scaleeqViewer.state().info !== null")
    browser.execute_script("window.scaleeqViewer.zoomTo(3.3, 52.3, 40.1)")
    _wait(browser, "return window.scaleeqViewer.idle()")
    state = browser.execute_script("return window.scaleeqViewer.state()")
    assert browser.find_element("id", "zoom").text == "3.30\u00d7"
    assert (state["width"], state["height"]) == (300, 200)
    d = state["detail"]
    assert d is not None and abs(d["z"] - 3.3) < 1e-9
    region, size = d["url"].split("/")[-4:-2]
    x, y, w, h = (int(v) for v in region.split(","))
    assert size.startswith("^")
    sw, sh = (int(v) for v in size[1:].split(","))
    # the request covers the visible part of the image, at the exact zoom
    assert x <= state["ox"] < x + 1 and y <= state["oy"] < y + 1
    assert x + w >= state["ox"] + 300 / 3.3 and y + h >= state["oy"] + 200 / 3.3
    assert abs(sw / w - 3.3) < 0.02 and abs(sh / h - 3.3) < 0.02
    # the canvas, read back
    data = browser.execute_script("return document.getElementById('view').toDataURL('image/png')")
    canvas = np.asarray(
        Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[1]))).convert("RGB")
    )
    assert canvas.shape == (200, 300, 3)
    # the model's render of the whole image at that level, computed here
    full = (round(75 * sh / h), round(100 * sw / w))
    ref = reference_render(model, root / "zoom.png", full)
    top, left = round(y * full[0] / 75), round(x * full[1] / 100)
    sx, sy = round((x - state["ox"]) * 3.3), round((y - state["oy"]) * 3.3)
    # canvas pixel (cy, cx) shows render pixel (top + cy - sy, left + cx - sx)
    cy0, cx0 = max(0, sy), max(0, sx)
    cy1, cx1 = min(200, sy + sh), min(300, sx + sw)
    got = canvas[cy0:cy1, cx0:cx1].astype(int)
    want = ref[top + cy0 - sy : top + cy1 - sy, left + cx0 - sx : left + cx1 - sx].astype(int)
    assert got.shape == want.shape and got.shape[0] > 150 and got.shape[1] > 250
    diff = np.abs(got - want)
    assert diff.mean() < 0.5 and (diff > 2).mean() < 0.001, (diff.mean(), diff.max())
    # and not just any picture: a one-pixel shift of the reference does not match
    shifted = ref[top + cy0 - sy : top + cy1 - sy, left + cx0 - sx + 1 : left + cx1 - sx + 1]
    assert np.abs(got - shifted.astype(int)).mean() > 2


def test_openseadragon_loads_tiles_beyond_native(served, browser, tmp_path):
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the OpenSeadragon page test needs it")
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--silent", "openseadragon"],
        cwd=tmp_path, check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    osd = tmp_path / "node_modules/openseadragon/build/openseadragon/openseadragon.min.js"
    assert osd.exists()
    server, _, _ = served
    info_url = f"{server.url}/photo@8x/info.json"  # 512 x 384: the 64 x 48 photo at x8
    page = tmp_path / "osd.html"
    page.write_text(
        "<!doctype html><html><head><link rel='icon' href='data:,'></head><body style='margin:0'>"
        "<div id='osd' style='width:300px;height:200px'></div>"
        f"<script src='{osd.as_uri()}'></script><script>\n"
        "window.loaded = []; window.failed = [];\n"
        "const v = OpenSeadragon({id: 'osd', tileSources: " + json.dumps(info_url) + ",\n"
        "  showNavigationControl: false, immediateRender: true, animationTime: 0,\n"
        "  crossOriginPolicy: 'Anonymous', maxZoomPixelRatio: 2});\n"
        "v.addHandler('tile-loaded', e => window.loaded.push(e.tile.getUrl()));\n"
        "v.addHandler('tile-load-failed', "
        "e => window.failed.push(e.tile.getUrl() + ' ' + e.message));\n"
        "v.addHandler('open-failed', e => window.failed.push('open ' + e.message));\n"
        "v.addHandler('open', () => {\n"
        "  const item = v.world.getItemAt(0);\n"
        "  v.viewport.zoomTo(item.imageToViewportZoom(1.0), "
        "item.imageToViewportCoordinates(300, 250), true);\n"
        "  item.addHandler('fully-loaded-change', "
        "e => { if (e.fullyLoaded) window.done = true; });\n"
        "});\n"
        "</script></body></html>"
    )
    browser.get_log("browser")  # drop earlier pages' messages
    browser.get(page.as_uri())
    _wait(browser, "return window.done === true || window.failed.length > 0", timeout=90)
    failed = browser.execute_script("return window.failed")
    loaded = browser.execute_script("return window.loaded")
    assert failed == []
    # tiles of the top level: 256-pixel regions of the x8 image at full size (x8 beyond native)
    top_level = [
        u
        for u in loaded
        if u.split("/")[-4] != "full"
        and u.split("/")[-4].split(",")[2] in ("256", "128")
        and u.split("/")[-3] in ("256,256", "256,128", "max")
    ]
    assert len(top_level) >= 2, loaded
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    stats = server.app.state.service.stats()
    assert stats["block_renders"] > 0  # the model rendered them
