"""ClientExecutor: a ``concurrent.futures.Executor`` whose workers are pilot cores.

``client.executor`` is one; ``dask.compute(x, scheduler=client.executor)`` and
``dask.config.set(scheduler=client.executor)`` run dask collections on the pilots
(dask's threaded scheduler loop submits one task per unit and keeps at most
``_max_workers`` of them in flight). Its futures are the client's
:class:`~rp_executor.futures.future.Future` objects.

Unlike :meth:`Client.submit`, :meth:`ClientExecutor.submit` passes its arguments as
they are (no search for futures among them, no keys to share), as every
``concurrent.futures`` executor does.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import functools
import itertools
import threading
import time
from typing import Any, Callable, Iterable, Iterator

from rp_executor._core.calls import run_chunk
from rp_executor.futures.future import Future

__all__ = ["ClientExecutor"]


class ClientExecutor(cf.Executor):
    """Run calls as function units of a :class:`~rp_executor.futures.client.Client`.

    :param client: the client whose pilots run the calls.
    :param max_workers: hand at most this many calls to the pilots at once, keeping
        the rest here (where ``shutdown(cancel_futures=True)`` cancels them); None
        (the default) hands every call on at once. ``_max_workers`` (what dask
        reads) is this, or the pilots' total cores.
    :raises ValueError: ``max_workers`` is not greater than 0.
    """

    def __init__(self, client: Any, max_workers: int | None = None) -> None:
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        self._client = client
        self._window = max_workers
        self._max_workers = max_workers or client.total_cores
        self._lock = threading.Lock()
        self._queue: collections.deque[Future] = collections.deque()
        self._flying: set[Future] = set()
        self._unfinished: set[Future] = set()
        self._shutdown = False

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` in a unit; return its future.

        :raises RuntimeError: after :meth:`shutdown`.
        :raises BadParameter: ``fn`` or an argument cannot be pickled.
        """
        return self._submit_many(fn, [(args, kwargs)])[0]

    def _submit_many(self, fn: Callable, calls: list[tuple[tuple, dict]]) -> list[Future]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        futures = self._client._submit([(fn, a, k) for a, k in calls], [None] * len(calls),
                                       False, None, 0, 0, hold=True, scan=False)
        with self._lock:
            self._unfinished.update(futures)
            if self._window is None:
                now = futures
            else:
                room = max(0, self._window - len(self._flying) - len(self._queue))
                now, later = futures[:room], futures[room:]
                self._queue.extend(later)
            self._flying.update(now)
        for fut in futures:
            fut.add_done_callback(self._on_done)
        if now:
            self._client._release(now)
        return futures

    def _on_done(self, fut: Future) -> None:
        nxt = []
        with self._lock:
            self._unfinished.discard(fut)
            if fut in self._flying:
                self._flying.discard(fut)
                while self._queue and len(self._flying) < (self._window or 0):
                    candidate = self._queue.popleft()
                    if not candidate.done():
                        self._flying.add(candidate)
                        nxt.append(candidate)
        if nxt:
            self._client._release(nxt)

    def map(self, fn: Callable, *iterables: Iterable, timeout: float | None = None,
            chunksize: int = 1) -> Iterator:
        """``fn`` over the items of ``iterables`` (as ``zip``), all submitted at once;
        results come in order. With ``chunksize > 1`` each unit runs that many calls.

        The iterator raises ``TimeoutError`` if a result is not there ``timeout``
        seconds after ``map`` was called, and the first exception of a call when it
        reaches it; leaving it early cancels what has not ended.

        :raises ValueError: ``chunksize`` < 1.
        """
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        end = None if timeout is None else time.monotonic() + timeout
        if chunksize == 1:
            futures = self._submit_many(fn, [(args, {}) for args in zip(*iterables)])
            return _results(futures, end, self._client)
        chunks = _chunks(zip(*iterables), chunksize)
        futures = self._submit_many(functools.partial(run_chunk, fn),
                                    [((chunk,), {}) for chunk in chunks])
        return itertools.chain.from_iterable(_results(futures, end, self._client))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submissions; with ``cancel_futures``, cancel the calls still kept
        here (not yet handed to a pilot); with ``wait``, wait until every call
        ends. The client and its pilots go on."""
        with self._lock:
            self._shutdown = True
            queued = list(self._queue) if cancel_futures else []
            if cancel_futures:
                self._queue.clear()
        if queued:
            self._client._cancel(queued)
        if wait:
            with self._lock:
                unfinished = list(self._unfinished)
            cf.wait(unfinished)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


def _results(futures: list[Future], end: float | None, client: Any) -> Iterator:
    # futures are popped as they are yielded and no local name holds a result, so
    # that the iterator keeps nothing alive that the caller has dropped
    futures = list(futures)
    futures.reverse()
    try:
        while futures:
            yield _result_or_cancel(futures.pop(), end, client)
    finally:
        left = [f for f in futures if not f.done()]
        if left:
            client._cancel(left)


def _result_or_cancel(fut: Future, end: float | None, client: Any) -> Any:
    try:
        try:
            return fut.result(None if end is None else end - time.monotonic())
        finally:
            if not fut.done():
                client._cancel([fut])
    finally:
        del fut
