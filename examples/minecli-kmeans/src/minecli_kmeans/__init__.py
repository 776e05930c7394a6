"""minecli-kmeans: a minecli plugin that turns any float stream into k-means units (HuBERT style).

Importing this module is cheap (no torch): minecli imports every plugin to list it.
"""
from __future__ import annotations

from collections.abc import Callable

from minecli import hookimpl

from .extractor import KMeansParams, KMeansTokens

__version__ = "0.1.0"


@hookimpl
def register_extractors(register: Callable[[type], None]) -> None:
    """Register the ``kmeans`` extractor."""
    register(KMeansTokens)


__all__ = ["KMeansParams", "KMeansTokens", "register_extractors", "__version__"]
