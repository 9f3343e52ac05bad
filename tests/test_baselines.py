"""Baseline upsamplers (LIIF-style, bicubic features): the NeuralKrigingUpsampler contract."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import scaleeq
from scaleeq.layers.baselines import BicubicFeatureUpsampler, LIIFUpsampler, _lr_span
from scaleeq.models import EDSR

from ._helpers import perturbed


def make(cls):
    torch.manual_seed(0)
    up = cls(6, hidden=16) if cls is BicubicFeatureUpsampler else cls(6, hidden=16, chunk=37)
    with torch.no_grad():
        for p in up.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return up.eval()


UPS = {"liif": make(LIIFUpsampler), "bicubic-feat": make(BicubicFeatureUpsampler)}


@pytest.mark.parametrize("name", list(UPS))
@given(
    h=st.integers(1, 9), w=st.integers(1, 9), rh=st.floats(1, 6), rw=st.floats(1, 6), data=st.data()
)
def test_shapes_and_window_equals_crop(name, h, w, rh, rw, data):
    up = UPS[name]
    feat = torch.randn(2, 6, h, w)
    with torch.no_grad():
        full = up(feat, scale=(rh, rw))
    H, W = int(h * rh + 0.5), int(w * rw + 0.5)
    assert full.shape == (2, 3, H, W)
    wh, ww = data.draw(st.integers(1, H)), data.draw(st.integers(1, W))
    top, left = data.draw(st.integers(0, H - wh)), data.draw(st.integers(0, W - ww))
    with torch.no_grad():
        win = up(feat, scale=(rh, rw), window=(top, left, wh, ww))
    torch.testing.assert_close(
        win, full[:, :, top : top + wh, left : left + ww], rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("name", list(UPS))
def test_per_sample_scales_equal_separate_runs(name):
    up = UPS[name]
    feat = torch.randn(2, 6, 7, 6)
    scales = torch.tensor([[2.0, 2.0], [3.5, 2.5]], dtype=torch.float64)
    with torch.no_grad():
        batch = up(feat, scale=scales, window=(torch.tensor([1, 4]), torch.tensor([0, 3]), 5, 5))
        for i, (t, lf) in enumerate([(1, 0), (4, 3)]):
            alone = up(feat[i : i + 1], scale=tuple(scales[i].tolist()))
            torch.testing.assert_close(
                batch[i : i + 1], alone[:, :, t : t + 5, lf : lf + 5], rtol=1e-5, atol=1e-5
            )


def test_liif_reduces_to_its_ensemble_definition_at_pixel_centres():
    # at x1 every query sits on an LR pixel centre: the prediction of that pixel gets all the weight
    up = UPS["liif"]
    feat = torch.randn(1, 6, 5, 4)
    with torch.no_grad():
        out = up(feat, scale=1.0)
        unfolded = (
            torch.nn.functional.unfold(feat, 3, padding=1).view(1, 54, 5, 4).permute(0, 2, 3, 1)
        )
        z = torch.relu(up.first_feat(unfolded) + up.first_coord(torch.tensor([0.0, 0.0, 1.0, 1.0])))
        for layer in up.body:
            z = torch.relu(layer(z))
        expected = up.tail(z).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(UPS))
def test_retrofit_and_tiled_upscale(name):
    torch.manual_seed(0)
    up = (LIIFUpsampler if name == "liif" else BicubicFeatureUpsampler)(16, hidden=16)
    asr = scaleeq.retrofit(EDSR.from_preset("tiny", upscale=2), upsampler=up, skip="bicubic")
    lr = torch.rand(1, 3, 9, 8)
    with torch.no_grad():
        full = asr(lr, scale=2.5)
    torch.testing.assert_close(
        scaleeq.upscale(asr, lr, scale=2.5, max_window_pixels=50), full, rtol=1e-5, atol=1e-5
    )


# -- Tests written for surviving mutants of layers/baselines.py (docs/testing.md) ---------------
# Each states an invariant or compares with an independent reference (a plain-torch
# re-implementation of LIIF's query, torch's bicubic interpolation, hand-worked index ranges,
# the defaults documented in docs/api.md); none takes its expected value from the code under
# test.


def _make_coord(n: int) -> torch.Tensor:
    """LIIF's ``make_coord``: pixel centres of an ``n``-pixel axis in [-1, 1]."""
    return -1 + (2 * torch.arange(n, dtype=torch.float64) + 1) / n


