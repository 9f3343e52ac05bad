"""AuraSR: no cases. It is out of scope for retrofit (its forward draws noise and a random
style latent that modulates every block before the cut); the reason is in
``scaleeq/retrofit/adapters/aurasr.py``, and ``tests/test_spandrel_detect.py`` checks that
``retrofit`` refuses it."""

from __future__ import annotations

from ._case import ZooCase

CASES: list[ZooCase] = []
