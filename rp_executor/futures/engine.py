"""How the Client's futures become units: submission, keys, dependencies, retries,
cancelling.

:class:`TaskEngine` is the part of :class:`~rp_executor.futures.client.Client` that drives
futures from their units (a mixin, so that the client's public module stays about the
API). Its rules:

* a future without dependencies is handed to the unit manager at once (in one batch
  per ``map``), unless an executor holds it back (``hold``);
* a future with dependencies waits on the client, holding no slot; when the last
  one ends it is failed (a dependency failed: the same exception), cancelled (one
  was cancelled) or released with the results in place of the futures;
* a unit's EXECUTING makes its future running; DONE, FAILED (after the retries) and
  CANCELED end it. Futures are ended, and their callbacks run, without the
  engine's lock held.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import uuid
import weakref
from typing import Any

import cloudpickle

from rp_executor import states
from rp_executor._core.calls import Call, ScatterRef
from rp_executor._core.resources import parse as parse_resources
from rp_executor.description import ComputeUnitDescription
from rp_executor.exceptions import BadParameter, UnitFailed
from rp_executor.futures.dependencies import (
    find_futures,
    has_futures,
    replace_with_keys,
    substitute,
)
from rp_executor.futures.future import Future

log = logging.getLogger(__name__)

__all__ = ["TaskEngine", "token_of", "resource_attributes"]

_RESOURCE_KEYS = ("cores", "gpus", "mpi")   # what a Client task may ask for
_EXECUTING = states.EXECUTING


def token_of(fn: Any, args: tuple, kwargs: dict) -> str:
    """A hash of a call: equal functions with equal arguments give equal tokens.

    Futures among the arguments count by their keys. Objects whose pickles differ
    between equal values (sets of str across interpreter runs, for example) give
    different tokens; within one session that is rare and only costs a re-run.
    """
    from rp_executor._core.calls import dump_function
    data = cloudpickle.dumps((dump_function(fn), replace_with_keys(tuple(args)),
                              replace_with_keys(dict(kwargs))), protocol=4)
    return hashlib.sha1(data).hexdigest()


def _funcname(fn: Any) -> str:
    if isinstance(fn, str):
        return fn.rpartition(":")[2].rpartition(".")[2]
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return "lambda" if name == "<lambda>" else name


def resource_attributes(resources: dict | None) -> dict:
    """The ComputeUnitDescription attributes for ``resources`` ``{"cores": n,
    "gpus": g, "mpi": bool}``: ``n`` threads of one process (``n`` MPI ranks with
    ``mpi``), ``g`` GPU processes.

    :raises BadParameter: an unknown key or a bad value.
    """
    res = parse_resources(resources, _RESOURCE_KEYS, _bad_resources)
    if res.cpu_process_type:   # the Client's rule: with mpi, the cores are the ranks
        res.cpu_processes, res.cpu_threads = res.cpu_threads, 1
    return res.fields()


def _bad_resources(keys: set, message: str) -> BadParameter:
    return BadParameter(message, attribute="resources", value=sorted(keys))


class TaskEngine:
    """Futures driven by units of ``self._umgr`` (set by the subclass)."""

    _umgr: Any
    _session: Any

    def _init_tasks(self) -> None:
        import threading
        self._lock = threading.RLock()
        self._by_uid: dict[str, Future] = {}
        self._dependents: dict[Future, list[Future]] = {}
        self._keys: "weakref.WeakValueDictionary[str, Future]" = weakref.WeakValueDictionary()
        self._unfinished: set[Future] = set()
        # units of ended futures the user let go of (appended by weakref finalizers,
        # which may run on any thread: no lock there), forgotten on the next call back
        self._dropped: collections.deque[str] = collections.deque()
        self._release_dropped = False    # only for a unit manager of our own

    def _submit(self, calls: list, keys: list, pure: bool, resources: dict | None,
                retries: int, priority: int, attrs: dict | None = None,
                hold: bool = False, scan: bool = True) -> list[Future]:
        """Make futures for ``calls`` (``(fn, args, kwargs)``); hand those without
        dependencies to the pilots (or keep them, with ``hold``)."""
        self._check_open()
        if type(retries) is not int or retries < 0:
            raise BadParameter(f"retries: must be an int >= 0; got {retries!r}",
                               attribute="retries", value=retries)
        if type(priority) is not int:
            raise BadParameter(f"priority: must be an int; got {priority!r}",
                               attribute="priority", value=priority)
        template = dict(attrs or {})
        template.update(resource_attributes(resources))
        if priority:
            template["priority"] = priority
        if template:
            ComputeUnitDescription(function=_check_template, **template).validate()
        futures, ready, waiting, new = [], [], [], []
        try:
            for (fn, args, kwargs), key in zip(calls, keys):
                if not callable(fn) and not (isinstance(fn, str) and ":" in fn):
                    raise TypeError(f"submit: fn must be callable; got "
                                    f"{type(fn).__name__}: {fn!r}")
                deps = find_futures((args, kwargs)) if scan and has_futures(args, kwargs) \
                    else None
                if key is None:
                    key = f"{_funcname(fn)}-" \
                          f"{token_of(fn, args, kwargs) if pure else uuid.uuid4().hex}"
                fut = self._new_future(key, retries)
                futures.append(fut)
                if fut._desc is not None or fut._unit is not None or fut.done():
                    continue   # an existing task of this key
                new.append(fut)
                fut._desc = template
                if deps:
                    fut._call = (fn, args, kwargs)
                    fut._deps = list(deps.values())
                    waiting.append(fut)
                else:
                    fut._desc = _description(fn, args, kwargs, template)
                    ready.append(fut)
        except BaseException:
            for fut in new:
                self._drop(fut)
            raise
        for fut in waiting:
            self._wait_for_dependencies(fut)
        if ready and not hold:
            self._release(ready)
        return futures

    def _new_future(self, key: str, retries: int) -> Future:
        with self._lock:
            fut = self._keys.get(key)
            if fut is not None and not fut.cancelled():
                return fut
            fut = Future(self, key)
            fut._retries = retries
            self._keys[key] = fut
            self._unfinished.add(fut)
        fut.add_done_callback(self._on_future_done)
        return fut

    def _drop(self, fut: Future) -> None:
        with self._lock:
            self._unfinished.discard(fut)
            if self._keys.get(fut.key) is fut:
                del self._keys[fut.key]

    def _on_future_done(self, fut: Future) -> None:
        with self._lock:
            self._unfinished.discard(fut)

    # dependencies ----------------------------------------------------------------------

    def _wait_for_dependencies(self, fut: Future) -> None:
        foreign = [d for d in fut._deps if d._client is not self]
        if foreign:
            fut._settle(exception=BadParameter(
                f"{fut.key}: the future {foreign[0].key} belongs to another client",
                attribute="args", value=foreign[0]))
            return
        register = []
        with self._lock:
            fut._waiting = len(fut._deps) + 1   # +1: no resolving while registering
            for dep in fut._deps:
                dependents = self._dependents.get(dep)
                if dependents is None:
                    self._dependents[dep] = dependents = []
                    register.append(dep)
                dependents.append(fut)
        for dep in register:
            dep.add_done_callback(self._dependency_done)
        with self._lock:
            fut._waiting -= 1
            ready = fut._waiting == 0
        if ready:
            self._resolve([fut])

    def _dependency_done(self, dep: Future) -> None:
        ready = []
        with self._lock:
            for fut in self._dependents.pop(dep, ()):
                fut._waiting -= 1
                if fut._waiting == 0:
                    ready.append(fut)
        if ready:
            self._resolve(ready)

    def _resolve(self, futures: list[Future]) -> None:
        """Fail, cancel or release futures whose dependencies are all done."""
        release = []
        for fut in futures:
            if fut.done():
                continue
            failed = next((d for d in fut._deps if d.status == "error"), None)
            if failed is not None:
                fut._settle(exception=failed.exception())
                continue
            if any(d.cancelled() for d in fut._deps):
                fut._mark_cancelled()
                continue
            fn, args, kwargs = fut._call
            try:
                value_of = self._argument_value
                args = substitute(tuple(args), value_of)
                kwargs = substitute(dict(kwargs), value_of)
                fut._desc = _description(fn, args, kwargs, fut._desc)
            except Exception as exc:
                fut._settle(exception=exc)
                continue
            fut._call = None
            fut._deps = []
            release.append(fut)
        if release:
            self._release(release)

    def _argument_value(self, dep: Future) -> Any:
        if dep._scatter_path is not None and self._pilots_share_files():
            return ScatterRef(dep._scatter_path)
        return dep.result()

    def _pilots_share_files(self) -> bool:
        return all(self._session._is_local(p) for p in self._umgr.get_pilots())

    # units --------------------------------------------------------------------------------

    def _release(self, futures: list[Future]) -> None:
        """Submit the units of ``futures`` (their descriptions are ready)."""
        with self._lock:
            live = [f for f in futures if not f.done()]
            if not live:
                return
            try:
                units = self._umgr.submit_units([f._desc for f in live])
            except Exception as exc:
                failed = exc
            else:
                failed = None
                for fut, unit in zip(live, units):
                    fut._unit = unit
                    self._by_uid[unit.uid] = fut
        if failed is not None:
            for fut in live:
                fut._settle(exception=failed)

    def _on_unit(self, unit: Any, state: str) -> None:
        # on the session's callback thread, for every state of every unit of the umgr:
        # a unit that starts executing makes its future running
        if state == _EXECUTING:
            with self._lock:
                fut = self._by_uid.get(unit.uid)
            if fut is not None:
                fut._mark_running()

    def _on_final(self, units: list) -> None:
        # the unit manager's final callback (callback thread): futures end with units
        if self._dropped:
            self._forget_dropped()
        with self._lock:
            pop = self._by_uid.pop
            ended = [(unit, pop(unit.uid, None)) for unit in units]
        for unit, fut in ended:
            if fut is not None:
                self._settle_from(fut, unit)

    def _settle_from(self, fut: Future, unit: Any) -> None:
        """End ``fut`` as its final unit ended (or retry a FAILED one)."""
        if self._release_dropped:
            # once the user drops the future, the unit (its description and result)
            # is let go of too: a long-running client does not grow without bound
            weakref.finalize(fut, self._dropped.append, unit.uid)
        state = unit.state
        if state == states.DONE:
            try:
                value = unit.stdout if fut._executable else _return_value(unit)
            except Exception as exc:
                fut._settle(exception=exc)
            else:
                fut._settle(value)
        elif state == states.FAILED:
            if fut._retries > 0 and not fut.done():
                fut._retries -= 1
                log.info("%s: %s FAILED, retrying (%d left)", fut.key, unit.uid, fut._retries)
                fut._mark_pending()
                self._release([fut])
                return
            exc = UnitFailed.of(unit) if fut._executable else unit.exception
            fut._settle(exception=exc or RuntimeError(f"{unit.uid} FAILED"))
        else:
            fut._mark_cancelled()

    def _forget_dropped(self) -> None:
        uids = []
        while self._dropped:
            uids.append(self._dropped.popleft())
        self._umgr._forget(uids)

    def _cancel(self, futures: list[Future]) -> list[bool]:
        """Cancel futures; block until their units are final. One bool per future:
        whether it ended cancelled."""
        units = {}
        for fut in futures:
            with self._lock:
                if fut.done():
                    continue
                if fut._unit is not None:
                    units[fut._unit.uid] = fut
                    continue
            fut._mark_cancelled()
        if units:
            try:
                self._umgr.cancel_units(list(units))
            except Exception:
                log.exception("cancelling %d unit(s) failed", len(units))
            for fut in units.values():
                if fut._unit.state == states.CANCELED:
                    fut._mark_cancelled()
        return [f.cancelled() for f in futures]


def _check_template(*args: Any, **kwargs: Any) -> None:
    """Stands in for the function while a template of attributes is validated."""


def _description(fn: Any, args: tuple, kwargs: dict, attrs: dict) -> ComputeUnitDescription:
    """The description of a function unit whose function is a :class:`Call`."""
    from rp_executor._core.calls import dump_arguments, dump_function
    call = Call(dump_function(fn), dump_arguments(args, kwargs),
                getattr(fn, "__qualname__", None) or _funcname(fn))
    return ComputeUnitDescription(function=call, **attrs)


def _return_value(unit: Any) -> Any:
    """A function unit's return value, unpickled without caching it in the unit (the
    unit manager keeps units; the value must be free to go with its future)."""
    from rp_executor._core.calls import load_result
    outcome = unit.outcome
    if outcome is None:
        return None
    return load_result(outcome.result, outcome.result_file)
