"""Adapter recognition across spandrel's architectures, with spandrel's own classes.

* Every zoo model (``tests/zoo/*.py``) is detected as its case's layout, and no adapter of
  another family (another adapter module) claims it: ``matches`` is specific to its family.
* Networks spandrel loads that are not fixed-scale SR networks (DnCNN, NAFNet: denoising /
  restoration at x1) and AuraSR (an SR network out of retrofit's scope: its forward samples
  noise and a style latent, see ``scaleeq/retrofit/adapters/aurasr.py``) are refused by
  ``scaleeq.retrofit`` with a ValueError naming the network, never silently retrofitted.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from torch import nn

spandrel = pytest.importorskip("spandrel")

import scaleeq  # noqa: E402
from scaleeq.retrofit.adapters import FAMILIES, detect  # noqa: E402

from .test_spandrel_zoo import CASES, IDS  # noqa: E402
from .zoo._case import ZooCase  # noqa: E402


def _family_of() -> dict[str, str]:
    """Adapter layout name -> the adapter module (family) defining it."""
    out: dict[str, str] = {}
    for family in FAMILIES:
        module = importlib.import_module(f"scaleeq.retrofit.adapters.{family}")
        for cls in module.ADAPTERS:
            out[cls.name] = family
    return out


def _adapters() -> list[tuple[str, type]]:
    pairs = []
    for family in FAMILIES:
        module = importlib.import_module(f"scaleeq.retrofit.adapters.{family}")
        pairs.extend((family, cls) for cls in module.ADAPTERS)
    return pairs


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_each_zoo_model_is_detected_as_its_layout_and_by_no_other_family(case: ZooCase):
    torch.manual_seed(0)
    model = case.build().eval()
    assert detect(model).name == case.layout
    own = _family_of()[case.layout]
    claimed = [cls.name for family, cls in _adapters() if family != own and cls.matches(model)]
    assert claimed == [], f"{case.id} is also matched by {claimed}"


def test_the_zoo_covers_every_layout_it_names():
    names = _family_of()
    assert {c.layout for c in CASES} <= set(names)


def _dncnn() -> nn.Module:
    from spandrel.architectures.DnCNN import DnCNN

    return DnCNN(in_nc=3, out_nc=3, nc=8, nb=4)


def _nafnet() -> nn.Module:
    from spandrel.architectures.NAFNet import NAFNet

    return NAFNet(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1])


def _aurasr() -> nn.Module:
    from spandrel.architectures.AuraSR import AuraSR

    return AuraSR(
        dim=4,
        image_size=None,
        input_image_size=None,
        style_network={"dim_in": 4, "dim_out": 16, "depth": 1},
        self_attn_dim_head=4,
        self_attn_heads=2,
        attn_depths=(1, 1, 1, 1, 1),
        mid_attn_depth=1,
        num_conv_kernels=2,
    )


REFUSED = {"DnCNN": _dncnn, "NAFNet": _nafnet, "AuraSR": _aurasr}


@pytest.mark.parametrize("arch", sorted(REFUSED))
def test_networks_out_of_scope_are_refused_naming_the_model(arch: str):
    torch.manual_seed(0)
    model = REFUSED[arch]().eval()
    desc = spandrel.ModelLoader().load_from_state_dict(model.state_dict())
    assert desc.architecture.id == arch
    name = type(desc.model).__name__
    for given in (desc, desc.model):
        with pytest.raises(ValueError, match=name):
            scaleeq.retrofit(given)
    with pytest.raises(ValueError, match=name):
        detect(desc.model)
