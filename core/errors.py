"""Errors that minecli reports to the user as one clear line."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class MinecliError(Exception):
    """A run or configuration error; the CLI prints its message on one line and exits 1."""


class ConfigError(MinecliError):
    """One or more problems in a configuration, all reported together."""

    def __init__(self, problems: list[str] | str, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        head = f"{source}: " if source else ""
        if len(self.problems) == 1:
            super().__init__(head + self.problems[0])
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            super().__init__(f"{head}{len(self.problems)} problems:\n{lines}")


class PluginError(MinecliError):
    """A plugin could not be loaded, registered or found."""


class MissingDependencyError(MinecliError):
    """An optional package that a plugin needs is not installed."""

    def __init__(self, package: str, extra: str, what: str) -> None:
        super().__init__(
            f"{what} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install '{package}' (or, in a minecli checkout: pip install -e '.[{extra}]')"
        )


class WeightsNotFoundError(MinecliError):
    """Pretrained weights are missing and could not be downloaded."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' for the closest candidate, or ''."""
    close = difflib.get_close_matches(str(name), list(candidates), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
