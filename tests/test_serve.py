"""scaleeq serve: the IIIF grammar, info.json, errors, seams, caches and the worker pool.

Requests go over loopback to a real uvicorn server (httpx), except the pure grammar tests.
"""

from __future__ import annotations

import concurrent.futures
import io
import subprocess
import sys
import threading

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
from PIL import Image  # noqa: E402

import scaleeq  # noqa: E402
from scaleeq.serve import IIIFError, ServiceConfig, create_app, map_axis  # noqa: E402
from scaleeq.serve.grammar import (  # noqa: E402
    Limits,
    parse_request,
    parse_rotation,
    parse_size,
    resolve_region,
    resolve_size,
)

from ._serve_helpers import LiveServer, reference_render, synthetic_photo  # noqa: E402

NOLIMIT = Limits()


# ---- grammar (IIIF Image API 3.0, sections 4.1-4.5, with the spec's example values) -----------


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("full", (0, 0, 300, 200)),
        ("square", (50, 0, 200, 200)),  # centred on the longer axis
        ("125,15,120,140", (125, 15, 120, 140)),
        ("125,15,200,200", (125, 15, 175, 185)),  # cropped at the image's edges
        ("pct:41.6,7.5,40,70", (125, 15, 120, 140)),
        ("pct:41.6,7.5,66.6,100", (125, 15, 175, 185)),
    ],
)
def test_region_spec_examples(region, expected):
    req = parse_request(region, "max", "0", "default.jpg")
    assert resolve_region(req.region, 300, 200) == expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("max", (120, 140)),
        ("^max", (1714, 2000)),  # the largest size within maxHeight 2000, aspect kept
        ("60,", (60, 70)),
        ("^240,", (240, 280)),
        (",70", (60, 70)),
        ("^,280", (240, 280)),
        ("pct:50", (60, 70)),
        ("^pct:150", (180, 210)),
        ("100,50", (100, 50)),  # distorting sizes are allowed
        ("^300,50", (300, 50)),  # upscales one axis only
        ("!60,100", (60, 70)),
        ("^!360,360", (309, 360)),
    ],
)
def test_size_spec_forms(size, expected):
    got = resolve_size(parse_size(size), 120, 140, Limits(4000, 2000, None))
    assert got == expected


@pytest.mark.parametrize(
    ("rotation", "expected"),
    [
        ("0", (0, False)),
        ("90", (90, False)),
        ("!180", (180, True)),
        ("270.0", (270, False)),
        ("360", (0, False)),
    ],
)
def test_rotation_forms(rotation, expected):
    assert parse_rotation(rotation) == expected


@pytest.mark.parametrize(
    ("segments", "status", "word"),
    [
        (("abc", "max", "0", "default.jpg"), 400, "region"),
        (("10,10,10", "max", "0", "default.jpg"), 400, "region"),
        (("-1,0,10,10", "max", "0", "default.jpg"), 400, "region"),
        (("0,0,0,10", "max", "0", "default.jpg"), 400, "zero"),
        (("pct:100,0,5,5", "max", "0", "default.jpg"), 400, "outside"),
        (("full", "0,", "0", "default.jpg"), 400, "zero"),
        (("full", "10,10,10", "0", "default.jpg"), 400, "size"),
        (("full", "pct:0", "0", "default.jpg"), 400, "zero"),
        (("full", "pct:150", "0", "default.jpg"), 400, "^"),
        (("full", "!10,", "0", "default.jpg"), 400, "size"),
        (("full", "max", "361", "default.jpg"), 400, "rotation"),
        (("full", "max", "-90", "default.jpg"), 400, "rotation"),
        (("full", "max", "22.5", "default.jpg"), 501, "90"),
        (("full", "max", "0", "grey.jpg"), 400, "quality"),
        (("full", "max", "0", "default.bmp"), 400, "format"),
        (("full", "max", "0", "default.tif"), 501, "format"),
        (("full", "max", "0", "default"), 400, "quality.format"),
    ],
)
def test_malformed_parameters(segments, status, word):
    with pytest.raises(IIIFError) as e:
        parse_request(*segments)
    assert e.value.status == status
    assert word in str(e.value)


