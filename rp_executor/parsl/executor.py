"""RPExecutor: a Parsl executor whose blocks are pilots and whose apps are units.

``Config(executors=[RPExecutor(provider=SlurmProvider(...))])`` runs ``@python_app``
and ``@bash_app`` code on ComputePilots launched through the executor's provider.
Parsl's strategy decides how many blocks there are (``init_blocks``, ``min_blocks``,
``max_blocks``, ``parallelism`` of the provider): scale-out submits one pilot per
block, scale-in cancels pilots, idle ones first. The executor owns a Session (its
journal lives in the DFK's run directory), a PilotManager and a UnitManager, and
closes them on :meth:`RPExecutor.shutdown`.

Threads: ``submit`` (the DFK's launch thread) only builds a description and queues
it; one submitter thread hands queued units to the UnitManager in batches (lowest
``priority`` first); final units reach the executor through the unit manager's final
callback, on the session's callback thread, which turns them into future results (so
Parsl's callbacks never run on the session's I/O thread).

Monitoring: ``remote_monitoring_radio`` is a ``FilesystemRadio`` (messages as files
under ``<run_dir>/monitor-fs-radio``), which reaches the DFK from pilots on this
host or on a shared filesystem. What is reported: BLOCK_INFO for every block state
(PENDING, RUNNING, FAILED/MISSING, SCALED_IN, ...) from Parsl's block machinery, and
per task the WORKER_TASK_INFO first/last messages and, when resource monitoring is on,
RESOURCE_INFO samples of the function unit's process, sent by Parsl's
``monitor_wrapper`` from inside the unit. Bash apps under monitoring run as function
units (the wrapper must run on the worker).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import sys
import threading
from concurrent.futures import Future, InvalidStateError
from typing import Any, Callable

from parsl.executors.errors import BadStateException
from parsl.executors.status_handling import BlockProviderExecutor
from parsl.jobs.states import JobStatus
from parsl.utils import RepresentationMixin

from rp_executor import states
from rp_executor._core.binding import BlockCapacity
from rp_executor.exceptions import UnitFailed
from rp_executor.outcome import Ending
from rp_executor.parsl import apps as parsl_apps
from rp_executor.parsl import blocks as parsl_blocks

log = logging.getLogger(__name__)

_FINAL = states.FINAL_STATES


class _Task:
    """What the executor keeps of one app invocation until its unit is final."""

    __slots__ = ("future", "bash", "walltime", "outputs")

    def __init__(self, future: Future, bash: parsl_apps.BashCall | None,
                 walltime: float | None, outputs: list) -> None:
        self.future, self.bash, self.walltime, self.outputs = future, bash, walltime, outputs


class RPExecutor(BlockProviderExecutor, RepresentationMixin):
    """A Parsl executor running apps as units on pilots, one pilot per block.

    :param label: the executor's label in the Config.
    :param provider: the Parsl ExecutionProvider that launches blocks (pilots); default
        ``LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1, launcher=SimpleLauncher())``.
        The agent owns the whole block, so a ``SimpleLauncher`` is the right launcher.
    :param cores_per_block: the cores of one pilot; default: the provider's
        ``cores_per_node`` x ``nodes_per_block``, or the cores this process may run on.
    :param gpus_per_block: the GPUs of one pilot.
    :param oversubscribe: blocks of a ``LocalProvider`` may have more cores or GPUs
        than this machine (the pilots' ``oversubscribe``); refused otherwise.
    :param resource: the resource label of the pilots (``local.localhost``: the agent
        manages the cores it is given on the node it starts on).
    :param runtime: pilot runtime in minutes; default the provider's ``walltime``, or
        a week.
    :param working_dir: where staging providers put files (Parsl's convention); also
        the parent of the session directory and the pilot sandboxes when set (the DFK's
        run directory otherwise).
    :param storage_access: Parsl staging providers; None means Parsl's defaults.
    :param session_cfg: settings for the executor's :class:`Session`.
    :param bash_cwd: where bash apps run: ``"client"`` (the default) is the submitting
        process's working directory at submit time, as with HTEX's local and batch
        blocks, so that relative paths in commands mean what they mean to the user
        (a unit that cannot ``cd`` there runs in its sandbox); ``None`` is the unit
        sandbox; any other string is a directory.
    :param prefetch_per_core: units a pilot may hold queued per core beyond those
        running; the rest wait in the client and go to whichever active block has
        room (None: no limit, every unit is bound at once).
    :param block_error_handler: as for every BlockProviderExecutor: True for Parsl's
        ``simple_error_handler``, False for none, or a callable.
    """

    def __init__(self, label: str = "RPExecutor", provider: Any = None,
                 cores_per_block: int | None = None, gpus_per_block: int = 0,
                 oversubscribe: bool = False,
                 resource: str = "local.localhost", runtime: int | None = None,
                 working_dir: str | None = None, storage_access: list | None = None,
                 session_cfg: dict | None = None, bash_cwd: str | None = "client",
                 prefetch_per_core: int | None = 256,
                 block_error_handler: bool | Callable = True) -> None:
        if provider is None:
            from parsl.launchers import SimpleLauncher
            from parsl.providers import LocalProvider
            provider = LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1,
                                     launcher=SimpleLauncher())
        super().__init__(provider=provider, block_error_handler=block_error_handler)
        if cores_per_block is not None and (isinstance(cores_per_block, bool) or
                                            not isinstance(cores_per_block, int) or
                                            cores_per_block < 1):
            raise ValueError(f"RPExecutor.cores_per_block: got {cores_per_block!r}; "
                             "must be an int >= 1 or None")
        from parsl.monitoring.radios.filesystem import FilesystemRadio

        self.label = label
        self.cores_per_block = cores_per_block
        self.gpus_per_block = gpus_per_block
        self.oversubscribe = oversubscribe
        self.resource = resource
        self.runtime = runtime
        self.working_dir = working_dir
        self.storage_access = storage_access
        self.session_cfg = session_cfg
        self.bash_cwd = bash_cwd
        self.prefetch_per_core = prefetch_per_core
        self.remote_monitoring_radio = FilesystemRadio()
        self._session: Any = None
        self._pmgr: Any = None
        self._umgr: Any = None
        self._pilots: dict[str, Any] = {}          # block id -> pilot
        self._my_tasks: dict[str, _Task] = {}      # unit name -> task
        self._ids = itertools.count()
        self._seq = itertools.count()
        self._queue: list = []                     # heap of (priority, seq, name, cud)
        self._queue_cond = threading.Condition()
        self._stopping = False
        self._submitter: threading.Thread | None = None

    # what Parsl's strategy asks ---------------------------------------------------

    @property
    def _block_cores(self) -> int:
        if self.cores_per_block is not None:
            return self.cores_per_block
        from rp_executor.agent.resource_manager import detect_cores
        per_node = getattr(self.provider, "cores_per_node", None) or detect_cores()
        return per_node * max(1, getattr(self.provider, "nodes_per_block", 1) or 1)

    @property
    def workers_per_node(self) -> int | float:
        """Units that run at once per node of a block (one core each)."""
        nodes = max(1, getattr(self.provider, "nodes_per_block", 1) or 1)
        return max(1, self._block_cores // nodes)

    def outstanding(self) -> int:
        """Tasks given to this executor and not finished yet."""
        return len(self._tasks)

    @property
    def status_polling_interval(self) -> float:
        """How often Parsl asks :meth:`status`: it reads pilot states (the pilot
        manager polls the provider and watches heartbeats), so it is cheap."""
        return min(1.0, self.provider.status_polling_interval) if self.provider else 0

    # life cycle -------------------------------------------------------------------

    def start(self) -> None:
        """Open the session and the managers; the strategy launches the blocks."""
        import rp_executor as rp

        super().start()
        base = self.working_dir or self.run_dir or os.getcwd()
        os.makedirs(base, exist_ok=True)
        self._base = os.path.abspath(base)
        self._session = rp.Session(base_dir=self._base, cfg=self.session_cfg)
        self._pmgr = rp.PilotManager(self._session)
        # units go only to active blocks, each holding a bounded queue (binding.py)
        self._umgr = rp.UnitManager(self._session,
                                    scheduler=BlockCapacity(self.prefetch_per_core))
        self._umgr.register_final_callback(self._completed)
        self._submitter = threading.Thread(target=self._submit_loop, daemon=True,
                                           name=f"rpex-{self.label}-submitter")
        self._submitter.start()
        log.info("RPExecutor %s: session %s in %s", self.label, self._session.uid, self._base)

    def shutdown(self) -> None:
        """Cancel the pilots, close the session (journal flushed), stop the threads.

        Tasks still unfinished fail with :class:`UnitFailed`.
        """
        if self._session is None:
            super().shutdown()
            return
        with self._queue_cond:
            self._stopping = True
            self._queue_cond.notify_all()
        self._submitter.join(timeout=30)
        try:
            # closing runs the callbacks queued so far: units that ended reach _completed
            self._session.close()
            for pilot in self._pilots.values():
                if not pilot._said_bye:
                    self._sweep(pilot)
        finally:
            if self._umgr is not None:
                self._umgr.unregister_final_callback(self._completed)
            for name, task in list(self._my_tasks.items()):
                _settle(task.future, error=UnitFailed(
                    f"{name} ended CANCELED: executor {self.label} shut down first",
                    uid=name, state=states.CANCELED))
            self._my_tasks.clear()
            super().shutdown()
        log.info("RPExecutor %s: shut down", self.label)

    # blocks -----------------------------------------------------------------------

    def _get_launch_command(self, block_id: str) -> str:
        from rp_executor._core import providers
        return providers.agent_command(sys.executable, "<pilot sandbox>/agent.cfg.json")

    def _launch_block(self, block_id: str) -> Any:
        """Submit one pilot through the provider; return its job id.

        :raises ScalingFailed: the provider did not take the pilot's job.
        """
        from parsl.executors.errors import ScalingFailed

        import rp_executor as rp

        pd = rp.ComputePilotDescription(
            resource=self.resource, cores=self._block_cores, gpus=self.gpus_per_block,
            oversubscribe=self.oversubscribe,
            runtime=self.runtime or parsl_blocks.runtime_minutes(self.provider),
            provider=self.provider,
            sandbox=os.path.join(self._base, "pilots"))
        pilot = self._pmgr.submit_pilots(pd)
        pilot._launched.wait()
        if pilot.job_id is None:
            raise ScalingFailed(self, f"pilot {pilot.uid} of block {block_id} was not "
                                      f"launched: {pilot.stderr or pilot.state}")
        self._pilots[block_id] = pilot
        pilot.register_callback(self._on_pilot_state)
        self._umgr.add_pilots(pilot)
        log.info("block %s is pilot %s (job %s)", block_id, pilot.uid, pilot.job_id)
        return pilot.job_id

    def _on_pilot_state(self, pilot: Any, state: str) -> None:
        # (a block that becomes active gets waiting units from the unit manager)
        if state in _FINAL and not pilot._said_bye:
            self._sweep(pilot)

    def _sweep(self, pilot: Any) -> None:
        """Kill what a dead local block left behind (its units' processes).

        The session does this for pilots of its own local resource only; blocks of a
        LocalProvider handed to this executor run on this host too.
        """
        from parsl.providers import LocalProvider

        from rp_executor._core import providers
        if isinstance(self.provider, LocalProvider) and pilot.pilot_sandbox:
            providers.sweep_local_processes(self._session.uid, pilot.uid, pilot.pilot_sandbox)

    def _cores(self) -> int:
        """Cores of the blocks' pilots that have not ended."""
        return sum(p._description.cores for p in list(self._pilots.values())
                   if not p.is_final)

    def scale_in(self, blocks: int, max_idletime: float | None = None) -> list[str]:
        """Cancel ``blocks`` pilots, those without unfinished units first.

        ``max_idletime`` is accepted for Parsl's HTEX-style call and not used.
        """
        busy = self._umgr._by_pilot if self._umgr is not None else {}
        live = [(bid, p) for bid, p in self._pilots.items() if not p.is_final]
        live.sort(key=lambda item: (bool(busy.get(item[1].uid)),
                                    item[1].state not in parsl_blocks.PENDING))
        chosen = live[:blocks]
        if chosen:
            self._pmgr.cancel_pilots([p.uid for _, p in chosen], _timeout=30)
        return [bid for bid, _ in chosen]

    def status(self) -> dict[str, JobStatus]:
        """Block states from pilot states; a pilot that ended without ever being
        active is MISSING, a failed one (block killed, heartbeats stopped) FAILED."""
        result = {}
        for bid, pilot in list(self._pilots.items()):
            result[bid] = parsl_blocks.job_status(pilot)
        result.update(self._simulated_status)
        return result

    # tasks ------------------------------------------------------------------------

    def submit(self, func: Callable, resource_specification: dict, *args: Any,
               **kwargs: Any) -> Future:
        """Queue ``func(*args, **kwargs)`` as a unit; return its future.

        :raises InvalidResourceSpecification: an unknown key or a bad value in
            ``resource_specification``.
        :raises BadStateException: the executor is in bad state (its blocks failed).
        """
        if self.bad_state_is_set:
            raise self.executor_exception
        import rp_executor as rp

        res = parsl_apps.parse_resource_spec(resource_specification)
        task_id = next(self._ids)
        name = f"parsl.{task_id}"
        fut: Future = Future()
        fut.parsl_executor_task_id = task_id  # type: ignore[attr-defined]
        fields = res.fields()
        bash = parsl_apps.unwrap_bash(func)
        walltime = res.walltime
        outputs = kwargs.get("outputs") or []
        if bash is not None:
            if kwargs.get("walltime") is not None:
                walltime = min(walltime or math.inf, float(kwargs["walltime"]))
            try:
                command = parsl_apps.format_command(bash, args, kwargs)
                script = parsl_apps.bash_script(
                    command, parsl_apps.std_redirect("stdout", kwargs.get("stdout")),
                    parsl_apps.std_redirect("stderr", kwargs.get("stderr")), walltime,
                    [os.fspath(f.filepath) for f in outputs],
                    os.getcwd() if self.bash_cwd == "client" else self.bash_cwd)
            except Exception:
                # as on a Parsl worker: the app's own error comes back as its result
                from parsl.app.errors import RemoteExceptionWrapper
                fut.set_result(RemoteExceptionWrapper(*sys.exc_info()))
                return fut
            cud = rp.ComputeUnitDescription(executable="/bin/bash",
                                            arguments=["-c", _shell_quote(script)],
                                            name=name, **fields)
            if res.environment:
                cud.environment = res.environment
        else:
            if res.walltime is not None:
                from parsl.app.python import timeout
                func = timeout(func, res.walltime)
            cud = rp.ComputeUnitDescription(function=func, name=name, **fields)
            # set without the type check on assignment: submit_units validates every
            # description before it takes any, so the check would run twice per task
            cud.__dict__["args"] = list(args)
            cud.__dict__["kwargs"] = kwargs
        self._my_tasks[name] = _Task(fut, bash, walltime, outputs)
        self._tasks[task_id] = fut
        with self._queue_cond:
            if self._stopping:
                raise RuntimeError(f"RPExecutor {self.label} is shut down")
            heapq.heappush(self._queue, (res.priority, next(self._seq), cud))
            if len(self._queue) == 1:
                self._queue_cond.notify()
        return fut

    def _submit_loop(self) -> None:
        while True:
            with self._queue_cond:
                while not self._queue and not self._stopping:
                    self._queue_cond.wait()
                if not self._queue:
                    return
                wait = 0.0 if self._stopping else gathers(
                    len(self._queue), len(self._tasks), self._cores())
                if wait:
                    self._queue_cond.wait(wait)
                batch = [heapq.heappop(self._queue)[2] for _ in range(len(self._queue))]
            try:
                self._umgr.submit_units(batch)
            except Exception as exc:
                log.exception("submitting %d unit(s) failed", len(batch))
                for cud in batch:
                    self._fail(cud.name, exc)

    def _fail(self, name: str, exc: BaseException) -> None:
        task = self._my_tasks.pop(name, None)
        if task is None:
            return
        self._tasks.pop(int(name.rsplit(".", 1)[1]), None)
        _settle(task.future, error=exc)

    def _completed(self, units: list) -> None:
        """The unit manager's final callback: settle the tasks of these units."""
        for unit in units:
            try:
                self._complete(unit)
            except Exception as exc:
                log.exception("completing %s failed", unit.uid)
                self._fail(unit.name, exc)

    def _complete(self, unit: Any) -> None:
        name = unit.name
        task = self._my_tasks.pop(name, None)
        if task is None:
            return
        self._tasks.pop(int(name.rsplit(".", 1)[1]), None)
        fut = task.future
        if fut.done():
            return
        state, outcome = unit.state, unit.outcome
        if task.bash is not None and outcome.ending in (Ending.DONE, Ending.FAILED) and \
                (state == states.DONE or outcome.exit_code is not None):
            # a bash app's own end (not a lost pilot, not a cancel): Parsl's rules
            error = parsl_apps.bash_outcome(task.bash.name, outcome.exit_code,
                                            outcome.stderr, task.walltime, task.outputs)
            if error is None and state == states.DONE:
                _settle(fut, result=0)
                return
            if error is not None:
                _settle(fut, error=error)
                return
        if state == states.DONE:
            _settle(fut, result=unit.return_value)
        elif task.bash is None and outcome.exception is not None:
            _settle(fut, error=unit.exception)   # the worker's own exception
        else:
            _settle(fut, error=UnitFailed.of(unit))


_GATHER_BELOW = 64    # tasks: fewer than this waiting, the submitter may gather first
_GATHER_S = 0.005     # seconds it gathers while the pilots are busy
_BACKLOG_S = 0.02     # ... and while they hold a backlog of 4 units per core
_BACKLOG_PER_CORE = 4


def gathers(waiting: int, outstanding: int, cores: int) -> float:
    """How long (seconds, 0: not at all) the submitter waits for more tasks before
    it hands the ``waiting`` ones on as units.

    Parsl hands over one task at a time. With more tasks out (``outstanding``) than
    the pilots have ``cores``, the pilots are busy and a new task would wait there
    anyway: gathering costs it little, and a unit then costs a share of one batch
    instead of a batch of its own. That share matters: Parsl's threads and ours
    share the DFK process's one GIL, which bounds Parsl's throughput. With more than
    ``_BACKLOG_PER_CORE`` tasks out per core, Parsl is handing over tasks as fast
    as the pilots finish them, and gathering for ``_BACKLOG_S`` makes batches of
    tens of tasks instead of a few. With fewer tasks out (a chain of
    dependent apps, a few tasks) every task goes at once; so does a batch that is
    already large.
    """
    if waiting >= _GATHER_BELOW or outstanding <= cores:
        return 0.0
    return _BACKLOG_S if outstanding > cores * _BACKLOG_PER_CORE else _GATHER_S


def _settle(fut: Future, result: Any = None, error: BaseException | None = None) -> None:
    """Set a future's outcome unless it has one (bad state may have failed it)."""
    try:
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)
    except InvalidStateError:
        log.debug("future %s already done", getattr(fut, "parsl_executor_task_id", fut))


def _shell_quote(text: str) -> str:
    import shlex
    return shlex.quote(text)


__all__ = ["RPExecutor", "BadStateException"]
