"""Let spandrel import beside a CPU build of torch and the registry's CUDA-built torchvision.

spandrel imports torchvision (for two restoration architectures, LaMa and RestoreFormer, that
no test here uses). The torchvision wheel on the package registry is built against CUDA torch:
beside the CPU build its C extension does not load, which torchvision tolerates everywhere but
in ``torchvision/_meta_registrations.py``, whose ``register_fake("torchvision::nms")`` (and
``qnms``) then fails with ``RuntimeError: operator torchvision::nms does not exist`` and aborts
``import torchvision``. Where (and only where) that happens, the two operator *schemas* are
declared, with no implementation, so the pure-Python parts of torchvision import; calling
``nms`` would still fail. Nothing of spandrel is replaced: its own classes run unchanged. Used by
:mod:`scaleeq.spandrel`, the spandrel example and the tests; never on import of scaleeq.
"""

from __future__ import annotations

from typing import Any

import torch

_LIB: torch.library.Library | None = None


def apply() -> None:
    """Declare ``torchvision::nms`` / ``qnms`` if torchvision's C extension cannot load."""
    global _LIB
    if _LIB is not None:
        return
    try:
        import torchvision  # noqa: F401
    except RuntimeError as e:
        if "torchvision::nms" not in str(e):
            raise
    else:
        return
    import sys

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # the half-imported package
    _LIB = torch.library.Library("torchvision", "DEF")
    _LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def import_spandrel(purpose: str = "this") -> Any:
    """``import spandrel`` (with :func:`apply` first).

    Raises:
        ImportError: spandrel is not installed; the message says what to install.
    """
    try:
        apply()
        import spandrel
    except ImportError as e:
        raise ImportError(
            f"{purpose} needs the spandrel package: pip install 'scaleeq[spandrel]'"
        ) from e
    return spandrel
