"""``retrofit(model)``: turn a fixed-scale SR network into an arbitrary-scale one.

- :mod:`~scaleeq.retrofit.layouts`: the recognised layouts (one adapter each) and
  :func:`detect_layout`;
- :mod:`~scaleeq.retrofit.model`: the :class:`ArbitraryScaleSR` wrapper;
- :mod:`~scaleeq.retrofit.io`: :func:`load` and the file format written by
  :meth:`ArbitraryScaleSR.save`;
- :mod:`~scaleeq.retrofit.build`: :func:`retrofit` itself.
"""

from .build import retrofit
from .io import load
from .layouts import detect_layout
from .model import ArbitraryScaleSR

__all__ = ["ArbitraryScaleSR", "detect_layout", "load", "retrofit"]
