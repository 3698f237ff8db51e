"""Client: the futures door to pilots, in the manner of ``dask.distributed.Client``.

Every task is a :class:`~rp_executor.unit.ComputeUnit` of one UnitManager, and every
:class:`~rp_executor.futures.future.Future` follows its unit. ``Client()`` starts (and owns)
a session with one local pilot as large as the machine; ``Client(session=...,
pilots=[...])`` or ``Client(unit_manager=...)`` works with what the caller has.

Decisions (see also :meth:`Client.submit`):

* **Keys and purity.** ``pure=False`` is the default (unlike Dask): every call runs,
  as with ``concurrent.futures``, because pilots mostly run simulations with side
  effects. ``pure=True`` makes the key ``<function name>-<hash of function and
  arguments>`` and, like an explicit ``key=``, returns the live future of an equal
  key instead of submitting again (whatever the arguments: a key names one task).
  "Live" means some reference to the future still exists; a cancelled one is
  replaced by a new submission.
* **Executables.** ``submit_unit`` takes any ComputeUnitDescription. For a function
  unit the result is the return value; for an executable it is the unit's
  ``stdout`` (a str, the last 1024 characters, as the agent reports them); a
  non-zero exit fails the future with :class:`~rp_executor.exceptions.UnitFailed`
  (exit code and stderr). ``future.unit`` gives the whole unit.
* **Tasks that submit tasks** are refused: a Client (or a Future) cannot be pickled
  into a unit, so ``submit`` raises at once with a message saying so. A task
  therefore never holds a pilot's slot while it waits for tasks it submitted, and a
  full pilot cannot deadlock; express such work with futures as arguments
  (dependencies), which wait on the client and hold no slot.
* **Dropped futures** are not released (unlike Dask): a task runs to its end unless
  cancelled. ``close()`` cancels what has not ended, except the tasks given to
  :meth:`Client.fire_and_forget`, which it waits for.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Iterable

import cloudpickle

from rp_executor._core.lifecycle import check_open
from rp_executor.description import ComputeUnitDescription
from rp_executor.exceptions import BadParameter
from rp_executor.futures.completion import AsCompleted
from rp_executor.futures.dependencies import find_futures, rebuild, substitute
from rp_executor.futures.engine import TaskEngine, resource_attributes, token_of
from rp_executor.futures.future import Future

log = logging.getLogger(__name__)

__all__ = ["Client", "token_of", "resource_attributes"]

_RETURN_WHEN = (cf.FIRST_COMPLETED, cf.FIRST_EXCEPTION, cf.ALL_COMPLETED)


class Client(TaskEngine):
    """Futures over pilots: ``submit``, ``map``, ``gather``, ``as_completed``,
    ``wait``, ``scatter``, an ``executor`` for ``concurrent.futures`` and Dask.

    :param session: a :class:`~rp_executor.session.Session` to use (not closed by
        :meth:`close`); by default the client makes and owns one.
    :param pilots: pilots to run on (a pilot or a list; not canceled by
        :meth:`close`); by default the client starts and owns one local pilot.
    :param unit_manager: a :class:`~rp_executor.unit_manager.UnitManager` to submit
        through, with its pilots; excludes ``session`` and ``pilots``.
    :param cores: the cores of the client's own pilot (default: the cores this
        process may run on).
    :param gpus: the GPUs of the client's own pilot.
    :param oversubscribe: the client's own pilot may have more cores or GPUs than
        this machine (see :class:`~rp_executor.description.ComputePilotDescription`).
    :param runtime: the runtime of the client's own pilot, minutes.
    :param resource: the resource of the client's own pilot.
    :param base_dir: where an owned session makes its directory (default: cwd).

    :raises BadParameter: conflicting arguments.
    """

    #: read by ``dask.base.get_scheduler``: this client is synchronous
    asynchronous = False

    def __init__(self, session: Any = None, pilots: Any = None, unit_manager: Any = None,
                 *, cores: int | None = None, gpus: int = 0, runtime: int = 24 * 60,
                 resource: str = "local.localhost", oversubscribe: bool = False,
                 base_dir: str | os.PathLike | None = None) -> None:
        from rp_executor.agent.resource_manager import detect_cores
        from rp_executor.description import ComputePilotDescription
        from rp_executor.pilot_manager import PilotManager
        from rp_executor.session import Session
        from rp_executor.unit_manager import UnitManager

        if unit_manager is not None and (session is not None or pilots is not None):
            raise BadParameter("Client: give unit_manager alone, or session and/or "
                               "pilots; not both", attribute="unit_manager",
                               value=unit_manager)
        self._init_tasks()
        self._closed = False
        self._own_session = self._own_umgr = False
        self._pmgr: Any = None
        self._executor: Any = None
        self._scatter_dir: Path | None = None
        try:
            if unit_manager is not None:
                self._umgr = unit_manager
                self._session = unit_manager.session
            else:
                if session is None:
                    session = Session(base_dir=base_dir)
                    self._own_session = True
                self._session = session
                if pilots is None:
                    self._pmgr = PilotManager(session)
                    pilots = self._pmgr.submit_pilots(ComputePilotDescription(
                        resource=resource, cores=cores or detect_cores(), gpus=gpus,
                        runtime=runtime, oversubscribe=oversubscribe))
                self._umgr = UnitManager(session)
                self._own_umgr = self._release_dropped = True
                self._umgr.add_pilots(pilots)
            # a partial is registered by identity: clients sharing a unit manager
            # do not replace each other's callback (a method would be keyed by name)
            self._unit_cb = functools.partial(Client._on_unit, self)
            self._umgr.register_callback(self._unit_cb)
            self._umgr.register_final_callback(self._on_final)
        except BaseException:
            self._teardown()
            raise

    # what the client runs on ------------------------------------------------------------

    @property
    def session(self) -> Any:
        """The session the client submits in."""
        return self._session

    @property
    def unit_manager(self) -> Any:
        """The unit manager the client submits through."""
        return self._umgr

    @property
    def pilots(self) -> list:
        """The pilots of the client's unit manager."""
        return self._umgr.get_pilots()

    @property
    def total_cores(self) -> int:
        """The cores of all pilots of the client's unit manager (at least 1)."""
        return max(1, sum(p.description["cores"] for p in self._umgr.get_pilots()))

    @property
    def executor(self) -> Any:
        """A ``concurrent.futures.Executor`` over this client (a new one after the last
        was shut down); use it as ``dask.compute(x, scheduler=client.executor)``."""
        with self._lock:
            if self._executor is None or self._executor._shutdown:
                self._executor = self.get_executor()
            return self._executor

    def get_executor(self, max_workers: int | None = None) -> Any:
        """A new :class:`~rp_executor.futures.executor.ClientExecutor`; with ``max_workers``
        it hands at most that many tasks to the pilots at once."""
        from rp_executor.futures.executor import ClientExecutor
        return ClientExecutor(self, max_workers=max_workers)

    def __repr__(self) -> str:
        return f"<Client {self._umgr.uid} of {self._session.uid}" \
               f"{' closed' if self._closed else ''}>"

    def __reduce__(self) -> tuple:
        raise TypeError(
            "a Client cannot be pickled into a unit: tasks cannot submit tasks to the "
            "client that runs them (a task waiting for its children would hold a "
            "pilot slot, and a full pilot would deadlock). Return data from the task "
            "and submit the follow-up work from the client, or pass futures as "
            "arguments: dependencies wait on the client and hold no slot")

    # submitting ----------------------------------------------------------------------

    def submit(self, fn: Callable, /, *args: Any, key: str | None = None, pure: bool = False,
               resources: dict | None = None, retries: int = 0, priority: int = 0,
               **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` in a unit; return its :class:`Future`.

        Futures among the arguments (also nested in lists, tuples, sets and dict
        values) are dependencies: the unit goes to a pilot only when they are done,
        with their results in their place; a failed dependency fails this future
        with the same exception, a cancelled one cancels it.

        :param key: the task's key; a live future of the same key is returned instead
            of submitting again.
        :param pure: make the key from a hash of ``fn`` and the arguments (so equal
            calls share one task); default False: every call runs.
        :param resources: ``{"cores": n, "gpus": g, "mpi": bool}`` for the unit.
        :param retries: re-run a FAILED unit up to this many times.
        :param priority: units with higher priority start first when they wait for
            free cores on a pilot.
        :raises TypeError: ``fn`` is not callable.
        :raises BadParameter: ``fn`` or an argument cannot be pickled (a Client or a
            Future inside ``fn``'s closure, for example), or bad resources.
        """
        return self._submit([(fn, args, kwargs)], [key], pure, resources, retries,
                            priority)[0]

    def map(self, fn: Callable, *iterables: Iterable, key: str | list | None = None,
            pure: bool = False, resources: dict | None = None, retries: int = 0,
            priority: int = 0, **kwargs: Any) -> list[Future]:
        """``submit(fn, *items, **kwargs)`` for each tuple of items of ``iterables``
        (as ``zip``), submitted as one batch; return the futures in order.

        Other parameters are as in :meth:`submit`.

        :param key: a list of keys, or a prefix: the keys are then ``<key>-<i>``.
        """
        calls = [(fn, items, kwargs) for items in zip(*iterables)]
        if isinstance(key, (list, tuple)):
            if len(key) != len(calls):
                raise BadParameter(f"map: {len(key)} keys for {len(calls)} calls",
                                   attribute="key", value=key)
            keys = list(key)
        elif isinstance(key, str):
            keys = [f"{key}-{i}" for i in range(len(calls))]
        else:
            keys = [None] * len(calls)
        return self._submit(calls, keys, pure, resources, retries, priority)

    def submit_unit(self, description: Any, *, key: str | None = None,
                    retries: int = 0) -> Future:
        """A future for any unit: a function or an executable description (or dict).

        A function unit's result is its return value (its ``args``/``kwargs`` may
        hold futures, as in :meth:`submit`); an executable's result is its stdout,
        and a non-zero exit fails it with :class:`~rp_executor.exceptions.UnitFailed`.
        """
        d = ComputeUnitDescription(description) if type(description) is dict else description
        if not isinstance(d, ComputeUnitDescription):
            raise BadParameter(f"submit_unit expects a ComputeUnitDescription or dict; "
                               f"got {type(description).__name__}",
                               attribute="description", value=description)
        d = d._snapshot()
        d.validate()
        if d.function is None:
            self._check_open()
            fut = self._new_future(key or f"{Path(d.executable).name}-{uuid.uuid4().hex}",
                                   retries)
            if fut._desc is None and fut._unit is None and not fut.done():
                fut._executable = True
                fut._desc = d
                self._release([fut])
            return fut
        attrs = {name: value for name, value in d.items()
                 if name not in ("function", "args", "kwargs") and
                 value != ComputeUnitDescription._attrs[name].default}
        return self._submit([(d.function, tuple(d.args), dict(d.kwargs))], [key], False,
                            None, retries, d.priority, attrs=attrs)[0]

    def cancel(self, futures: Any) -> None:
        """Cancel the futures in ``futures`` (nested as for :meth:`gather`)."""
        self._cancel(list(find_futures(futures).values()))

    # waiting and results ---------------------------------------------------------------

    def gather(self, futures: Any, errors: str = "raise") -> Any:
        """The results of ``futures``, in the same structure (lists, tuples, sets,
        dicts; other values pass as they are); an iterator gives a generator.

        :param errors: ``"raise"``: raise the first failed or cancelled future's
            exception (in the order met); ``"skip"``: leave those out (a dict loses
            their keys).
        :raises ValueError: another value of ``errors``.
        """
        if errors not in ("raise", "skip"):
            raise ValueError(f"gather: errors must be 'raise' or 'skip'; got {errors!r}")
        if isinstance(futures, Iterator):
            return (self.gather(f, errors) for f in futures)
        found = list(find_futures(futures).values())
        cf.wait(found)
        if errors == "raise":
            for fut in found:
                if fut.cancelled() or fut.exception() is not None:
                    fut.result()
            return substitute(futures, lambda f: f.result())
        return rebuild(futures, lambda f: f.result(),
                       lambda f: f.cancelled() or f.exception() is not None)

    def wait(self, futures: Iterable[cf.Future], timeout: float | None = None,
             return_when: str = cf.ALL_COMPLETED) -> Any:
        """``concurrent.futures.wait``: ``(done, not_done)`` sets, also on timeout
        (Dask would raise); ``FIRST_EXCEPTION`` is supported.

        :raises ValueError: an unknown ``return_when``.
        """
        if return_when not in _RETURN_WHEN:
            raise ValueError(f"wait: return_when must be one of {', '.join(_RETURN_WHEN)}; "
                             f"got {return_when!r}")
        return cf.wait(list(futures), timeout=timeout, return_when=return_when)

    def as_completed(self, futures: Iterable[cf.Future] | None = None,
                     with_results: bool = False, raise_errors: bool = True,
                     timeout: float | None = None) -> AsCompleted:
        """An :class:`~rp_executor.futures.completion.AsCompleted` over ``futures``."""
        return AsCompleted(futures, with_results=with_results, raise_errors=raise_errors,
                           timeout=timeout)

    def fire_and_forget(self, futures: Any) -> None:
        """Let these tasks (nested as for :meth:`gather`) finish even when the client
        closes: :meth:`close` waits for them instead of cancelling them."""
        for fut in find_futures(futures).values():
            fut._forget = True

    # data -----------------------------------------------------------------------------

    def scatter(self, data: Any) -> Any:
        """Futures for data, finished at once: a list, tuple or set gives one future
        per element (in a container of the same type), a dict one per value (same
        keys), anything else one future.

        The data is pickled once into the session directory; a unit that gets the
        future as an argument reads it from there, once per worker process, when
        the pilot shares the client's file system (local pilots). Otherwise the
        value travels with each unit. Treat scattered data as read-only.
        """
        self._check_open()
        if type(data) in (list, tuple, set, frozenset):
            return type(data)(self._scatter_one(x) for x in data)
        if type(data) is dict:
            return {k: self._scatter_one(v) for k, v in data.items()}
        return self._scatter_one(data)

    def _scatter_one(self, value: Any) -> Future:
        key = f"{type(value).__name__}-{uuid.uuid4().hex}"
        if self._scatter_dir is None:
            self._scatter_dir = Path(self._session.path) / "scatter"
            self._scatter_dir.mkdir(exist_ok=True)
        path = self._scatter_dir / f"{key}.pkl"
        try:
            data = cloudpickle.dumps(value, protocol=5)
        except Exception as exc:
            raise BadParameter(f"scatter: {type(value).__name__} cannot be pickled: "
                               f"{type(exc).__name__}: {exc}", attribute="data",
                               value=value) from exc
        path.write_bytes(data)
        fut = self._new_future(key, 0)
        fut._scatter_path = str(path)
        fut._settle(value)
        return fut

    # dask ---------------------------------------------------------------------------

    def get(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        """Compute ``keys`` of a dask graph (a dict, or what ``dask.compute`` passes
        when this client is its ``scheduler``) with one unit per task, through
        :attr:`executor`. Extra keywords go to ``dask.local.get_async``."""
        from dask.local import get_async
        executor = self.executor
        return get_async(executor.submit, executor._max_workers, dsk, keys, **kwargs)

    # closing --------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Wait for fire-and-forget tasks (up to ``timeout`` seconds), cancel every
        other unfinished task, then close what the client owns: its unit manager,
        its pilot, its session. Runs once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            unfinished = list(self._unfinished)
        forgotten = [f for f in unfinished if f._forget]
        if forgotten:
            cf.wait(forgotten, timeout=timeout)
        self._cancel([f for f in unfinished if not f.done()])
        self._teardown()

    def _teardown(self) -> None:
        umgr = getattr(self, "_umgr", None)
        if umgr is not None and hasattr(self, "_unit_cb"):
            for unregister, cb in ((umgr.unregister_callback, self._unit_cb),
                                   (umgr.unregister_final_callback, self._on_final)):
                try:
                    unregister(cb)
                except BadParameter:
                    log.debug("%s: callback %s was already removed", umgr.uid, cb)
        if self._own_session:
            self._session.close()
            return
        if self._own_umgr and umgr is not None:
            umgr.close()
        if self._pmgr is not None:
            self._pmgr.close(terminate=True)

    def _check_open(self) -> None:
        check_open(self._closed, repr(self))

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