def _liif_reference(up: LIIFUpsampler, feat: torch.Tensor, out_size: tuple[int, int]):
    """LIIF's ``query_rgb`` (Chen et al. 2021, feat_unfold + local_ensemble + cell_decode) for
    the whole ``out_size`` grid, with the MLP's weights taken from ``up``. LIIF measures the
    relative coordinate and the cell in [-1, 1] units times the LR size, i.e. twice LR pixels;
    the module measures in LR pixels, so both MLP inputs are halved here (and the 1e-9 is added
    to the area in LR pixels, as the module's units are)."""
    b, c, h, w = feat.shape
    big_h, big_w = out_size
    unfolded = F.unfold(feat, 3, padding=1).view(b, 9 * c, h, w)
    coord = torch.stack(
        torch.meshgrid(_make_coord(big_h), _make_coord(big_w), indexing="ij"), dim=-1
    ).view(1, -1, 2)
    coord = coord.expand(b, -1, -1).to(feat.dtype)
    feat_coord = torch.stack(torch.meshgrid(_make_coord(h), _make_coord(w), indexing="ij"), 0)
    feat_coord = feat_coord[None].expand(b, 2, h, w).to(feat.dtype)
    lr_size = torch.tensor([h, w], dtype=feat.dtype)
    cell = torch.tensor([2 / big_h, 2 / big_w], dtype=feat.dtype).expand(b, coord.shape[1], 2)
    weight = torch.cat([up.first_feat.weight, up.first_coord.weight], dim=1)
    preds, areas = [], []
    for vy in (-1, 1):
        for vx in (-1, 1):
            c_ = coord.clone()
            c_[:, :, 0] += vy / h + 1e-6  # half an LR pixel, as in LIIF
            c_[:, :, 1] += vx / w + 1e-6
            c_.clamp_(-1 + 1e-6, 1 - 1e-6)
            grid = c_.flip(-1)[:, None]
            q_feat = F.grid_sample(unfolded, grid, mode="nearest", align_corners=False)
            q_coord = F.grid_sample(feat_coord, grid, mode="nearest", align_corners=False)
            q_feat, q_coord = q_feat[:, :, 0].permute(0, 2, 1), q_coord[:, :, 0].permute(0, 2, 1)
            rel = (coord - q_coord) * lr_size / 2  # LR pixels
            inp = torch.cat([q_feat, rel, cell * lr_size / 2], dim=-1)
            z = F.relu(F.linear(inp, weight, up.first_feat.bias))
            for layer in up.body:
                z = F.relu(layer(z))
            preds.append(up.tail(z))
            areas.append((rel[:, :, 0] * rel[:, :, 1]).abs() + 1e-9)
    total = sum(areas)
    areas = [areas[3], areas[2], areas[1], areas[0]]  # LIIF's swap: the diagonal opposite
    out = sum(p * (a / total)[..., None] for p, a in zip(preds, areas, strict=True))
    return out.permute(0, 2, 1).reshape(b, -1, big_h, big_w)


# -- LIIFUpsampler: the local ensemble against LIIF's own query --------------------------------


@pytest.mark.parametrize("scale", [(2.5, 1.75), (3.0, 3.0)])
def test_liif_matches_a_plain_torch_liif_query_away_from_the_border(scale):
    # interior queries (0 <= LR position < n - 1 on both axes: all 4 neighbours inside the map)
    # equal LIIF's query_rgb: the nearest corner features, relative coordinates, cell and
    # opposite-area weights (float64, tight); some queries sit on an LR centre along an axis,
    # where the 1e-9 in the areas is all that separates the zero-area corners' weights.
    # (Border queries are left out: there the module clamps the neighbour's index but keeps
    # the unclamped relative coordinate, while LIIF measures from the clamped pixel.)
    up = perturbed(LIIFUpsampler(2, hidden=8, layers=2), 0.3).eval().double()
    feat = torch.randn(2, 2, 4, 5, dtype=torch.float64)
    big_h, big_w = int(4 * scale[0] + 0.5), int(5 * scale[1] + 0.5)
    with torch.no_grad():
        out = up(feat, scale=scale)
        ref = _liif_reference(up, feat, (big_h, big_w))
    assert out.shape == ref.shape == (2, 3, big_h, big_w)
    pos_y = (torch.arange(big_h) + 0.5) * 4 / big_h - 0.5  # HR centres in LR pixels
    pos_x = (torch.arange(big_w) + 0.5) * 5 / big_w - 0.5
    rows = (pos_y >= 0) & (pos_y < 3)
    cols = (pos_x >= 0) & (pos_x < 4)
    assert rows.sum() >= 3 and cols.sum() >= 3
    torch.testing.assert_close(
        out[:, :, rows][..., cols], ref[:, :, rows][..., cols], rtol=0, atol=1e-13
    )


