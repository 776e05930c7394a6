"""The plugin registry: entry-point discovery, isolated loading, lookup with did-you-mean."""
from __future__ import annotations

import fnmatch
import inspect
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

import pluggy

from . import hookspecs
from .errors import PluginError, did_you_mean
from .interfaces import Estimator, Extractor, Head, Plugin

ENTRY_POINT_GROUP = "minecli.plugins"
Kind = Literal["extractor", "head", "estimator"]
KINDS: tuple[Kind, ...] = ("extractor", "head", "estimator")
_BASES: dict[str, type] = {"extractor": Extractor, "head": Head, "estimator": Estimator}
_HOOKS: dict[str, str] = {"extractor": "register_extractors", "head": "register_heads",
                          "estimator": "register_estimators"}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_.\-]*$")

#: environment switches for debugging plugin loading
ENV_DISABLE_AUTOLOAD = "MINECLI_DISABLE_PLUGIN_AUTOLOAD"
ENV_TRACE = "MINECLI_TRACE_PLUGINS"
ENV_STRICT = "MINECLI_STRICT_PLUGINS"
ENV_DISABLE = "MINECLI_DISABLE_PLUGINS"


@dataclass(frozen=True)
class Source:
    """Where a registered item came from."""

    plugin: str
    package: str
    version: str

    def __str__(self) -> str:
        return f"plugin '{self.plugin}' ({self.package} {self.version})"


@dataclass(frozen=True)
class Entry:
    """One registered item."""

    kind: Kind
    name: str
    obj: type
    source: Source

    @property
    def summary(self) -> str:
        """First line of the item's summary."""
        text = getattr(self.obj, "summary", "") or (self.obj.__doc__ or "")
        return text.strip().splitlines()[0] if text.strip() else ""


@dataclass
class Failure:
    """A plugin that could not be loaded or registered, and why."""

    plugin: str
    package: str
    reason: str


@dataclass
class Registry:
    """All extractors, heads and estimators known to this process."""

    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    failures: list[Failure] = field(default_factory=list)
    plugins: dict[str, Source] = field(default_factory=dict)
    hooks_by_plugin: dict[str, list[str]] = field(default_factory=dict)
    pm: pluggy.PluginManager | None = None

    def register(self, kind: Kind, obj: type, source: Source) -> None:
        """Add one item; raises PluginError if it is malformed or its name is taken."""
        base = _BASES[kind]
        if not (inspect.isclass(obj) and issubclass(obj, base)):
            raise PluginError(f"{source} registered {obj!r} as a {kind}, but it is not a subclass of "
                              f"minecli.{base.__name__}")
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise PluginError(f"{source} registered {obj.__name__} with an invalid name {name!r}: use "
                              "lower-case letters, digits, '_', '-' or '.'")
        if inspect.isabstract(obj):
            missing = ", ".join(sorted(obj.__abstractmethods__))
            raise PluginError(f"{source} registered {kind} '{name}' without implementing: {missing}")
        existing = self.entries[kind].get(name)
        if existing is not None and existing.obj is not obj:
            raise PluginError(f"two plugins register the {kind} '{name}': {existing.source} and {source}; "
                              f"uninstall one, or disable one with {ENV_DISABLE}={source.plugin}")
        self.entries[kind][name] = Entry(kind, name, obj, source)

    def get(self, kind: Kind, name: str) -> Entry:
        """Look an item up by name; unknown names get a did-you-mean and a pointer to the listing."""
        entry = self.entries[kind].get(name)
        if entry is None:
            known = list(self.entries[kind])
            hint = did_you_mean(name, known)
            failed = [f.plugin for f in self.failures]
            extra = f" (plugins that failed to load: {', '.join(failed)})" if failed else ""
            raise PluginError(f"Unknown {kind} '{name}'.{hint} Run 'minecli plugins list --kind {kind}'"
                              f" to see what is installed{extra}.")
        return entry

    def names(self, kind: Kind) -> list[str]:
        """Sorted names of one kind."""
        return sorted(self.entries[kind])

    def list(self, pattern: str | None = None, kind: Kind | None = None) -> list[Entry]:
        """Entries matching a shell-style pattern (``enc*``), sorted by kind then name."""
        out = []
        for k in KINDS:
            if kind and k != kind:
                continue
            for name in sorted(self.entries[k]):
                if pattern is None or fnmatch.fnmatchcase(name, pattern) or pattern in name:
                    out.append(self.entries[k][name])
        return out


