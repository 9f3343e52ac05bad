"""Shared test configuration: hypothesis profiles, deterministic seeds, dtype tolerances."""

from __future__ import annotations

import os

import torch

# Triton's CPU interpreter must be chosen before triton is first imported; on a machine with a
# GPU the Triton tests run the real kernels instead.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
from hypothesis import HealthCheck, settings

from scaleeq import _torchvision

_torchvision.apply()  # spandrel imports torchvision (see the module's docstring)

# "ci" (default): bounded and derandomised, so a run is reproducible and fits the time budget.
# "dev": more examples, random seeds.  Select with HYPOTHESIS_PROFILE=dev.
settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# One thread per pytest-xdist worker (the default run uses one worker per core), else up to 2.
torch.set_num_threads(
    1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads())
)

# No tqdm monitor thread: test runners that fork per test run (mutmut) deadlock in the child
# when the parent's monitor thread holds tqdm's lock at the fork; the tests do not need it.
try:
    import tqdm

    tqdm.tqdm.monitor_interval = 0
except ImportError:  # tqdm is optional
    pass

# (rtol, atol) per dtype for comparisons between exact-in-math formulations.
TOL = {torch.float64: (1e-10, 1e-12), torch.float32: (1e-5, 1e-5)}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
