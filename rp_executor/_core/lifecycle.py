"""The lifecycle of pilots and units: the one place where states change, callbacks,
waiting.

:func:`Manager._advance` is the only way a pilot or unit changes state. It checks the
order against :mod:`rp_executor.states`, fills skipped states into ``state_history``
with their timestamps, journals every transition, queues the callbacks and wakes
waiters. Callbacks run in order on the session's :class:`CallbackThread`, never on an
I/O thread; they are registered by the rules of :func:`callback_key` and called by
:func:`invoke`, and one that raises is logged (:func:`call_logged`).
"""

from __future__ import annotations

import logging
import queue
import struct
import threading
import time
from typing import Any, Callable, Iterable, Sequence

from rp_executor import states
from rp_executor.exceptions import BadParameter, DoesNotExist, IncorrectState

log = logging.getLogger(__name__)


class Stateful:
    """A pilot or a unit: an object with a uid, a description, a state, its history
    and callbacks, owned by a :class:`Manager`."""

    __slots__ = ("_uid", "_state", "_history", "_callbacks", "_manager", "_description")
    _kind = ""            # 'unit' or 'pilot'

    def __init__(self, uid: str, manager: "Manager", description: Any) -> None:
        self._uid = uid
        self._state: str | None = None
        # the passages (see passage_of) it took, each shared with the objects that
        # took it alike; packed (pack_passages) when a unit ends
        self._history: list | bytes = []
        self._callbacks: dict | None = None
        self._manager = manager
        self._description = description

    @property
    def uid(self) -> str:
        """The object's id (``unit.000000``, ``pilot.0000``)."""
        return self._uid

    @property
    def state(self) -> str | None:
        """The current state (a string of :mod:`rp_executor.states`)."""
        return self._state

    @property
    def is_final(self) -> bool:
        """Whether the object reached DONE, FAILED or CANCELED."""
        return self._state in states.FINAL_STATES

    @property
    def session(self) -> Any:
        """The session of this object's manager."""
        return self._manager.session

    @property
    def description(self) -> dict:
        """A copy of the description, as a dict."""
        return self._description.as_dict()

    @property
    def client_sandbox(self) -> str:
        """The client's working directory."""
        return self._manager.session._client_sandbox

    @property
    def state_history(self) -> list[tuple[str, float]]:
        """Every state this object passed, in order, as ``(state, timestamp)`` pairs.

        States that were skipped on the way (reported together) carry the timestamp
        the reporter gave them.
        """
        with self._manager._lock:
            history = self._history
            if type(history) is bytes:
                return unpack_history(history, self._kind)
            return [pair for flat, _, _ in history for pair in zip(flat[::2], flat[1::2])]

    def register_callback(self, cb: Callable, cb_data: Any = None) -> None:
        """Call ``cb(obj, state)`` (or ``cb(obj, state, cb_data)``) on every state change.

        Callbacks run on the session's callback thread, once per state, in order.
        """
        check_callable(cb)
        with self._manager._lock:
            if self._callbacks is None:
                self._callbacks = {}
            self._callbacks[callback_key(cb)] = (cb, cb_data)

    def unregister_callback(self, cb: Callable | None = None) -> None:
        """Remove ``cb``, or every callback of this object when ``cb`` is None.

        :raises BadParameter: ``cb`` was not registered.
        """
        with self._manager._lock:
            if cb is None:
                self._callbacks = None
                return
            if not self._callbacks or callback_key(cb) not in self._callbacks:
                raise BadParameter(f"callback {cb!r} is not registered on {self.uid}",
                                   attribute="cb", value=cb)
            del self._callbacks[callback_key(cb)]

    def wait(self, state: str | Sequence[str] | None = None,
             timeout: float | None = None) -> str | None:
        """Wait until the object has reached or passed ``state`` (default: a final
        state), or is final; return its state then (also after ``timeout`` seconds)."""
        return self._manager._wait([self], state, timeout)[0]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uid} {self._state}>"

    __str__ = __repr__


_NAMES = {"unit": states.UNIT_STATES, "pilot": states.PILOT_STATES}
_CODES = {kind: {name: i for i, name in enumerate(names)} for kind, names in _NAMES.items()}
_SAME = 0x80     # a state code with this bit shares the timestamp of the state before


