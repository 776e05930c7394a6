"""Process-level settings that keep long CPU runs lean."""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
_LIBC: ctypes.CDLL | None = None
_LOADED = False


def _libc() -> ctypes.CDLL | None:
    global _LIBC, _LOADED
    if not _LOADED:
        _LOADED = True
        if sys.platform.startswith("linux") and not os.environ.get("MINECLI_NO_MALLOC_TUNING"):
            try:
                lib = ctypes.CDLL("libc.so.6")
                lib.mallopt  # noqa: B018 - glibc only; musl and others have nothing to tune
                lib.malloc_trim  # noqa: B018
                _LIBC = lib
            except (OSError, AttributeError):
                _LIBC = None
    return _LIBC


@contextlib.contextmanager
def lean_allocations(threshold_bytes: int = 1 << 20, after_bytes: int = 32 << 20) -> Iterator[None]:
    """Inside: megabyte-sized temporaries are mmapped, so chunked scoring cannot fragment the heap.

    glibc raises its mmap threshold whenever a large block is freed; after that, the many
    megabyte-sized temporaries of chunked scoring land on the heap, fragment it, and the peak memory
    of a run grows far faster than its data (2.4x at a million test frames, measured). A low fixed
    threshold is right while scoring but costs page faults in the training loop (half the speed,
    measured), so it is lowered only inside this block and set back to glibc's own upper value
    after it, and freed heap pages are returned. MINECLI_NO_MALLOC_TUNING=1 turns this off.
    """
    lib = _libc()
    if lib is None:
        yield
        return
    lib.mallopt(M_MMAP_THRESHOLD, int(threshold_bytes))
    try:
        yield
    finally:
        lib.mallopt(M_MMAP_THRESHOLD, int(after_bytes))
        lib.malloc_trim(0)


# Floating-point work of a training step per torch thread beyond the first. On 2 idle cores a second
# thread gave 1.2-1.6x at 0.6 and at 2.3 GFLOP per step (float32 and bf16); more threads were not
# measured, so they come one per 0.5 GFLOP.
FLOPS_PER_EXTRA_THREAD = 0.5e9


def step_flops(model: "torch.nn.Module", pairs_per_step: int, n_negatives: int) -> float:
    """Approximate floating-point operations of one training step (forward and backward) of a critic.

    Every Linear layer runs once per frame, except the critic's layers after the first
    (``model.rest``), which run for the joint pair and each of the K marginal pairs.
    """
    import torch

    rest = getattr(model, "rest", None)
    per_pair = {id(m) for m in rest.modules()} if isinstance(rest, torch.nn.Module) else set()
    macs = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            macs += m.in_features * m.out_features * (1 + n_negatives if id(m) in per_pair else 1)
    return 3 * 2 * macs * pairs_per_step  # backward: about twice the forward


def cpus_available() -> int:
    """CPUs this process may run on (its affinity, where the platform says)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def idle_cpus() -> int:
    """CPUs not busy with other processes, from the 1-minute load average (less this process's own)."""
    try:
        others = max(0.0, os.getloadavg()[0] - 1.0)
    except (AttributeError, OSError):
        others = 0.0
    return max(1, cpus_available() - int(others + 0.5))


def training_threads(threads: int | str | None, prefetch: bool | str, device: "torch.device",
                     model: "torch.nn.Module", pairs_per_step: int, n_negatives: int) -> tuple[int, bool]:
    """torch CPU threads of training and whether batches are prepared ahead: as set, or chosen (auto).

    Threads: 1 on a GPU, where the CPU only prepares batches; on the CPU one per
    FLOPS_PER_EXTRA_THREAD of a step's work, at most the idle CPUs less one for preparing batches,
    and at most OMP_NUM_THREADS when that is set. A thread that waits for a core another job holds
    stalls every kernel of the step: on 2 cores with one busy, 2 threads ran at 0.04-0.4x of 1.
    Prefetch: on a GPU, or when a CPU beyond the threads is idle (with none, the thread that
    prepares batches waits for a core while holding the GIL: 5-12% slower, measured).
    """
    idle = idle_cpus() if threads in ("auto", None) or prefetch == "auto" else 0
    if isinstance(threads, int) and not isinstance(threads, bool):
        n = threads
    elif device.type != "cpu":
        n = 1
    else:
        by_work = 1 + int(step_flops(model, pairs_per_step, n_negatives) // FLOPS_PER_EXTRA_THREAD)
        n = min(by_work, idle - (prefetch is not False))
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        if env.isdigit() and int(env) > 0:
            n = min(n, int(env))
        n = max(1, n)
    ahead = prefetch if isinstance(prefetch, bool) else device.type != "cpu" or idle > n
    return n, ahead
