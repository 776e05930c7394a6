"""The hooks a minecli plugin may implement (pluggy project name ``minecli``).

A plugin is a module (or object) listed under the ``minecli.plugins`` entry-point group with one
or more functions decorated by ``minecli.hookimpl``. The host passes a ``register`` callback, so
one hook call may register many items; the host checks every item and names the plugin at fault.
Hook implementations must not give their arguments default values: pluggy passes them by name.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "minecli"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_extractors(register: Callable[[type], None]) -> None:
    """Register extractor classes.

    :param register: call ``register(cls)`` once per ``minecli.Extractor`` subclass; ``cls.name``
        is the registry name a config uses under ``x.extractor`` / ``y.extractor``.
    """


@hookspec
def register_heads(register: Callable[[type], None]) -> None:
    """Register encoder-head classes.

    :param register: call ``register(cls)`` once per ``minecli.Head`` subclass; ``cls.name`` is
        the name a config uses under ``x.head.name`` / ``y.head.name``.
    """


@hookspec
def register_estimators(register: Callable[[type], None]) -> None:
    """Register estimator (bound) classes.

    :param register: call ``register(cls)`` once per ``minecli.Estimator`` subclass; ``cls.name``
        is the name a config uses under ``estimator.name``.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``minecli`` command line.

    :param cli: the root ``click.Group``; add commands with ``cli.command()`` or ``cli.add_command``.
    """