def passage_of(flat: list, kind: str) -> tuple[list, bytes | None, tuple]:
    """A passage through states: the flat ``[state, time, ...]`` list, with what
    packing it takes: one byte per state (its index in the kind's states; the high
    bit set when it shares the time of the state before) and the times without
    their repetitions (None and () for a state outside the model).

    The objects a report moves alike share one passage: this is worked out once for
    all of them, and :func:`pack_passages` only joins the parts."""
    codes = _CODES[kind]
    head = bytearray()
    stamps: list[float] = []
    last = None
    try:
        for i in range(0, len(flat), 2):
            ts = flat[i + 1]
            if ts == last:
                head.append(codes[flat[i]] | _SAME)
            else:
                head.append(codes[flat[i]])
                stamps.append(ts)
                last = ts
    except KeyError:      # a state of another model
        return flat, None, ()
    return flat, bytes(head), tuple(stamps)


def pack_passages(passages: list, kind: str) -> list | bytes:
    """A final object's history (its passages) in a compact form: a count byte, one
    byte per state (:func:`passage_of`), then each distinct time as a double. A
    unit's 16 states take ~90 bytes instead of ~700 as a list. The passages come
    back as they are if they cannot be packed."""
    heads: list[bytes] = []
    times: list[float] = []
    n = 0
    last = None
    for flat, head, stamps in passages:
        if head is None:
            return passages
        n += len(head)
        if stamps and stamps[0] == last:    # it starts at the time the last one ended
            head = bytes((head[0] | _SAME,)) + head[1:]
            stamps = stamps[1:]
        heads.append(head)
        if stamps:
            times += stamps
            last = stamps[-1]
    if not n or n > 255:
        return passages
    return bytes((n,)) + b"".join(heads) + struct.pack(f"<{len(times)}d", *times)


def unpack_history(packed: bytes, kind: str) -> list[tuple[str, float]]:
    """The ``(state, time)`` pairs of a history :func:`pack_passages` made."""
    names = _NAMES[kind]
    n = packed[0]
    codes = packed[1:1 + n]
    stamps = struct.unpack_from(f"<{sum(1 for c in codes if not c & _SAME)}d", packed,
                                1 + n)
    out = []
    j = -1
    for c in codes:
        if not c & _SAME:
            j += 1
        out.append((names[c & ~_SAME], stamps[j]))
    return out


def check_callable(cb: Any) -> None:
    """:raises BadParameter: ``cb`` is not callable."""
    if not callable(cb):
        raise BadParameter(f"callback must be callable; got {cb!r} ({type(cb).__name__})",
                           attribute="cb", value=cb)


