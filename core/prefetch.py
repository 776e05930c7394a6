"""Training batches prepared one step ahead in a background thread, drawn in the same order as without it."""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

import torch

T = TypeVar("T")


def _single_threaded() -> None:
    # A new thread would otherwise take torch's process-wide thread count and compete with the step's own.
    torch.set_num_threads(1)


class BatchPrefetcher(Generic[T]):
    """Calls ``make`` for batch i + 1 in a worker thread while the caller trains on batch i.

    ``make`` draws its random numbers from ``gen`` and nothing else does while a batch is pending,
    so the batches are those of calling ``make`` in the loop. torch releases the GIL inside its
    kernels, so sampling and gathering overlap with the step's matrix products. ``settle`` rewinds
    ``gen`` to before the pending batch, for a checkpoint that must hold the state of a run without
    prefetching.
    """

    def __init__(self, make: Callable[[], T], gen: torch.Generator, enabled: bool = True) -> None:
        self.make, self.gen = make, gen
        self._pool = (ThreadPoolExecutor(1, thread_name_prefix="minecli-batch", initializer=_single_threaded)
                      if enabled else None)
        self._pending: tuple[torch.Tensor, Future[T]] | None = None

    @property
    def enabled(self) -> bool:
        """Whether batches are prepared in the background."""
        return self._pool is not None

    def next(self) -> T:
        """The next batch; the one after it starts in the background."""
        if self._pool is None:
            return self.make()
        if self._pending is None:
            batch = self.make()
        else:
            batch = self._pending[1].result()
        self._pending = (self.gen.get_state(), self._pool.submit(self.make))
        return batch

    def settle(self) -> None:
        """Drop the batch prepared ahead and rewind the generator to before it."""
        if self._pending is None:
            return
        state, future = self._pending
        self._pending = None
        # Waited for, not raised: the batch is dropped, and a fault in it recurs when it is drawn again.
        future.exception()
        self.gen.set_state(state)

    def close(self) -> None:
        """Settle and stop the worker thread."""
        try:
            self.settle()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


__all__ = ["BatchPrefetcher"]
