"""Atomic file writes: a crash never leaves a half-written file behind."""
from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import MinecliError


def atomic_write(path: str | os.PathLike[str], writer: Callable[[str], None]) -> None:
    """Call writer(tmp_path) for a temporary file beside `path`, then rename it into place.

    A write that fails for want of space or permission is a MinecliError naming `path`.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        writer(tmp)
        # mkstemp makes owner-only files; results and shared caches get the usual umask permissions.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise


def write_error(path: str | os.PathLike[str], exc: OSError) -> MinecliError:
    """The one-line error for a file that could not be written, with the fix for its cause."""
    from .outdir import os_problem

    if exc.errno == errno.ENOSPC:
        fix = "free some space and run again (finished work is kept and reused)"
    else:
        fix = ("make that folder writable or choose another one (data.cache_dir for the feature cache, "
               "output.dir for results and checkpoints)")
    return MinecliError(f"cannot write {path}: {os_problem(exc)}; {fix}")


def _proc_umask() -> int | None:
    """The process umask from /proc (Linux), which reads it without changing it; None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return None


def _startup_umask() -> int:
    """The umask at import; os.umask is the only portable reader, so it runs once, before any threads."""
    found = _proc_umask()
    if found is not None:
        return found
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _startup_umask()


def _umask() -> int:
    """The current umask where it can be read safely, else the one minecli started with."""
    found = _proc_umask()
    return _UMASK if found is None else found


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a text file atomically."""
    def _w(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    atomic_write(path, _w)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write strict JSON atomically (indent 2, non-finite numbers as null, other non-JSON values as strings)."""
    write_text(path, dumps_strict(data, indent=2) + "\n")


def dumps_strict(data: Any, **kwargs: Any) -> str:
    """json.dumps that never writes the bare NaN/Infinity other JSON readers reject: they become null."""
    return json.dumps(finite_or_null(json.loads(json.dumps(data, default=_jsonable))), allow_nan=False, **kwargs)


def finite_or_null(obj: Any) -> Any:
    """A copy of a JSON-like value with every NaN or infinite float replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    return obj


def non_finite_keys(obj: Any, prefix: str = "") -> list[str]:
    """Dotted keys of every NaN or infinite float in a JSON-like value."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [prefix or "(value)"]
    if isinstance(obj, dict):
        return [k for key, v in obj.items() for k in non_finite_keys(v, f"{prefix}.{key}" if prefix else str(key))]
    if isinstance(obj, (list, tuple)):
        return [k for i, v in enumerate(obj) for k in non_finite_keys(v, f"{prefix}[{i}]")]
    return []


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def replace_dir(tmp_dir: Path, final: Path) -> None:
    """Swap a fully written directory into place; at every instant `final` or `final.old` is complete."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp_dir, final)
    if old.exists():
        shutil.rmtree(old)