class Manager:
    """What PilotManager and UnitManager share: a lock, callbacks, waiting, advancing."""

    _kind = ""                    # 'pilot' or 'unit'
    _metrics: tuple[str, ...] = ()

    def __init__(self, session: Any, uid: str) -> None:
        self._session = session
        self._uid = uid
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._callbacks: dict[str, dict] = {m: {} for m in self._metrics}
        self._closed = False
        self._progress_lookup = states.progress_lookup(self._kind)
        if self._kind == "unit":
            self._progress, self._value = states.unit_progress, states.unit_value
            self._normalize = states.unit_states
        else:
            self._progress, self._value = states.pilot_progress, states.pilot_value
            self._normalize = states.pilot_states

    @property
    def uid(self) -> str:
        """The manager's id."""
        return self._uid

    @property
    def session(self) -> Any:
        """The session this manager belongs to."""
        return self._session

    # callbacks ----------------------------------------------------------------------

    def register_callback(self, cb: Callable, metric: str | None = None,
                          cb_data: Any = None) -> None:
        """Register ``cb`` for ``metric`` (the state metric by default).

        It is called as ``cb(obj, value)``, or ``cb(obj, value, cb_data)`` when
        ``cb_data`` is not None, on the session's callback thread. A named function
        registered again replaces the earlier registration of the same name.

        :raises BadParameter: ``metric`` is not one of this manager's metrics.
        """
        check_callable(cb)
        metric = self._metrics[0] if metric is None else metric
        if metric not in self._metrics:
            raise BadParameter(f"metric {metric!r} is not known here; allowed: "
                               f"{', '.join(self._metrics)}", attribute="metric", value=metric)
        with self._lock:
            self._callbacks[metric][callback_key(cb)] = (cb, cb_data)

    def unregister_callback(self, cb: Callable | None = None, metric: str | None = None) -> None:
        """Remove ``cb`` (all callbacks when None) from ``metric`` (all metrics when None).

        :raises BadParameter: the metric is unknown, or ``cb`` is not registered.
        """
        if metric is not None and metric not in self._metrics:
            raise BadParameter(f"metric {metric!r} is not known here; allowed: "
                               f"{', '.join(self._metrics)}", attribute="metric", value=metric)
        with self._lock:
            for name in ([metric] if metric else self._metrics):
                if cb is None:
                    self._callbacks[name].clear()
                elif callback_key(cb) in self._callbacks[name]:
                    del self._callbacks[name][callback_key(cb)]
                elif metric is not None:
                    raise BadParameter(f"callback {cb!r} is not registered for {metric}",
                                       attribute="cb", value=cb)

    # the one place where states change --------------------------------------------

    def _advance(self, items: Iterable[tuple[Stateful, Sequence[tuple[str, float]]]]) -> list:
        """Move each object through its ``[(state, timestamp), ...]`` steps.

        Must be called with ``self._lock`` held. Returns the objects that changed.
        """
        return self._advance_groups([((obj,), steps) for obj, steps in items])

    def _advance_groups(self, groups: Iterable[tuple[Sequence[Stateful],
                                                     Sequence[tuple[str, float]]]]) -> list:
        """:meth:`_advance` for groups of objects that take the same steps: what
        they pass is worked out once per group and state they are in (one agent
        report moves a thousand units alike), and each group is one journal entry
        and one callback item.

        Must be called with ``self._lock`` held. Returns the objects that changed.
        """
        kind = self._kind
        rows: list[tuple] = []
        fired: list[tuple[list, list[str]]] = []
        changed: list[Stateful] = []
        for objs, steps in groups:
            passages: dict = {}     # the state objects are in -> [passage, objs]
            for obj in objs:
                history = obj._history
                if type(history) is bytes:     # final and packed: nothing more can happen
                    continue
                current = obj._state
                entry = passages.get(current)
                if entry is None:
                    entry = passages[current] = [self._passage(obj, current, steps), []]
                if entry[0] is None:
                    continue
                history.append(entry[0][0])
                obj._state = entry[0][3]
                entry[1].append(obj)
            for passage, moved in passages.values():
                if moved:
                    _, names, stamps, _ = passage
                    # one journal entry per group: its states and their times (one
                    # time when they share it, as states reported together mostly
                    # do), made into text on the journal's writer thread
                    rows.append((kind, [obj._uid for obj in moved] if len(moved) > 1
                                 else moved[0]._uid, names, stamps))
                    fired.append((moved, names))
                    changed += moved
        if rows:
            self._session._journal.add_transitions(rows)
            # the manager's callbacks as they are now: those registered when a state
            # was reached run for it, also when the manager is closed meanwhile
            manager_cbs = list(self._callbacks[self._metrics[0]].values())
            todo = fired if manager_cbs else [
                (own, names) for objs, names in fired
                if (own := [o for o in objs if o._callbacks])]
            if todo:
                self._session._callbacks.submit(self._fire, todo, manager_cbs)
            self._on_changed(changed)
            self._cond.notify_all()
            return changed
        return []

    def _passage(self, obj: Stateful, current: str | None,
                 steps: Sequence[tuple[str, float]]) -> tuple | None:
        """What an object in state ``current`` passes on ``steps``: ``(the passage to
        add to its history (passage_of), the states, their time or times, the last
        state)``, or None when it passes none (``obj`` names it in the log)."""
        lookup, progress = self._progress_lookup, self._progress
        flat: list = []
        first = None       # the time of the first state passed
        same = True        # all passed states share it (they mostly do)
        for target, ts in steps:
            passed = lookup((current, target))
            if passed is None:
                passed = progress(current, target)
            if passed:
                if first is None:
                    first = ts
                elif ts != first:
                    same = False
                for state in passed:
                    flat.append(state)
                    flat.append(ts)
                current = passed[-1]
            elif current != target:
                log.debug("%s: ignored %s -> %s", obj._uid, current, target)
        if first is None:
            return None
        return (passage_of(flat, self._kind), flat[::2], first if same else flat[1::2],
                current)

    def _on_changed(self, objs: list) -> None:
        """Hook for subclasses, called with the lock held after objects changed."""

    def _fire(self, todo: list[tuple[list, list[str]]], manager_cbs: list) -> None:
        # runs on the callback thread: per object (of each group that passed the same
        # states), every state in order, and per state the object's callbacks, then
        # the manager's (call_logged and invoke written out: this loop runs for every
        # state of every unit, and two calls fewer per callback are a third of its time)
        for objs, passed in todo:
            for obj in objs:
                cbs = manager_cbs if not obj._callbacks else \
                    [*obj._callbacks.values(), *manager_cbs]
                for state in passed:
                    for cb, data in cbs:
                        try:
                            if data is None:
                                cb(obj, state)
                            else:
                                cb(obj, state, data)
                        except Exception:
                            _log_failed(cb, obj, state)

    def _fire_metric(self, metric: str, value: Any) -> None:
        """Queue the callbacks of a non-state metric with ``cb(self, value)``."""
        cbs = list(self._callbacks[metric].values())
        if cbs:
            self._session._callbacks.submit(_fire_all, cbs, self, value)

    def _check_open(self) -> None:
        """:raises IncorrectState: the manager is closed."""
        check_open(self._closed, self._uid)

    # waiting ------------------------------------------------------------------------

    def _wait(self, objs: list[Stateful], state: Any, timeout: float | None) -> list:
        """Wait until each object reached or passed the lowest of ``state``, or is final."""
        wanted = self._normalize(state)
        threshold = min(self._value(s) for s in wanted)
        value = self._value
        deadline = None if timeout is None else time.monotonic() + timeout
        final = states.FINAL_STATES
        with self._cond:
            # Objects reach their states roughly in submission order: check from the
            # first one not yet there and stop at the next that is not, so that a wait
            # on many objects costs O(objects + wake-ups), not O(objects x wake-ups).
            i, n = 0, len(objs)
            while True:
                while i < n:
                    state = objs[i]._state
                    if state not in final and value(state) < threshold:
                        break
                    i += 1
                if i == n:
                    break
                if deadline is None:
                    self._cond.wait(1.0)
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(min(left, 1.0))
            return [o._state for o in objs]

    def _lookup(self, table: dict, uids: Any, what: str) -> tuple[list, bool]:
        """Objects for ``uids`` (None: all) and whether a scalar was given."""
        if uids is None:
            return list(table.values()), False
        scalar = isinstance(uids, str)
        result = []
        for uid in ([uids] if scalar else uids):
            obj = table.get(uid if isinstance(uid, str) else getattr(uid, "uid", uid))
            if obj is None:
                raise DoesNotExist(f"{what} {uid!r} is not known to {self._uid}")
            result.append(obj)
        return result, scalar


