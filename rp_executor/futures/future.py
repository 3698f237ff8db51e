"""Future: a ``concurrent.futures.Future`` whose work is a ComputeUnit.

A :class:`Future` is made by :class:`~rp_executor.futures.client.Client` (``submit``,
``map``, ``submit_unit``, ``scatter``) and by its executor. It is a real
``concurrent.futures.Future``, so ``concurrent.futures.wait`` and ``as_completed``
work on it, mixed with any other future. Its life:

* ``pending``: waiting for its dependencies (``.unit`` is None then), queued by an
  executor with ``max_workers``, or handed to a pilot and not yet executing;
* ``running``: its unit reached EXECUTING;
* ``finished`` / ``error``: the unit ended DONE / FAILED (after its retries);
* ``cancelled``: cancelled before it ended, or a dependency was cancelled.

Callbacks added with :meth:`add_done_callback` run on the session's callback thread
(or at once in the caller's thread when the future is already done); they must not
block waiting for another future.
"""

from __future__ import annotations

import concurrent.futures as cf
import traceback as _traceback
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from typing import Any

from rp_executor.exceptions import UnitFailed

__all__ = ["Future", "STATUSES"]

#: The values of :attr:`Future.status`, as in Dask.
STATUSES = ("pending", "running", "finished", "error", "cancelled")

_CANCELLED = (CANCELLED, CANCELLED_AND_NOTIFIED)


class Future(cf.Future):
    """The future of one task of a :class:`~rp_executor.futures.client.Client`.

    :ivar key: the task's key (see :meth:`Client.submit` for how keys are made).
    """

    def __init__(self, client: Any, key: str) -> None:
        super().__init__()
        self._client = client
        self.key = key
        self._unit: Any = None          # the current unit (a new one per retry)
        self._desc: Any = None          # what to submit (kept for retries)
        self._call: Any = None          # (fn, args, kwargs) until the dependencies are done
        self._deps: list = []
        self._waiting = 0               # dependencies not yet done (+1 while registering)
        self._retries = 0
        self._executable = False
        self._forget = False            # fire_and_forget: close() waits for it
        self._scatter_path: str | None = None

    # what Dask users read -------------------------------------------------------------

    @property
    def unit(self) -> Any:
        """The :class:`~rp_executor.unit.ComputeUnit` doing the work; None while the
        future waits for dependencies or for an executor's free worker, and for
        scattered data. A retry replaces it with the new unit."""
        return self._unit

    @property
    def client(self) -> Any:
        """The :class:`~rp_executor.futures.client.Client` this future belongs to."""
        return self._client

    @property
    def status(self) -> str:
        """``'pending'``, ``'running'``, ``'finished'``, ``'error'`` or ``'cancelled'``."""
        with self._condition:
            state = self._state
            if state == FINISHED:
                return "error" if self._exception is not None else "finished"
            if state in _CANCELLED:
                return "cancelled"
            return "running" if state == RUNNING else "pending"

    def traceback(self, timeout: float | None = None) -> str | None:
        """The traceback of the task's error as text: the worker's traceback for a
        function, the unit's stderr for an executable; None if it did not fail.

        Remote frames cannot be objects here, so this is the text Python printed in
        the worker (also the ``__cause__`` of the re-raised exception).

        :raises CancelledError: the future was cancelled.
        :raises TimeoutError: it did not end within ``timeout`` seconds.
        """
        exc = self.exception(timeout)
        if exc is None:
            return None
        remote = getattr(exc, "remote_traceback", None)
        if remote:
            return remote
        if isinstance(exc, UnitFailed):
            return exc.stderr
        return "".join(_traceback.format_exception(exc))

    def cancel(self) -> bool:
        """Cancel the task: drop it if it waits, kill its unit if it runs.

        Unlike ``concurrent.futures``, a running future can be cancelled: its unit is
        killed (with its process group) and the future ends cancelled. Blocks until
        the unit is final. Returns False when the task had already ended (or ended
        DONE/FAILED before the cancel reached it), True when it is cancelled.
        """
        with self._condition:
            if self._state == FINISHED:
                return False
            if self._state in _CANCELLED:
                return True
        return self._client._cancel([self])[0]

    def release(self) -> None:
        """Accepted for Dask compatibility; does nothing itself (a task runs to its
        end unless cancelled, whether or not its future is kept). As in Dask, what a
        program no longer holds is let go of: once a task has ended and its future is
        garbage, a client with a UnitManager of its own forgets the unit (the journal
        keeps it); a UnitManager given by the caller keeps every unit, as
        RADICAL-Pilot's managers do."""

    def __reduce__(self) -> tuple:
        raise TypeError(
            f"a Future ({self.key}) cannot be pickled into a unit: pass futures as "
            "arguments of submit/map (also inside lists, tuples, sets and dicts), where "
            "they become dependencies and are replaced by their results; a future "
            "captured in a function's closure or inside another object is not seen")

    def __repr__(self) -> str:
        unit = f" unit={self._unit.uid}" if self._unit is not None else ""
        return f"<Future key={self.key!r} status={self.status}{unit}>"

    def _repr_html_(self) -> str:
        """The future's view in a notebook: key and status, its unit and the unit's
        state, why it failed."""
        from rp_executor.views.html import future_view
        return future_view(self)

    # driven by the client --------------------------------------------------------------

    def _mark_running(self) -> bool:
        """PENDING -> RUNNING; False if the future is not pending any more."""
        with self._condition:
            if self._state != PENDING:
                return False
            self._state = RUNNING
            return True

    def _mark_pending(self) -> None:
        """RUNNING -> PENDING: the unit failed and a retry waits for a slot."""
        with self._condition:
            if self._state == RUNNING:
                self._state = PENDING

    def _settle(self, result: Any = None, exception: BaseException | None = None) -> bool:
        """End the future with a result or an exception, unless it already ended."""
        with self._condition:
            if self._state in (FINISHED, CANCELLED, CANCELLED_AND_NOTIFIED):
                return False
            if exception is None:
                self._result = result
            else:
                self._exception = exception
            self._state = FINISHED
            for waiter in self._waiters:
                if exception is None:
                    waiter.add_result(self)
                else:
                    waiter.add_exception(self)
            self._condition.notify_all()
            self._drop_work()
        self._invoke_callbacks()
        return True

    def _mark_cancelled(self) -> bool:
        """End the future cancelled (also from RUNNING), notifying waiters; False if
        it had already ended."""
        with self._condition:
            if self._state in (FINISHED, CANCELLED, CANCELLED_AND_NOTIFIED):
                return False
            self._state = CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._condition.notify_all()
            self._drop_work()
        self._invoke_callbacks()
        return True

    def _drop_work(self) -> None:
        # a finished task keeps nothing of its caller alive
        self._desc = None
        self._call = None
        self._deps = []
