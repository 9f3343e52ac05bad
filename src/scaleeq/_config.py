"""Constructor arguments recorded once: :func:`store_config` makes ``module.config`` the
arguments a module was built with, so ``type(module)(**module.config)`` builds it again.

scaleeq writes ``config`` into saved files (``ArbitraryScaleSR.save``) and rebuilds models from
it (``scaleeq.load``), so what it holds is part of the file format: every parameter of
``__init__`` by name, defaults filled in, lists and tuples stored as tuples.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["store_config"]

Init = TypeVar("Init", bound=Callable[..., None])


def store_config(init: Init) -> Init:
    """Decorate an ``__init__`` so that, once it has returned (its checks passed), the instance
    has ``config``: ``{parameter name: argument}`` for every parameter, defaults included, in
    signature order; list and tuple arguments are stored as tuples.

    A subclass whose ``__init__`` is decorated too records its own arguments (its decorator runs
    last). ``*args`` / ``**kwargs`` parameters are refused: they would not rebuild the module.

    Example:
        >>> from torch import nn
        >>> class Head(nn.Module):
        ...     @store_config
        ...     def __init__(self, width: int, *, depth: int = 2) -> None:
        ...         super().__init__()
        >>> Head(8).config
        {'width': 8, 'depth': 2}
    """
    signature = inspect.signature(init)
    variadic = [
        p.name
        for p in signature.parameters.values()
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if variadic:
        raise TypeError(
            f"store_config cannot record {init.__qualname__}'s variadic parameters {variadic}"
        )

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = list(bound.arguments.items())[1:]  # without self
        self.config = {
            name: tuple(value) if isinstance(value, list | tuple) else value
            for name, value in arguments
        }

    return wrapper  # type: ignore[return-value]
