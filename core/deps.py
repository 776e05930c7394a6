"""Imports of compiled libraries that fail as one line naming the fix, not as a loader traceback."""
from __future__ import annotations

from types import ModuleType

from .errors import MinecliError


def load_torchaudio() -> ModuleType:
    """torchaudio with its compiled ops loaded; a release that does not match torch is a MinecliError."""
    try:
        import torchaudio as ta
        import torchaudio._extension  # noqa: F401 - loads libtorchaudio, where a mismatch shows
    except (OSError, ImportError, RuntimeError) as exc:
        from importlib import metadata

        def version(dist: str) -> str:
            try:
                return metadata.version(dist)
            except Exception:  # noqa: BLE001 - only for the message
                return "not installed"

        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MinecliError(
            f"torchaudio {version('torchaudio')} cannot load against torch {version('torch')} ({first}); "
            "install the pair pinned in minecli's constraints.txt: "
            "pip install -c constraints.txt torch torchaudio") from None
    return ta
