"""minecli: mutual information between audio representations, estimated with MINE.

The public API. Importing ``minecli`` is cheap: torch and the estimation code load on first use of
``estimate_mi`` and friends, and model libraries only when an extractor is built.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .core.errors import ConfigError, MinecliError, MissingDependencyError, PluginError, WeightsNotFoundError
from .core.hookspecs import hookimpl, hookspec
from .core.interfaces import Estimator, Extractor, Head, ModelExtractor
from .core.params import NoParams, param
from .core.registry import get_registry, make_estimator, make_extractor
from .core.spec import StreamSpec

if TYPE_CHECKING:
    from .core.api import MIResult, estimate_mi

_LAZY = {
    "estimate_mi": ("minecli.core.api", "estimate_mi"),
    "MIResult": ("minecli.core.api", "MIResult"),
    "run_config": ("minecli.core.pipeline", "run_config"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'minecli' has no attribute {name!r}")


__all__ = [
    "__version__", "hookimpl", "hookspec", "StreamSpec", "Extractor", "ModelExtractor", "Head", "Estimator", "param",
    "NoParams", "get_registry", "make_extractor", "make_estimator", "estimate_mi", "MIResult",
    "run_config", "MinecliError", "ConfigError", "PluginError", "MissingDependencyError",
    "WeightsNotFoundError",
]
