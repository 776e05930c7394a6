"""minecli: mutual information between audio representations, estimated with MINE.

The public API. Importing ``minecli`` is cheap: torch and the estimation code load on first use of
``estimate_mi`` and friends, and model libraries only when an extractor is built.
"""
from __future__ import annotations

# Absolute imports: pytest imports a checkout's root __init__.py as a plain file when the folder's
# name is not an identifier (a clone into minecli-main), and relative imports fail there.

from typing import TYPE_CHECKING, Any

from minecli._version import __version__
from minecli.core.errors import ConfigError, MinecliError, MissingDependencyError, PluginError, WeightsNotFoundError
from minecli.core.hookspecs import hookimpl, hookspec
from minecli.core.interfaces import Estimator, Extractor, Head, ModelExtractor
from minecli.core.params import NoParams, param
from minecli.core.registry import get_registry, make_estimator, make_extractor
from minecli.core.spec import StreamSpec

if TYPE_CHECKING:
    from minecli.core.api import MIResult, estimate_mi

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
