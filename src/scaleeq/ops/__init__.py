"""Low-level operations: HR query geometry and the kriging aggregation."""

from .aggregate import BACKEND_ALIASES, BACKENDS, distance_kernel, kriging_aggregate
from .coords import AxisQueries, axis_queries, nearest_index, resolve_window

__all__ = [
    "BACKENDS",
    "BACKEND_ALIASES",
    "AxisQueries",
    "axis_queries",
    "distance_kernel",
    "kriging_aggregate",
    "nearest_index",
    "resolve_window",
]