def call_logged(cb: Callable, obj: Any, value: Any, data: Any) -> None:
    """:func:`invoke`; an exception of the callback is logged, not raised."""
    try:
        invoke(cb, obj, value, data)
    except Exception:
        _log_failed(cb, obj, value)


def _log_failed(cb: Callable, obj: Any, value: Any) -> None:
    """Log the exception being handled: ``cb`` failed for ``obj`` and ``value``."""
    log.exception("callback %s failed for %s (%s)",
                  getattr(cb, "__qualname__", cb), getattr(obj, "uid", obj), value)


def _fire_all(cbs: list, obj: Any, value: Any) -> None:
    for cb, data in cbs:
        call_logged(cb, obj, value, data)


def check_open(closed: bool, what: Any) -> None:
    """The one check before an operation on something that can be closed.

    :raises IncorrectState: ``closed`` is true; the message names ``what``.
    """
    if closed:
        raise IncorrectState(f"{what} is closed")


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

    @property
    def alive(self) -> bool:
        """Whether the thread still runs queued calls."""
        return self._thread.is_alive()

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

    def close(self, timeout: float = 600) -> None:
        """Run what is queued, then stop the thread: every call queued before returns
        has run (unless one of them takes longer than ``timeout`` seconds in all, which
        is logged)."""
        self._queue.put(None)
        if threading.current_thread() is self._thread:
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("callbacks still run %.0f s after the session closed", timeout)

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
            item = fn = args = None   # the call's units are not held while it waits
