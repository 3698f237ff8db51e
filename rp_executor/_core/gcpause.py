"""Pausing the garbage collector's automatic runs while many objects are made at once.

CPython's collector walks every tracked object of the process in a full collection,
and it starts one whenever the objects that survived young collections grow by a
quarter. Submitting 100,000 units makes millions of objects that all survive, so a
bulk submit set off about a dozen full collections of an ever larger heap: a quarter
of the time of a 20,000-unit submit went to the collector, and none of its objects
were garbage. Pausing it for the call turns those into one collection afterwards.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0               # calls inside the pause now (threads share one pause)
_resume = False          # the collector was enabled when the pause began


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Disable automatic collection inside the block, then restore what was found.

    Nested and concurrent uses share one pause, which ends when the last one leaves;
    a collector that was already disabled stays disabled.
    """
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()


_frozen = False          # freeze_survivors() moved objects out of the collector's view


def freeze_survivors() -> None:
    """Take every object alive now out of the collector's later runs (:func:`gc.freeze`).

    For what a bulk submit made: hundreds of thousands of units that live as long as
    their session. Each run of the collector would walk them again (a sixth of the
    time of a million units went to it, collecting nothing); frozen, they are still
    freed when no longer referenced, but cycles among them (a closed session's units
    and managers) wait for :func:`thaw`, which :meth:`Session.close
    <rp_executor.session.Session.close>` calls.
    """
    global _frozen
    with _lock:
        gc.freeze()
        _frozen = True


def thaw() -> None:
    """Give what :func:`freeze_survivors` froze back to the collector (its oldest
    generation), so that its next full run frees the cycles among it."""
    global _frozen
    with _lock:
        if _frozen:
            gc.unfreeze()
            _frozen = False


__all__ = ["paused_gc", "freeze_survivors", "thaw"]
