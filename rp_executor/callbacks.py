"""The callback thread: user callbacks run here, in order, never on an I/O thread.

Also the rules by which callbacks are registered, shared by managers, pilots and units.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)


def callback_key(cb: Callable) -> Any:
    """The key a callback is registered under.

    RADICAL-Pilot keys callbacks by function name, so re-running a notebook cell that
    defines and registers a callback replaces the old one instead of adding a second.
    We keep that for named functions (module and qualified name), but key lambdas,
    partials and other callables without a stable name by identity, so that two
    lambdas do not replace each other.
    """
    name = getattr(cb, "__qualname__", None)
    if not name or "<lambda>" in name:
        return cb
    return (getattr(cb, "__module__", None), name)


def invoke(cb: Callable, obj: Any, value: Any, cb_data: Any) -> None:
    """Call ``cb(obj, value)``, or ``cb(obj, value, cb_data)`` when cb_data is not None."""
    if cb_data is None:
        cb(obj, value)
    else:
        cb(obj, value, cb_data)


class CallbackThread:
    """Runs queued calls one after another on a daemon thread.

    A call that raises is logged with its traceback and the thread goes on.
    """

    def __init__(self, name: str = "rp-callbacks") -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable, *args: Any) -> None:
        """Queue ``fn(*args)``."""
        self._queue.put((fn, args))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every call queued so far has run; False on timeout.

        Called from the callback thread itself (a callback that waits), it returns at
        once instead of deadlocking.
        """
        if threading.current_thread() is self._thread:
            return True
        done = threading.Event()
        self._queue.put((done.set, ()))
        return done.wait(timeout)

    def close(self, timeout: float = 10) -> None:
        """Run what is queued, then stop the thread."""
        if threading.current_thread() is self._thread:
            self._queue.put(None)
            return
        self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except Exception:
                log.exception("callback %s failed", getattr(fn, "__qualname__", fn))