def _dist_info(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ("unknown", "?")
    return (dist.metadata["Name"] or "unknown", dist.version or "?")


def _entry_points() -> list[metadata.EntryPoint]:
    eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    seen: dict[tuple[str, str], metadata.EntryPoint] = {}
    for ep in eps:
        # The same distribution can be visible twice (editable install plus a stale egg-info); keyed
        # by distribution too, so a third-party plugin sharing a built-in's name is not dropped silently.
        seen.setdefault((_dist_info(ep)[0], ep.name), ep)
    # minecli's own plugins load first, so a third party can never shadow a built-in name.
    return sorted(seen.values(), key=lambda ep: (_dist_info(ep)[0] != "minecli", ep.name))


def _report(msg: str) -> None:
    print(f"minecli: warning: {msg}", file=sys.stderr)


def _plugin_hooks(module: Any) -> list[str]:
    names = []
    for attr in dir(module):
        fn = getattr(module, attr, None)
        if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_impl"):
            names.append(attr)
    return names


def _register_plugin(reg: Registry, pm: pluggy.PluginManager, name: str, module: Any, source: Source) -> None:
    """Register one plugin's items into a scratch registry first, so a failure leaves no half-state."""
    hooks = _plugin_hooks(module)
    valid = {"register_extractors", "register_heads", "register_estimators", "register_commands"}
    unknown = [h for h in hooks if h not in valid]
    if unknown:
        hint = did_you_mean(unknown[0], sorted(valid))
        raise PluginError(f"{source} implements unknown hook '{unknown[0]}'.{hint}")
    if not hooks:
        raise PluginError(f"{source} implements no minecli hook; decorate a function with "
                          "@minecli.hookimpl (e.g. register_extractors(register))")
    staged: list[tuple[Kind, type]] = []
    for kind in KINDS:
        hook = _HOOKS[kind]
        fn = getattr(module, hook, None)
        if fn is None or hook not in hooks:
            continue
        got: list[type] = []
        fn(register=got.append)
        staged.extend((kind, obj) for obj in got)
    scratch = Registry(entries={k: dict(v) for k, v in reg.entries.items()})
    for kind, obj in staged:
        scratch.register(kind, obj, source)
    pm.register(module, name=name)
    reg.entries = scratch.entries
    reg.plugins[name] = source
    reg.hooks_by_plugin[name] = hooks


def build_registry(extra_plugins: Iterable[tuple[str, Any]] = (), autoload: bool | None = None) -> Registry:
    """Discover plugins through entry points (plus `extra_plugins`) and register their items.

    A plugin that fails to import or to register is reported on stderr by name and skipped, unless
    MINECLI_STRICT_PLUGINS=1, which turns the first failure into an error.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if os.environ.get(ENV_TRACE):
        pm.trace.root.setwriter(lambda msg: print(f"minecli: trace: {msg}", end="", file=sys.stderr))
        pm.enable_tracing()
    strict = bool(os.environ.get(ENV_STRICT))
    trace = bool(os.environ.get(ENV_TRACE))
    disabled = {n.strip() for n in os.environ.get(ENV_DISABLE, "").split(",") if n.strip()}
    if autoload is None:
        autoload = not os.environ.get(ENV_DISABLE_AUTOLOAD)
    reg = Registry(pm=pm)

    candidates: list[tuple[str, Callable[[], Any], Source]] = []
    for ep in _entry_points():
        package, version = _dist_info(ep)
        if not autoload and package != "minecli":
            continue
        candidates.append((ep.name, ep.load, Source(ep.name, package, version)))
    for name, obj in extra_plugins:
        candidates.append((name, (lambda o=obj: o), Source(name, getattr(obj, "__name__", name), "local")))

    for name, loader, source in candidates:
        if name in disabled:
            continue
        try:
            if name in reg.plugins:
                raise PluginError(f"two plugins are named '{name}': {reg.plugins[name]} and {source}; "
                                  f"uninstall one, or rename the entry point in group '{ENTRY_POINT_GROUP}'")
            module = loader()
            _register_plugin(reg, pm, name, module, source)
            if trace:
                print(f"minecli: trace: loaded {source}", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must never break the CLI
            reason = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
            if strict:
                raise PluginError(f"plugin '{name}' ({source.package}) failed to load: {reason}") from exc
            if trace:
                traceback.print_exc(file=sys.stderr)
            reg.failures.append(Failure(name, source.package, reason))
            _report(f"plugin '{name}' ({source.package}) was skipped: {reason}")
    return reg


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use (never at import time)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = build_registry()
    return _REGISTRY


def reset_registry(registry: Registry | None = None) -> None:
    """Replace (or drop, to rebuild on next use) the process-wide registry; for tests and tools."""
    global _REGISTRY
    _REGISTRY = registry


def get_plugin_manager() -> pluggy.PluginManager:
    """The pluggy manager behind the registry (for hooks such as register_commands)."""
    reg = get_registry()
    assert reg.pm is not None
    return reg.pm


def get_extractor_class(name: str) -> type[Extractor]:
    """The extractor class registered under `name`."""
    return get_registry().get("extractor", name).obj  # type: ignore[return-value]


def get_head_class(name: str) -> type[Head]:
    """The head class registered under `name`."""
    return get_registry().get("head", name).obj  # type: ignore[return-value]


def get_estimator_class(name: str) -> type[Estimator]:
    """The estimator class registered under `name`."""
    return get_registry().get("estimator", name).obj  # type: ignore[return-value]


def make_extractor(name: str, params: dict[str, Any] | None = None, where: str = "params") -> Extractor:
    """Build an extractor from its registry name and a mapping of params (no weights loaded)."""
    cls = get_extractor_class(name)
    return cls(cls.parse(params, where))


def make_estimator(name: str, params: dict[str, Any] | None = None, where: str = "estimator") -> Estimator:
    """Build an estimator from its registry name and params."""
    cls = get_estimator_class(name)
    return cls(cls.parse(params, where))



__all__ = ["Entry", "Failure", "Registry", "Source", "build_registry", "get_registry", "reset_registry",
           "make_extractor", "make_estimator", "get_plugin_manager", "Plugin"]
