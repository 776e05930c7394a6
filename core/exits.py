"""A plugin that calls sys.exit stops minecli with one line naming the plugin, never silently."""
from __future__ import annotations

import inspect
import os
import traceback


def who_exited(exc: SystemExit) -> str:
    """The plugin (or, failing that, the file and line) whose code raised `exc`."""
    frames = traceback.extract_tb(exc.__traceback__)
    owners: dict[str, str] = {}
    try:
        from .registry import get_registry

        for kind_entries in get_registry().entries.values():
            for entry in kind_entries.values():
                path = inspect.getsourcefile(entry.obj)
                if path:
                    owners[os.path.realpath(path)] = f"plugin '{entry.source.plugin}' ({entry.kind} '{entry.name}')"
    except Exception:  # noqa: BLE001 - naming the culprit must never hide the exit itself
        pass
    for frame in reversed(frames):
        owner = owners.get(os.path.realpath(frame.filename))
        if owner:
            return f"{owner} at {frame.filename}:{frame.lineno}"
    if frames:
        return f"code at {frames[-1].filename}:{frames[-1].lineno}"
    return "code outside minecli"


def exit_message(exc: SystemExit) -> str:
    """The one line printed when a plugin ends the process with sys.exit."""
    return (f"{who_exited(exc)} called sys.exit({exc.code!r}); minecli stopped (finished work is kept). "
            "Report this to the plugin's authors, or disable it with MINECLI_DISABLE_PLUGINS")
