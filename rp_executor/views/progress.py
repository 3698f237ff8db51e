"""Progress bars over units and futures: :func:`progress` and
``UnitManager.wait_units(progress=True)``.

A bar counts the units and futures that ended (done, failed and canceled, in its
postfix) against their total. Where it shows (:func:`choose`): a widget in a
notebook, a bar in a terminal, and nothing when the output is neither, unless a bar
is asked for with ``notebook=True`` or ``False``. It is drawn by ``tqdm``.

The counts cost nothing per unit while waiting: the unit managers' final callbacks
and the futures' done callbacks add to them as units end (:class:`Tracker`), and a
thread of the bar reads them at most ten times a second. The states of the objects
are read once at the start and once at the end.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from rp_executor import states
from rp_executor.exceptions import BadParameter

log = logging.getLogger(__name__)

__all__ = ["progress", "Counts", "Tracker", "choose", "watching"]

#: seconds between two looks of a bar at its counts
REFRESH = 0.1
#: seconds after which a bar is drawn again though nothing ended (its clock moves on)
REDRAW = 1.0


@dataclass(frozen=True)
class Counts:
    """How many of the watched units and futures ended, and how.

    :ivar done: units DONE, futures finished.
    :ivar failed: units FAILED, futures with an error.
    :ivar canceled: units CANCELED, futures cancelled.
    :ivar total: the units and futures watched.
    """

    done: int
    failed: int
    canceled: int
    total: int

    @property
    def ended(self) -> int:
        """Those that ended: done, failed or canceled."""
        return self.done + self.failed + self.canceled

    @property
    def pending(self) -> int:
        """Those that did not end yet."""
        return self.total - self.ended

    def postfix(self) -> str:
        """``'done 10, failed 1, canceled 0'``: the text after a bar."""
        return f"done {self.done}, failed {self.failed}, canceled {self.canceled}"


def _ending_of_future(fut: cf.Future) -> str:
    """DONE, FAILED or CANCELED for a future that is done."""
    if fut.cancelled():
        return states.CANCELED
    return states.FAILED if fut.exception() is not None else states.DONE


class Tracker:
    """Counts the units and futures of ``objs`` that end, as they end.

    Units are counted by their unit managers' final callbacks, futures by their done
    callbacks; :meth:`start` registers them and counts those that ended already,
    :meth:`close` removes what it can (a future keeps its callback, which then does
    nothing). Units and futures given twice count once.

    :raises BadParameter: an object that is neither a ComputeUnit nor a future.
    """

    def __init__(self, objs: Any) -> None:
        from rp_executor.unit import ComputeUnit

        if isinstance(objs, (ComputeUnit, cf.Future)):
            objs = [objs]
        units: dict[int, Any] = {}
        futures: dict[int, cf.Future] = {}
        for i, obj in enumerate(objs):
            if isinstance(obj, ComputeUnit):
                units.setdefault(id(obj), obj)
            elif isinstance(obj, cf.Future):
                futures.setdefault(id(obj), obj)
            else:
                raise BadParameter(f"progress: item {i} is a {type(obj).__name__} "
                                   f"({obj!r:.80}); expected a ComputeUnit or a future",
                                   attribute="objs", value=obj)
        self._units = list(units.values())
        self._futures = list(futures.values())
        self.total = len(self._units) + len(self._futures)
        self._cond = threading.Condition()
        self._ended = {states.DONE: 0, states.FAILED: 0, states.CANCELED: 0}
        self._pending: dict[Any, set[str]] = {}     # unit manager -> uids not ended
        self._closed = False

    def start(self) -> "Tracker":
        """Register the callbacks and count what ended already."""
        by_umgr: dict[Any, list] = {}
        for unit in self._units:
            by_umgr.setdefault(unit._manager, []).append(unit)
        final = states.FINAL_STATES
        for umgr, units in by_umgr.items():
            # under the manager's lock no unit of it changes state: each one either
            # ended before the callback was registered (counted here) or after it
            # (lock order: the manager's, then the tracker's; _on_final takes only
            # the tracker's)
            with umgr._lock, self._cond:
                self._pending[umgr] = {u.uid for u in units if u._state not in final}
                for u in units:
                    if u._state in final:
                        self._ended[u._state] += 1
                umgr.register_final_callback(self._on_final)
        for fut in self._futures:
            fut.add_done_callback(self._on_future)
        return self

    def counts(self) -> Counts:
        """The counts so far."""
        e = self._ended
        return Counts(e[states.DONE], e[states.FAILED], e[states.CANCELED], self.total)

    def recount(self) -> Counts:
        """The counts from the objects' states now (one pass; exact, also where a
        callback is still on its way)."""
        e = {states.DONE: 0, states.FAILED: 0, states.CANCELED: 0}
        for unit in self._units:
            if unit._state in e:
                e[unit._state] += 1
        for fut in self._futures:
            if fut.done():
                e[_ending_of_future(fut)] += 1
        return Counts(e[states.DONE], e[states.FAILED], e[states.CANCELED], self.total)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every object ended, or ``timeout`` seconds; whether all did."""
        with self._cond:
            return self._cond.wait_for(lambda: self.counts().pending == 0, timeout)

    def close(self) -> None:
        """Remove the callbacks (runs once)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            umgrs = list(self._pending)
            self._pending.clear()
        for umgr in umgrs:
            try:
                umgr.unregister_final_callback(self._on_final)
            except BadParameter:
                log.debug("%s: the progress callback was removed already", umgr.uid)

    def _on_final(self, units: list) -> None:
        # a unit manager's final callback, on the session's callback thread
        with self._cond:
            changed = False
            for unit in units:
                pending = self._pending.get(unit._manager)
                if pending and unit.uid in pending:
                    pending.discard(unit.uid)
                    self._ended[unit._state] += 1
                    changed = True
            if changed:
                self._cond.notify_all()

    def _on_future(self, fut: cf.Future) -> None:
        ending = _ending_of_future(fut)
        with self._cond:
            if not self._closed:
                self._ended[ending] += 1
                self._cond.notify_all()


# where a bar shows ---------------------------------------------------------------------

def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (as ``tqdm.auto`` decides)."""
    return "ipykernel.zmqshell" in sys.modules or \
        "IPython.utils._process_emscripten" in sys.modules