def test_liif_border_queries_read_only_their_own_neighbourhood():
    # a query above the first LR centre reads LR row 0 (both of its row neighbours clamp to it)
    # through a 3x3 unfolding: rows >= 2 of the map cannot change it; likewise for columns
    up = perturbed(LIIFUpsampler(2, hidden=8, layers=2), 0.3).eval()
    feat = torch.randn(1, 2, 6, 6)
    other = feat.clone()
    other[:, :, 2:, :] = torch.randn(1, 2, 4, 6)
    other[:, :, :, 2:] = torch.randn(1, 2, 6, 4)
    with torch.no_grad():
        a, b = up(feat, scale=2.0), up(other, scale=2.0)
    torch.testing.assert_close(a[:, :, 0, 0], b[:, :, 0, 0], rtol=0, atol=0)
    assert not torch.allclose(a[:, :, 6:, 6:], b[:, :, 6:, 6:])


def test_liif_renders_at_most_chunk_pixels_at_a_time(monkeypatch):
    # the documented chunking: with chunk=10 and 7-pixel rows, one row per step (7 <= 10
    # pixels, two rows would be 14), and the result equals an unchunked render
    up = perturbed(LIIFUpsampler(2, hidden=8, layers=2, chunk=10), 0.3).eval()
    feat = torch.randn(1, 2, 3, 3)
    with torch.no_grad():
        whole = LIIFUpsampler(**{**up.config, "chunk": 10**6})
        whole.load_state_dict(up.state_dict())
        expected = whole(feat, size=(5, 7))
    seen = []
    render = up._render

    def spy(proj, pos_y, pos_x, *args):
        seen.append(pos_y.shape[1] * pos_x.shape[1])
        return render(proj, pos_y, pos_x, *args)

    monkeypatch.setattr(up, "_render", spy)
    with torch.no_grad():
        out = up(feat, size=(5, 7))
    assert seen == [7] * 5
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


# -- LIIFUpsampler: defaults, config and argument checks ----------------------------------------


def test_liif_defaults_are_the_documented_ones():
    # docs/api.md: LIIFUpsampler(in_channels, out_channels=3, *, hidden=256, layers=4,
    # chunk=65536); LIIF's MLP: 4 hidden layers of 256, i.e. the (9C + 4) -> 256 input layer
    # (one bias: the coordinate part has none), 3 more 256 -> 256 layers, the 256 -> 3 output
    up = LIIFUpsampler(2)
    assert up.config == {
        "in_channels": 2,
        "out_channels": 3,
        "hidden": 256,
        "layers": 4,
        "chunk": 65536,
    }
    assert up.chunk == 65536
    n_params = (18 * 256 + 256) + 4 * 256 + 3 * (256 * 256 + 256) + (256 * 3 + 3)
    assert sum(p.numel() for p in up.parameters()) == n_params
    assert up.first_coord.bias is None


def test_liif_config_rebuilds_the_model():
    # docs/api.md: type(model)(**model.config) rebuilds it (same parameter shapes)
    up = LIIFUpsampler(5, 2, hidden=12, layers=3, chunk=99)
    assert up.config == {
        "in_channels": 5,
        "out_channels": 2,
        "hidden": 12,
        "layers": 3,
        "chunk": 99,
    }
    again = LIIFUpsampler(**up.config)
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in up.state_dict().items()
    }
    # layers=1: the input layer straight into the output layer
    assert sum(p.numel() for p in LIIFUpsampler(1, 1, hidden=4, layers=1).parameters()) == (
        9 * 4 + 4 + 4 * 4 + 4 + 1
    )


def test_liif_argument_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"^layers must be an int >= 1, got 0"):
        LIIFUpsampler(2, layers=0)
    with pytest.raises(ValueError, match=r"^chunk must be an int >= 1, got 0"):
        LIIFUpsampler(2, chunk=0)


@pytest.mark.parametrize("cls", [LIIFUpsampler, BicubicFeatureUpsampler])
def test_feat_errors_name_the_argument_and_its_layout(cls):
    up = cls(4, hidden=8)
    with pytest.raises(ValueError, match=r"^feat must be a 4-D tensor of shape \(B, C, h, w\), "):
        up(torch.rand(4, 5, 5), scale=2.0)
    with pytest.raises(TypeError, match=r"^feat must be a torch.Tensor of shape \(B, C, h, w\), "):
        up([[1.0]], scale=2.0)
    with pytest.raises(ValueError, match=r"^feat must have 4 channels in dim 1, got 3"):
        up(torch.rand(1, 3, 5, 5), scale=2.0)