def test_size_rules_upscale_and_limits():
    with pytest.raises(IIIFError, match="prefix the size with"):  # larger than the region, no ^
        resolve_size(parse_size("200,"), 120, 140, NOLIMIT)
    with pytest.raises(IIIFError, match="prefix the size with"):
        resolve_size(parse_size("!500,500"), 120, 140, NOLIMIT)
    with pytest.raises(IIIFError, match="maxWidth of 200"):
        resolve_size(parse_size("^300,"), 120, 140, Limits(200, None, None))
    with pytest.raises(IIIFError, match="maxArea"):
        resolve_size(parse_size("^300,300"), 120, 140, Limits(None, None, 300 * 299))
    assert resolve_size(parse_size("max"), 120, 140, Limits(60, None, None)) == (60, 70)
    with pytest.raises(IIIFError, match="region"):
        resolve_region(parse_request("400,0,10,10", "max", "0", "default.jpg").region, 300, 200)


def test_map_axis_tiles_abut():
    """Tiles of one level map to abutting windows of one render, at x2.5 and x3.7."""
    for src, tile, factor_num, factor_den in ((64, 20, 5, 2), (60, 10, 37, 10)):
        windows = []
        for x in range(0, src, tile):
            w = min(tile, src - x)
            out = w * factor_num // factor_den
            a = map_axis(src, src, x, w, out)
            assert a.model and a.full == round(src * factor_num / factor_den)
            windows.append((a.start, a.length))
        starts = [s for s, _ in windows]
        ends = [s + n for s, n in windows]
        assert (
            starts[0] == 0
            and starts[1:] == ends[:-1]
            and ends[-1] == windows[-1][0] + windows[-1][1]
        )
    virtual = map_axis(64, 256, 128, 128, 128)  # @4x virtual image, native tile: x4 of src 32..64
    assert (virtual.full, virtual.start, virtual.length, virtual.model) == (256, 128, 128, True)


# ---- the server over loopback -------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    return scaleeq.pretrained()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    synthetic_photo(root / "photo.png", 64, 48)
    synthetic_photo(root / "zoom.png", 100, 75, seed=1)
    (root / "notes.txt").write_text("not an image")
    outside = tmp_path_factory.mktemp("outside")
    synthetic_photo(outside / "secret.png", 16, 16, seed=3)
    (root / "link.png").symlink_to(outside / "secret.png")  # leads out of the folder
    return root


@pytest.fixture(scope="module")
def server(folder, model):
    app = create_app(folder, model, workers=2, queue=16)
    with LiveServer(app) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def _png(resp) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    return np.asarray(Image.open(io.BytesIO(resp.content)).convert("RGB"))


def test_info_json(client, server):
    r = client.get("/photo/info.json")
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["content-type"].startswith("application/json")
    assert 'rel="profile"' in r.headers["link"]
    doc = r.json()
    assert doc["@context"] == "http://iiif.io/api/image/3/context.json"
    assert doc["id"] == f"{server.url}/photo"
    assert doc["type"] == "ImageService3" and doc["protocol"] == "http://iiif.io/api/image"
    assert doc["profile"] == "level2"
    assert (doc["width"], doc["height"]) == (64, 48)
    assert doc["maxWidth"] == 4096 and doc["maxArea"] == 4096 * 4096
    assert "sizeUpscaling" in doc["extraFeatures"] and "mirroring" in doc["extraFeatures"]
    assert doc["tiles"] == [{"width": 512, "height": 512, "scaleFactors": [1]}]
    assert doc["preferredFormats"][0] == "jpg"
    ld = client.get("/photo.png/info.json", headers={"Accept": "application/ld+json"})
    assert ld.headers["content-type"].startswith("application/ld+json")
    assert ld.json()["width"] == 64
    big = client.get("/zoom@8x/info.json").json()  # 800 x 600 virtual: two scale factors
    assert (big["width"], big["height"]) == (800, 600)
    assert big["tiles"][0]["scaleFactors"] == [1, 2]
    redirect = client.get("/photo", follow_redirects=False)
    assert redirect.status_code == 303 and redirect.headers["location"].endswith("/photo/info.json")


PRESENTATION = "http://iiif.io/api/presentation/3/context.json"