def is_terminal(file: Any) -> bool:
    """Whether ``file`` (None: ``sys.stderr``, where bars go) is a terminal."""
    file = sys.stderr if file is None else file
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def choose(notebook: bool | None, notebook_here: bool, terminal: bool) -> str | None:
    """Which bar shows: ``'notebook'`` (a widget, ``tqdm.notebook``), ``'auto'``
    (``tqdm.auto``: a widget in a notebook, a text bar elsewhere), ``'text'``
    (``tqdm.std``: a text bar, also into a file) or None (none).

    ``notebook=True`` asks for a widget, ``False`` for a text bar; with None a bar
    shows where the output is a notebook (``notebook_here``) or a ``terminal``, and
    nothing where it is neither.
    """
    if notebook is True:
        return "notebook"
    if notebook is False:
        return "text"
    if notebook_here or terminal:
        return "auto"
    return None


def make_bar(kind: str, total: int, file: Any = None, desc: str | None = None) -> Any:
    """A tqdm bar of ``kind`` (see :func:`choose`).

    :raises ImportError: a notebook bar without ``ipywidgets``.
    """
    if kind == "notebook":
        from tqdm import notebook as tqdm_notebook
        if tqdm_notebook.IProgress is None:
            raise ImportError("progress(notebook=True) shows a widget, which needs "
                              "ipywidgets: pip install ipywidgets (or notebook=False "
                              "for a text bar)")
        cls = tqdm_notebook.tqdm
    elif kind == "auto":
        from tqdm.auto import tqdm as cls
    else:
        from tqdm.std import tqdm as cls
    return cls(total=total, desc=desc, file=file, leave=True,
               postfix=Counts(0, 0, 0, total).postfix(),
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")


def _draw(bar: Any, counts: Counts) -> None:
    bar.set_postfix_str(counts.postfix(), refresh=False)
    if counts.ended != bar.n:
        bar.update(counts.ended - bar.n)
    else:
        bar.refresh()


def _refresh(bar: Any, tracker: Tracker, stop: threading.Event) -> None:
    """Draw the bar when its counts changed (at most every :data:`REFRESH` seconds),
    or every :data:`REDRAW` seconds, until ``stop`` is set."""
    shown, drawn = None, 0.0
    try:
        while not stop.wait(REFRESH):
            counts = tracker.counts()
            now = time.monotonic()
            if counts != shown or now - drawn >= REDRAW:
                _draw(bar, counts)
                shown, drawn = counts, now
    except Exception:
        log.exception("the progress bar stopped")


@contextlib.contextmanager
def watching(objs: Any, notebook: bool | None = None, file: Any = None,
             desc: str | None = None) -> Iterator[Tracker]:
    """Count ``objs`` (a :class:`Tracker`) while the ``with`` block runs, showing a
    bar where :func:`choose` says so; the bar shows the exact counts at the end."""
    tracker = Tracker(objs)
    kind = choose(notebook, file is None and in_notebook(), is_terminal(file))
    bar = make_bar(kind, tracker.total, file, desc) if kind is not None else None
    tracker.start()
    stop = threading.Event()
    thread = None
    if bar is not None:
        thread = threading.Thread(target=_refresh, args=(bar, tracker, stop),
                                  name="rp-progress", daemon=True)
        thread.start()
    try:
        yield tracker
    finally:
        stop.set()
        if thread is not None:
            thread.join()
        tracker.close()
        if bar is not None:
            _draw(bar, tracker.recount())
            bar.close()


def progress(objs: Iterable[Any] | Any, notebook: bool | None = None,
             timeout: float | None = None, *, file: Any = None) -> Counts:
    """Show a bar of ``objs`` (ComputeUnits or futures, mixed, or one of them) until
    all ended, or ``timeout`` seconds; return the :class:`Counts` then.

    The bar counts those that ended against the total, with how many are done,
    failed and canceled after it. ``notebook=None`` shows a widget in a notebook, a
    bar in a terminal, and nothing when the output is neither; ``True`` a widget
    (needs ``ipywidgets``), ``False`` a text bar. ``file`` is where a text bar is
    written (default ``sys.stderr``); with ``notebook=None`` it shows only when
    ``file`` is a terminal.

    :raises BadParameter: an object that is neither a ComputeUnit nor a future.
    :raises ImportError: ``notebook=True`` without ``ipywidgets``.
    """
    with watching(objs, notebook, file, desc="ended") as tracker:
        tracker.wait(timeout)
    return tracker.recount()
