"""Process-level settings that keep long CPU runs lean."""
from __future__ import annotations

import ctypes
import os
import sys

_TUNED = False
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def tune_allocator(threshold_bytes: int = 1 << 20) -> bool:
    """Fix glibc's mmap threshold so large temporaries go back to the OS when freed.

    glibc raises its mmap threshold every time a large block is freed; after that, the many
    megabyte-sized temporaries of chunked scoring land on the heap and fragment it, and the peak
    memory of a run grows far faster than its data (2.1x the feature memory at a million test
    frames, measured). A fixed threshold keeps them mmapped. Set MINECLI_NO_MALLOC_TUNING=1 to opt out.
    Returns True when the setting was applied.
    """
    global _TUNED
    if _TUNED or os.environ.get("MINECLI_NO_MALLOC_TUNING") or not sys.platform.startswith("linux"):
        return _TUNED
    try:
        libc = ctypes.CDLL("libc.so.6")
        _TUNED = bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold_bytes)))
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        _TUNED = False
    return _TUNED
