"""The output folder of a run: created with a clear error when it cannot be, and locked while the run owns it."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from .errors import MinecliError

LOCK_NAME = ".minecli.lock"


def os_problem(exc: OSError) -> str:
    """A short reason for an OSError, without the errno noise."""
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno in (errno.EROFS,):
        return "the file system is read-only"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOTDIR or isinstance(exc, NotADirectoryError):
        return "a part of the path is a file, not a folder"
    if exc.errno == errno.EEXIST or isinstance(exc, FileExistsError):
        return "a file of that name exists"
    return exc.strerror or str(exc) or type(exc).__name__


def claim_output_dir(path: Path, stack: contextlib.ExitStack) -> None:
    """Create `path` and hold an exclusive lock on it until `stack` closes; one clear line on failure.

    A second run into the same folder would mix its results and checkpoints with the first's, so it
    stops at once instead. The lock is an ``flock`` on a file in the folder: the kernel drops it when
    the process dies, so a killed run never leaves a stale lock behind.
    """
    fix = "set output.dir to a folder you can write"
    if path.exists() and not path.is_dir():
        raise MinecliError(f"output folder {path} is a file, not a folder; {fix}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MinecliError(f"cannot create the output folder {path}: {os_problem(exc)}; {fix}") from None
    lock_path = path / LOCK_NAME
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise MinecliError(f"cannot write in the output folder {path}: {os_problem(exc)}; {fix}") from None
    stack.callback(os.close, fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise MinecliError(f"output folder {path} is in use by another minecli run (it holds {lock_path}); wait "
                           "for that run to finish, or set output.dir to another folder") from None
    stack.callback(fcntl.flock, fd, fcntl.LOCK_UN)