@pytest.mark.parametrize("cls", [LIIFUpsampler, BicubicFeatureUpsampler])
def test_size_argument_sets_the_output_size(cls):
    up = cls(4, hidden=8)
    with torch.no_grad():
        assert up(torch.rand(1, 4, 3, 4), size=(7, 5)).shape == (1, 3, 7, 5)


# -- _lr_span: hand-worked ranges ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pos", "n", "expected"),
    [
        ([2.3, 4.6], 8, (1, 7)),  # floors 2..5, one more on each side: [1, 7)
        ([7.5], 8, (6, 8)),  # floor 7 is the last pixel: [6, 8)
        ([9.5], 8, (6, 8)),  # beyond the map: floor and floor + 1 clamp to 7
        ([-0.25, -0.1], 8, (0, 2)),  # floor -1 clamps to 0, floor + 1 = 0: [0, 2)
        ([-3.0], 8, (0, 2)),  # far before the map: both clamp to 0
        ([0.0, 0.5], 1, (0, 1)),  # a one-pixel map
    ],
)
def test_lr_span_hand_worked(pos, n, expected):
    assert _lr_span(torch.tensor([pos], dtype=torch.float64), n) == expected


def test_lr_span_is_the_whole_map_while_tracing(monkeypatch):
    # documented: while tracing, the whole map (no tensor reads)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # the one gate
    assert _lr_span(torch.tensor([[3.2, 3.7]]), 9) == (0, 9)


# -- BicubicFeatureUpsampler ------------------------------------------------------------------


def _bicubic_reference(up: BicubicFeatureUpsampler, feat, size):
    """torch's bicubic (a = -0.75, align_corners=False) and the 1x1 layers with GELU."""
    z = F.interpolate(feat, size=size, mode="bicubic", align_corners=False)
    convs = [m for m in up.body if isinstance(m, torch.nn.Conv2d)] + [up.tail]
    for i, conv in enumerate(convs):
        z = F.conv2d(z, conv.weight, conv.bias)
        if i < len(convs) - 1:
            z = F.gelu(z)
    return z


@pytest.mark.parametrize("layers", [0, 1, 2])
def test_bicubic_features_match_torch_bicubic_then_1x1_layers(layers):
    # layers hidden 1x1 convolutions (width 8) with GELU, then the output 1x1 convolution;
    # layers=0: the output convolution alone
    up = perturbed(BicubicFeatureUpsampler(3, 2, hidden=8, layers=layers), 0.3).eval().double()
    n_conv = sum(isinstance(m, torch.nn.Conv2d) for m in up.modules())
    dims = [3] + [8] * layers + [2]
    assert sum(p.numel() for p in up.parameters()) == sum(
        a * b + b for a, b in itertools.pairwise(dims)
    )
    assert n_conv == layers + 1
    feat = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    with torch.no_grad():
        out = up(feat, size=(11, 9))
        ref = _bicubic_reference(up, feat, (11, 9))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


def test_bicubic_defaults_and_config():
    # docs/api.md: BicubicFeatureUpsampler(in_channels, out_channels=3, *, hidden=256, layers=2)
    up = BicubicFeatureUpsampler(4)
    assert up.config == {"in_channels": 4, "out_channels": 3, "hidden": 256, "layers": 2}
    n_params = (4 * 256 + 256) + (256 * 256 + 256) + (256 * 3 + 3)
    assert sum(p.numel() for p in up.parameters()) == n_params
    small = BicubicFeatureUpsampler(5, 2, hidden=6, layers=3)
    assert small.config == {"in_channels": 5, "out_channels": 2, "hidden": 6, "layers": 3}
    again = BicubicFeatureUpsampler(**small.config)
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in small.state_dict().items()
    }


@pytest.mark.parametrize("cls", [LIIFUpsampler, BicubicFeatureUpsampler])
def test_baselines_render_on_the_features_device(cls):
    # the query positions and the gather indices follow the features' device: on `meta` (a
    # stand-in for an accelerator) a render mixing in CPU tensors fails
    up = cls(4, hidden=8).to("meta")
    out = up(torch.empty(2, 4, 5, 6, device="meta"), scale=2.5)
    assert out.device.type == "meta" and out.shape == (2, 3, 13, 15)
