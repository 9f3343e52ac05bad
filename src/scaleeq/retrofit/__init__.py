"""``retrofit(model)``: turn a fixed-scale SR network into an arbitrary-scale one.

- :mod:`~scaleeq.retrofit.layouts`: the recognised layouts (one adapter each) and
  :func:`detect_layout`;
- :mod:`~scaleeq.retrofit.model`: the :class:`ArbitraryScaleSR` wrapper;
- :mod:`~scaleeq.retrofit.format`: the file format :meth:`ArbitraryScaleSR.save` writes;
- :mod:`~scaleeq.retrofit.io`: :func:`load`, which rebuilds a model from such a file;
- :mod:`~scaleeq.retrofit.build`: :func:`retrofit` itself.
"""

from .build import retrofit
from .io import load
from .layouts import detect_layout
from .model import ArbitraryScaleSR

__all__ = ["ArbitraryScaleSR", "detect_layout", "load", "retrofit"]
