"""Completion order: iterate over futures in the order they end, adding more on the way.

Dask's ``as_completed`` for this package's futures (and any other
``concurrent.futures.Future``): an iterator that one may :meth:`~AsCompleted.add`
futures to while iterating, that can yield the results with the futures, and that
can hand out whatever has ended so far in :meth:`~AsCompleted.batches`.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import threading
import time
from typing import Any, Iterable, Iterator

__all__ = ["AsCompleted", "as_completed"]


class AsCompleted:
    """Yield futures as they end (done, failed or cancelled).

    :param futures: the futures to start with (more can be added).
    :param with_results: yield ``(future, result)`` pairs instead of futures.
    :param raise_errors: with ``with_results``, a failed or cancelled future raises its
        exception from ``next()``; with ``raise_errors=False`` it yields
        ``(future, exception)`` instead.
    :param timeout: seconds from construction after which ``next()`` raises
        ``TimeoutError`` if futures are still unfinished (None: no limit).

    A future added twice is yielded twice, as in Dask.
    """

    def __init__(self, futures: Iterable[cf.Future] | None = None, with_results: bool = False,
                 raise_errors: bool = True, timeout: float | None = None) -> None:
        self.with_results = with_results
        self.raise_errors = raise_errors
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._timeout = timeout
        self._cond = threading.Condition()
        self._pending: collections.Counter = collections.Counter()
        self._ready: collections.deque = collections.deque()
        if futures is not None:
            self.update(futures)

    # adding ---------------------------------------------------------------------------

    def add(self, future: cf.Future) -> None:
        """Add one future; it is yielded when it ends (at once if it has ended)."""
        if not isinstance(future, cf.Future):
            raise TypeError(f"as_completed takes futures; got {type(future).__name__}: "
                            f"{future!r}")
        with self._cond:
            self._pending[future] += 1
        future.add_done_callback(self._on_done)

    def update(self, futures: Iterable[cf.Future]) -> None:
        """Add several futures."""
        for future in futures:
            self.add(future)

    def _on_done(self, future: cf.Future) -> None:
        with self._cond:
            n = self._pending.pop(future, 0)
            self._ready.extend([future] * n)
            self._cond.notify_all()

    # state ----------------------------------------------------------------------------

    def count(self) -> int:
        """How many futures are still to be yielded (ended or not)."""
        with self._cond:
            return sum(self._pending.values()) + len(self._ready)

    def is_empty(self) -> bool:
        """Whether nothing is left to yield."""
        return self.count() == 0

    def has_ready(self) -> bool:
        """Whether a future has ended and waits to be yielded."""
        with self._cond:
            return bool(self._ready)

    def clear(self) -> None:
        """Forget every future not yet yielded."""
        with self._cond:
            self._pending.clear()
            self._ready.clear()

    # iterating ------------------------------------------------------------------------

    def __iter__(self) -> Iterator:
        return self

    def __next__(self) -> Any:
        with self._cond:
            while not self._ready:
                if not self._pending:
                    raise StopIteration
                self._wait_locked()
            future = self._ready.popleft()
        return self._item(future)

    def next_batch(self, block: bool = True) -> list:
        """Every future that has ended and not been yielded; with ``block``, wait for
        at least one first (an empty list when nothing is left)."""
        with self._cond:
            if block:
                while not self._ready and self._pending:
                    self._wait_locked()
            batch = list(self._ready)
            self._ready.clear()
        return [self._item(f) for f in batch]

    def batches(self) -> Iterator[list]:
        """Yield lists of ended futures (or pairs) until nothing is left."""
        while True:
            batch = self.next_batch(block=True)
            if not batch:
                return
            yield batch

    def _wait_locked(self) -> None:
        if self._deadline is None:
            self._cond.wait()
            return
        left = self._deadline - time.monotonic()
        if left <= 0:
            unfinished = sum(self._pending.values())
            raise TimeoutError(f"{unfinished} futures unfinished after the timeout of "
                               f"{self._timeout} s")
        self._cond.wait(left)

    def _item(self, future: cf.Future) -> Any:
        if not self.with_results:
            return future
        if future.cancelled():
            if self.raise_errors:
                raise cf.CancelledError(f"{future!r} was cancelled")
            return future, cf.CancelledError(f"{future!r} was cancelled")
        exc = future.exception()
        if exc is not None:
            if self.raise_errors:
                raise exc
            return future, exc
        return future, future.result()


as_completed = AsCompleted
"""Dask's name for :class:`AsCompleted`: ``as_completed(futures, with_results=False,
raise_errors=True, timeout=None)``."""