def test_manifest_paints_the_image_service(client, server):
    """/{id}/manifest.json: a Presentation 3.0 manifest whose one canvas is painted by the
    image, with the image service whose id is info.json's id (Mirador, Universal Viewer)."""
    r = client.get("/photo/manifest.json")
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["content-type"] == f'application/ld+json;profile="{PRESENTATION}"'
    doc = r.json()
    assert doc["@context"] == PRESENTATION and doc["type"] == "Manifest"
    assert doc["id"] == f"{server.url}/photo/manifest.json"
    assert doc["label"] == {"none": ["photo"]}
    [canvas] = doc["items"]
    assert canvas["type"] == "Canvas" and canvas["id"].startswith(server.url)
    assert (canvas["width"], canvas["height"]) == (64, 48)  # the image's size
    [page] = canvas["items"]
    assert page["type"] == "AnnotationPage" and page["id"]
    [anno] = page["items"]
    assert anno["type"] == "Annotation" and anno["motivation"] == "painting"
    assert anno["target"] == canvas["id"] and anno["id"]
    body = anno["body"]
    assert body["type"] == "Image" and body["format"] == "image/jpeg"
    assert body["id"] == f"{server.url}/photo/full/max/0/default.jpg"
    assert (body["width"], body["height"]) == (64, 48)
    [svc] = body["service"]
    assert svc == {"id": f"{server.url}/photo", "type": "ImageService3", "profile": "level2"}
    info = client.get(f"{svc['id']}/info.json").json()  # the service resolves to its info.json
    assert info["id"] == svc["id"] and info["type"] == svc["type"]
    assert info["profile"] == svc["profile"]
    assert (info["width"], info["height"]) == (canvas["width"], canvas["height"])
    image = client.get(body["id"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(image.content)).size == (64, 48)
    [thumb] = doc["thumbnail"]
    assert thumb["service"] == body["service"] and thumb["id"] == body["id"]  # small: max
    # the JSON media type when the client asks only for it; ld+json when it asks for that
    plain = client.get("/photo/manifest.json", headers={"Accept": "application/json"})
    assert plain.headers["content-type"] == "application/json" and plain.json() == doc
    ld = client.get("/photo/manifest.json", headers={"Accept": "application/ld+json"})
    assert ld.headers["content-type"] == f'application/ld+json;profile="{PRESENTATION}"'
    # the virtual x4 image: a canvas of 4 times the pixels, a downscaled thumbnail
    big = client.get("/zoom@4x/manifest.json").json()
    assert big["id"] == f"{server.url}/zoom@4x/manifest.json"
    assert big["label"] == {"none": ["zoom@4x"]}
    assert (big["items"][0]["width"], big["items"][0]["height"]) == (400, 300)
    big_body = big["items"][0]["items"][0]["items"][0]["body"]
    assert big_body["service"][0]["id"] == f"{server.url}/zoom@4x"
    assert client.get(f"{server.url}/zoom@4x/info.json").json()["width"] == 400
    [big_thumb] = big["thumbnail"]
    assert (big_thumb["width"], big_thumb["height"]) == (256, 192)
    assert big_thumb["id"] == f"{server.url}/zoom@4x/full/256,192/0/default.jpg"
    t = client.get(big_thumb["id"])
    assert t.status_code == 200 and Image.open(io.BytesIO(t.content)).size == (256, 192)
    # the file name form of the identifier is accepted, as for info.json
    assert client.get("/photo.png/manifest.json").json()["items"][0]["width"] == 64


def test_manifest_unknown_identifiers_and_collection(client, server):
    for path in (
        "/nope/manifest.json",
        "/notes/manifest.json",  # not an image
        "/link/manifest.json",  # a symlink out of the folder
        "/..%2F..%2Fetc%2Fpasswd/manifest.json",
        "/%2e%2e/outside/secret.png/manifest.json",
        "/photo@3x/manifest.json",  # not an offered factor
    ):
        r = client.get(path)
        assert r.status_code == 404, (path, r.status_code, r.text)
        assert r.headers["access-control-allow-origin"] == "*"
    r = client.get("/collection.json")
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    assert r.headers["content-type"] == f'application/ld+json;profile="{PRESENTATION}"'
    doc = r.json()
    assert doc["@context"] == PRESENTATION and doc["type"] == "Collection"
    assert doc["id"] == f"{server.url}/collection.json" and doc["label"]["none"]
    names = [f"{n}{v}" for n in ("photo", "zoom") for v in ("", "@2x", "@4x", "@8x")]
    assert [m["label"] for m in doc["items"]] == [{"none": [n]} for n in names]
    for item in doc["items"]:
        assert item["type"] == "Manifest"
        m = client.get(item["id"])
        assert m.status_code == 200 and m.json()["id"] == item["id"]


def test_ids_percent_encode_the_identifier(tmp_path, model):
    """An identifier with characters a URI may not hold raw (a space, a #) is percent-encoded
    in info.json's id, the manifest's ids and the redirect; those URLs resolve."""
    synthetic_photo(tmp_path / "my cat #1.png", 16, 12)
    app = create_app(tmp_path, model)
    with LiveServer(app) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        base = f"{s.url}/my%20cat%20%231"
        info = c.get("/my%20cat%20%231/info.json").json()
        assert info["id"] == base
        doc = c.get("/my%20cat%20%231/manifest.json").json()
        assert doc["id"] == f"{base}/manifest.json" and doc["label"] == {"none": ["my cat #1"]}
        body = doc["items"][0]["items"][0]["items"][0]["body"]
        assert body["service"][0]["id"] == base
        assert c.get(f"{base}/info.json").json()["width"] == 16
        image = c.get(body["id"])
        assert image.status_code == 200
        assert f'<{base}/full/max/0/default.jpg>;rel="canonical"' in image.headers["link"]
        redirect = c.get("/my%20cat%20%231", follow_redirects=False)
        assert redirect.headers["location"] == f"{base}/info.json"
        assert c.get("/collection.json").json()["items"][0]["id"] == f"{base}/manifest.json"


def test_errors_and_identifiers(client):
    cases = {
        "/nope/info.json": 404,
        "/nope/full/max/0/default.jpg": 404,
        "/notes/info.json": 404,  # not an image
        "/link/info.json": 404,  # a symlink out of the folder
        "/..%2F..%2Fetc%2Fpasswd/info.json": 404,
        "/%2e%2e/outside/secret.png/info.json": 404,
        "/photo@3x/info.json": 404,  # not an offered factor
        "/photo/full/max/0": 400,
        "/photo/full/max/0/default.jpg/extra": 400,
        "/photo/full/65,/0/default.jpg": 400,  # upscales without ^
        "/photo/full/^5000,/0/default.jpg": 400,  # above maxWidth
        "/photo/0,0,1,1/^100,100/0/default.jpg": 400,  # above max_factor (x100)
        "/photo/full/max/45/default.jpg": 501,
        "/photo/full/max/0/default.gif": 501,
        "/photo/full/max/0/default.exe": 400,
        "/photo/%00/max/0/default.jpg": 400,
    }
    for path, status in cases.items():
        r = client.get(path)
        assert r.status_code == status, (path, r.status_code, r.text)
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.text.startswith(str(status))
    assert client.get("/photo/full/max/0/default.jpg").status_code == 200  # still up


def test_image_responses_headers_and_transforms(client, server):
    r = client.get("/photo/full/32,/0/default.jpg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert f'<{server.url}/photo/full/32,24/0/default.jpg>;rel="canonical"' in r.headers["link"]
    assert '<http://iiif.io/api/image/3/level2.json>;rel="profile"' in r.headers["link"]
    assert Image.open(io.BytesIO(r.content)).size == (32, 24)
    base = _png(client.get("/photo/0,0,40,20/max/0/default.png"))
    source = np.asarray(Image.open(server.app.state.service.root / "photo.png").convert("RGB"))
    assert np.array_equal(base, source[:20, :40])  # native size: the pixels themselves
    assert np.array_equal(_png(client.get("/photo/0,0,40,20/max/!0/default.png")), base[:, ::-1])
    rot = _png(client.get("/photo/0,0,40,20/max/90/default.png"))
    assert np.array_equal(rot, np.rot90(base, -1))  # clockwise
    assert np.array_equal(
        _png(client.get("/photo/0,0,40,20/max/!90/default.png")), np.rot90(base[:, ::-1], -1)
    )
    gray = Image.open(io.BytesIO(client.get("/photo/0,0,40,20/max/0/gray.png").content))
    assert gray.mode == "L"
    bitonal = np.asarray(
        Image.open(io.BytesIO(client.get("/photo/0,0,40,20/max/0/bitonal.png").content)).convert(
            "L"
        )
    )
    assert set(np.unique(bitonal)) <= {0, 255}
    webp = client.get("/photo/full/^96,/0/color.webp")
    assert webp.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(webp.content)).size == (96, 72)
    square = Image.open(io.BytesIO(client.get("/photo/square/max/0/default.png").content))
    assert square.size == (48, 48)
    pct = client.get("/photo/pct:50,50,50,50/^64,/0/default.png")
    assert Image.open(io.BytesIO(pct.content)).size == (64, 48)
    assert "32,24,32,24/^64,48" in pct.headers["link"]
    down = _png(client.get("/photo/full/16,12/0/default.png"))  # antialiased, not decimated
    assert abs(down.astype(float).mean() - source.astype(float).mean()) < 3
    assert not np.array_equal(down, source[::4, ::4])


@pytest.mark.parametrize(
    ("tile", "size", "area", "whole"),
    [
        ((20, 16), (50, 40), (64, 48), (160, 120)),  # x2.5 over the whole image (edge tiles 4 px)
        ((10, 10), (37, 37), (60, 40), (222, 148)),  # x3.7
        ((20, 10), (50, 37), (60, 40), (150, 148)),  # non-square: x2.5 across, x3.7 down
    ],
)
def test_seams_tiles_equal_whole_render(client, server, model, tile, size, area, whole):
    tw, th = tile
    fx, fy = size[0] / tw, size[1] / th
    region = "full" if area == (64, 48) else f"0,0,{area[0]},{area[1]}"
    ref = _png(client.get(f"/photo/{region}/^{whole[0]},{whole[1]}/0/default.png"))
    assert ref.shape == (whole[1], whole[0], 3)
    stitched = np.zeros_like(ref)
    for y in range(0, area[1], th):
        for x in range(0, area[0], tw):
            w, h = min(tw, area[0] - x), min(th, area[1] - y)
            sw, sh = round(w * fx), round(h * fy)
            tile_px = _png(client.get(f"/photo/{x},{y},{w},{h}/^{sw},{sh}/0/default.png"))
            assert tile_px.shape == (sh, sw, 3)
            top, left = round(y * fy), round(x * fx)
            stitched[top : top + sh, left : left + sw] = tile_px
    assert np.array_equal(stitched, ref), f"{int((stitched != ref).any(-1).sum())} pixels differ"
    # and the server's render is the model's own whole render of the image at that level
    full = (round(48 * fy), round(64 * fx))
    direct = reference_render(model, server.app.state.service.root / "photo.png", full)[
        : whole[1], : whole[0]
    ]
    diff = np.abs(direct.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    source = Image.open(server.app.state.service.root / "photo.png").convert("RGB")
    bicubic = np.asarray(source.resize((full[1], full[0]), Image.Resampling.BICUBIC))
    bicubic = bicubic[: whole[1], : whole[0]]
    assert np.abs(bicubic.astype(int) - ref.astype(int)).mean() > 1  # really the model


def test_features_once_across_six_zoom_levels(folder, model):
    """Zooming through 6 levels (x1 .. x6) of an image computes its LR features once; with
    per-level conditioning, once per upscaled level; downscaled levels compute none."""
    for feature_scale, expected in ((2.0, 1), ("level", 5)):
        app = create_app(folder, model, config=ServiceConfig(feature_scale=feature_scale))
        with LiveServer(app) as s, httpx.Client(base_url=s.url, timeout=60) as c:
            svc = app.state.service
            assert c.get("/zoom/full/50,/0/default.jpg").status_code == 200  # downscaled
            assert svc.feature_computations == 0
            for zoom in (1.0, 1.5, 2.25, 3.3, 4.5, 6.0):
                # the viewer's request: a 30 x 24 viewport around the centre at this zoom
                for x, y in ((35, 25), (40, 30), (5, 50)):
                    sw, sh = round(30 * zoom), round(24 * zoom)
                    up = "^" if zoom > 1 else ""
                    r = c.get(f"/zoom/{x},{y},30,24/{up}{sw},{sh}/0/default.jpg")
                    assert r.status_code == 200, r.text
            assert svc.feature_computations == expected
            assert sum(svc.feature_counts.values()) == expected
            if expected == 1:
                assert list(svc.feature_counts) == [("zoom", "2x2")]


def test_response_and_feature_caches_are_capped(folder, model):
    config = ServiceConfig(
        response_cache_bytes=6000, block=16, block_cache_bytes=4000, feature_cache_bytes=10**9
    )
    app = create_app(folder, model, config=config)
    with LiveServer(app) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        svc = app.state.service
        first = c.get("/photo/0,0,16,16/^32,32/0/default.png")
        again = c.get("/photo/0,0,16,16/^32,32/0/default.png")
        assert again.content == first.content and svc.responses.hits >= 1
        renders = svc.renders
        for i in range(8):
            assert c.get(f"/photo/{i * 4},0,16,16/^32,32/0/default.png").status_code == 200
        assert svc.responses.nbytes <= 6000 and svc.responses.evictions > 0
        assert svc.blocks.nbytes <= 4000 and svc.blocks.evictions > 0
        assert svc.renders > renders
        stats = c.get("/_scaleeq/stats").json()
        assert stats["caches"]["response"]["cap"] == 6000
        assert stats["feature_computations"] == 1


def test_busy_pool_answers_503_with_retry_after(folder, model):
    app = create_app(folder, model, workers=1, queue=0)
    svc = app.state.service
    gate = threading.Event()
    inner = svc.respond

    def slow(identifier, req):
        gate.wait(20)
        return inner(identifier, req)

    svc.respond = slow
    with LiveServer(app) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            futures = [
                ex.submit(c.get, f"/photo/0,0,{10 + i},10/max/0/default.jpg") for i in range(4)
            ]
            busy = [f.result() for f in futures[1:]]
            gate.set()
            first = futures[0].result()
        codes = sorted([first.status_code] + [b.status_code for b in busy])
        assert codes.count(503) >= 2 and 200 in codes, codes
        assert all(b.headers["retry-after"] == "1" for b in [first, *busy] if b.status_code == 503)
        assert c.get("/photo/0,0,30,10/max/0/default.jpg").status_code == 200  # recovered
        assert app.state.pool.rejected >= 2


def test_viewer_page_is_served(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "scaleeqViewer" in r.text and "<script src" not in r.text  # nothing third-party
    assert client.get("/_scaleeq/images").json()["images"] == [
        {"id": "photo", "width": 64, "height": 48},
        {"id": "zoom", "width": 100, "height": 75},
    ]


def test_serve_without_extra_prints_one_line(tmp_path):
    code = (
        "import sys\n"
        "sys.modules['starlette'] = None\n"
        "import scaleeq, scaleeq.serve\n"
        "try:\n"
        "    scaleeq.serve.create_app('.')\n"
        "except ImportError as e:\n"
        "    print('IMPORTERROR', e)\n"
        "import importlib.util\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n == 'starlette' else real(n, *a)\n"
        "from scaleeq.cli import main\n"
        f"sys.exit(main(['serve', {str(tmp_path)!r}]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "IMPORTERROR scaleeq serve needs its extra: pip install 'scaleeq[serve]'" in r.stdout
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines == ["scaleeq: error: scaleeq serve needs its extra: pip install 'scaleeq[serve]'"]


def test_serve_cli_errors(tmp_path, capsys):
    from scaleeq.cli import main

    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--feature-scale", "big"]) == 2
    assert "--feature-scale" in capsys.readouterr().err


def test_bf16_tiles_are_still_exact_windows_of_one_render(folder, model):
    """--precision bf16: the tile geometry does not depend on the precision, so tiles stitch
    into the whole bf16 render bit for bit; the pixels differ a little from the fp32 ones."""
    app = create_app(folder, model, config=ServiceConfig(precision="bf16"))
    with LiveServer(app) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        ref = _png(c.get("/photo/full/^160,120/0/default.png"))
        stitched = np.zeros_like(ref)
        for y in range(0, 48, 16):
            for x in range(0, 64, 20):
                w, h = min(20, 64 - x), min(16, 48 - y)
                sw, sh = round(w * 2.5), round(h * 2.5)
                tile = _png(c.get(f"/photo/{x},{y},{w},{h}/^{sw},{sh}/0/default.png"))
                top, left = round(y * 2.5), round(x * 2.5)
                stitched[top : top + sh, left : left + sw] = tile
    assert np.array_equal(stitched, ref)
    fp32 = create_app(folder, model)
    with LiveServer(fp32) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        other = _png(c.get("/photo/full/^160,120/0/default.png"))
    diff = np.abs(other.astype(int) - ref.astype(int))
    assert 0 < diff.max() <= 8 and diff.mean() < 0.5, (diff.max(), diff.mean())
    with pytest.raises(ValueError, match="precision must be one of"):
        ServiceConfig(precision="int8")
