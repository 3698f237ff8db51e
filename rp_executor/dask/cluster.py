"""DaskCluster: a ``distributed`` cluster whose workers are units of pilots.

It is a ``distributed.deploy.SpecCluster``, as dask-jobqueue's clusters are: one
spec entry (a *job*) per pilot, made by :class:`~rp_executor.dask.job.PilotJob`,
each a group of ``processes`` workers named ``<cluster>-<job>-<process>``. So
``distributed.Client(cluster)``, ``cluster.scale``, ``cluster.adapt`` (distributed's
own ``Adaptive``), ``cluster.dashboard_link`` and ``cluster.close`` are distributed's
machinery; what this module adds is what a job is and when it ends.

Where the scheduler runs, and why: **in the client's process**, as dask-jobqueue
runs it, listening on the session's ``bind_host``. Workers on compute nodes reach
it the way the pilots' agents already reach the client (the agents connect back
to the session at that address), so a cluster needs no network path that the
pilots do not already need. The scheduler outlives every pilot: a cluster can
shrink to no pilot and grow again (``adapt``), and a pilot that dies takes only
its workers with it, whose work the scheduler then recomputes elsewhere. A
scheduler in the first pilot would have to be found by the others before any
work could start, would end the whole cluster when that pilot's runtime ends, and
would be lost with it when it is killed.

Communication is TLS by default (``Security.temporary()``): the scheduler and the
clients keep the credentials in memory, the workers read them from files (0600) in
the session directory, removed when the cluster closes.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

# the pilots are Parsl blocks: the cluster imports Parsl's providers with itself, as
# importing LocalCluster imports distributed, not while it starts (0.7 s here)
import parsl.providers  # noqa: F401
from distributed.core import Status
from distributed.deploy.spec import SpecCluster

from rp_executor.dask import tls
from rp_executor.dask.job import PilotJob
from rp_executor.dask.pilots import PilotWorkers
from rp_executor.dask.workers import (Layout, WorkerTemplate, default_margin, job_of,
                                      jobs_for, layout, worth_starting)
from rp_executor.exceptions import BadParameter

log = logging.getLogger(__name__)

#: Pilot description fields the cluster sets from its own parameters.
_OWN_FIELDS = ("resource", "cores", "gpus", "runtime", "provider", "memory")


class DaskCluster(SpecCluster):
    """A Dask cluster on pilots: ``distributed.Client(cluster)`` runs on their cores.

    Each pilot (a *job*, as dask-jobqueue calls a batch job) runs ``processes``
    Dask workers of ``threads`` threads, each worker one long-running unit of the
    pilot, so RP units and Dask tasks share the pilot's cores by its slots.

    :param resource: where the cluster's pilots run (``local.localhost``,
        ``slurm.localhost``, ...).
    :param cores: cores of each pilot (default: this machine's for a local
        resource, else the resource's ``cores_per_node``).
    :param gpus: GPUs of each pilot, shared evenly by its workers (a ``GPU``
        resource of each worker).
    :param runtime: minutes each pilot runs; its workers retire
        ``lifetime_margin`` seconds before, so that Dask moves their data first.
    :param provider: a Parsl provider (or its name) for the pilots, as in
        :class:`~rp_executor.description.ComputePilotDescription`.
    :param session: the session to work in (not closed by :meth:`close`); by
        default the cluster makes one in the current directory and closes it.
    :param processes: worker processes per pilot; ``threads``: threads of each.
        Neither: distributed's split of the cores (one process per core up to 4).
    :param memory: memory of each pilot's workers together (bytes or ``"4GB"``),
        split evenly; None: Dask's ``auto`` for each.
    :param pilots: pilots the user already has: the cluster puts workers on each
        (``processes × threads`` of its cores, by default all), beside the user's
        units, and never ends these pilots. Excludes the pilot parameters above.
    :param jobs: pilots to start with (default 1; with ``pilots``: all of them).
        ``jobs=0`` starts none, as dask-jobqueue does.
    :param name: the cluster's name (default ``dask.<n>``); workers are
        ``<name>-<job>-<process>``.
    :param security: True (default): TLS with a temporary certificate; a
        ``distributed.Security`` with certificates of your own; False: plain TCP.
    :param scheduler_options: more arguments of ``distributed.Scheduler``
        (``host``, ``port``, ``dashboard_address``, ...); the default host is the
        session's ``bind_host``, the dashboard port 8787 (another when it is taken).
    :param lifetime_margin: seconds before a pilot ends that its workers retire
        (default: a tenth of the runtime, 30 s to 5 minutes).
    :param nanny: run each worker under a Dask nanny (restarts a dead worker,
        enforces its memory limit); off by default: the unit is the worker.
    :param python: the interpreter of the workers (default: the resource's, as
        for the agent).
    :param worker_extra_args: more ``dask worker`` arguments.
    :param environment: environment variables of the worker units.
    :param pre_exec: shell lines each worker unit runs first (dask-jobqueue's
        ``job_script_prologue``).
    :param silence_logs: the level below which distributed's logs are silenced
        while the cluster lives (False: none).
    :param pilot_fields: any other field of
        :class:`~rp_executor.description.ComputePilotDescription` (``queue``,
        ``project``, ``sandbox``, ``oversubscribe``, ...).

    :raises BadParameter: a bad parameter, or a pilot description that
        :meth:`~rp_executor.pilot_manager.PilotManager.submit_pilots` refuses.
    """

    def __init__(self, resource: str = "local.localhost", cores: int | None = None,
                 gpus: int = 0, runtime: int = 60, provider: Any = None,
                 session: Any = None, processes: int | None = None,
                 threads: int | None = None, memory: Any = None, *,
                 pilots: Any = None, jobs: int | None = None, name: str | None = None,
                 security: Any = True, scheduler_options: dict | None = None,
                 lifetime_margin: float | None = None, nanny: bool = False,
                 python: str | None = None, worker_extra_args: list | None = None,
                 environment: dict | None = None, pre_exec: list | None = None,
                 silence_logs: Any = "error", **pilot_fields: Any) -> None:
        from rp_executor.session import Session

        _check_fields(pilot_fields)
        if pilots is not None:
            pilots = list(pilots) if isinstance(pilots, (list, tuple)) else [pilots]
            if not pilots:
                raise BadParameter("DaskCluster: pilots is empty; give pilots, or None "
                                   "to start pilots", attribute="pilots", value=pilots)
            session = session or pilots[0].session
            if any(p.session is not session for p in pilots):
                raise BadParameter("DaskCluster: the pilots must belong to one session",
                                   attribute="pilots", value=pilots)
        if jobs is not None and (type(jobs) is not int or jobs < 0):
            raise BadParameter(f"DaskCluster: jobs must be an int >= 0; got {jobs!r}",
                               attribute="jobs", value=jobs)
        self._own_session = session is None
        self._session = session if session is not None else Session()
        self._released = False
        self._registered = False
        self._pilot_workers: PilotWorkers | None = None
        self._tls_dir: Path | None = None
        self._user_pilots = pilots
        try:
            name = name or self._session._next_id("dask", 4)
            self._margin = lifetime_margin
            if pilots is None:
                fields, self._layout = _own_pilots(
                    self._session, dict(pilot_fields, resource=resource, cores=cores,
                                        gpus=gpus, runtime=runtime, provider=provider),
                    processes, threads, memory)
                self._layouts: dict[str, Layout] = {}
            else:
                fields = {}
                self._layouts = {p.uid: layout(p.description["cores"], processes, threads,
                                               p.description["gpus"], memory,
                                               where=f"DaskCluster on {p.uid}")
                                 for p in pilots}
                self._layout = min(self._layouts.values(), key=lambda s: s.processes)
            # the first pilots start while the cluster makes its credentials and
            # its scheduler; a Security of the user's is checked before
            sec = None if security is True else tls.security_of(security)
            self._pilot_workers = PilotWorkers(self._session, fields, lifetime_margin,
                                               self._on_job_end)
            first = (1 if pilots is None else len(pilots)) if jobs is None else jobs
            if pilots is None:
                self._pilot_workers.launch_ahead(first)
            if security is True:
                sec = tls.temporary()
            worker_tls = None
            if sec is not None:
                self._tls_dir = Path(self._session.path) / "dask" / name
                worker_tls = tls.worker_files(sec, self._tls_dir)
            self._pilot_workers.template = WorkerTemplate(
                python=python, tls=worker_tls, nanny=nanny,
                extra_args=list(worker_extra_args or []),
                environment={str(k): str(v) for k, v in (environment or {}).items()},
                pre_exec=list(pre_exec or []))
            host = self._session._cfg["bind_host"]
            options = {"protocol": "tls://" if sec is not None else "tcp://",
                       "host": host, "dashboard_address": f"{host}:8787",
                       "security": sec, **(scheduler_options or {})}
            super().__init__(scheduler={"cls": _scheduler_class(), "options": options},
                             worker=self._spec(self._layout, None), security=sec,
                             silence_logs=silence_logs, name=name)
        except BaseException:
            self._release()
            raise
        self._session.register_close_callback(self._session_closing)
        self._registered = True
        try:
            self.scale(jobs=first)
            self.sync(self._correct_state)
        except BaseException:
            self.close()
            raise

    # what the cluster runs on -----------------------------------------------------------

    @property
    def session(self) -> Any:
        """The session of the cluster's pilots and worker units."""
        return self._session

    @property
    def unit_manager(self) -> Any:
        """The unit manager of the worker units (each a Dask worker process)."""
        return self._pilot_workers.umgr

    @property
    def pilots(self) -> list:
        """The pilots the cluster's jobs run on now."""
        return [job.pilot for job in list(self.workers.values())
                if getattr(job, "pilot", None) is not None]

    # scaling -----------------------------------------------------------------------

    def scale(self, n: int | None = None, jobs: int = 0, memory: Any = None,
              cores: int | None = None) -> Any:
        """Scale to ``jobs`` pilots, or to pilots for ``n`` workers, ``cores`` cores
        or ``memory`` bytes (the most of these); pilots of the user's are used as
        far as there are (with a warning for more).

        Scaling down retires the workers of the jobs it ends (the scheduler moves
        their data to the others first), the youngest jobs and those whose
        workers have not connected yet first, and ends their pilots if the
        cluster started them.
        """
        from dask.utils import parse_bytes

        if n is not None:
            jobs = max(jobs, jobs_for(n, self._layout.processes))
        if cores is not None:
            jobs = max(jobs, math.ceil(cores / self._layout.cores))
        if memory is not None:
            if self._layout.memory is None:
                raise ValueError("scale(memory=...) needs the cluster's memory= set")
            per_job = self._layout.memory * self._layout.processes
            jobs = max(jobs, math.ceil(parse_bytes(memory) / per_job))
        if self._user_pilots is not None:
            most = len(self.worker_spec) + len(self._free_pilots())
            if jobs > most:
                log.warning("%s: %d job(s) asked for, %d of the user's pilots can take "
                            "workers", self.name, jobs, most)
                jobs = most
        if jobs < len(self.worker_spec):
            connected = {job_of(w.get("name", "")) for w in
                         self.scheduler_info.get("workers", {}).values()}
            order = sorted(self.worker_spec,
                           key=lambda j: (j in connected, -_number(j)))
            for job in order[:len(self.worker_spec) - jobs]:
                del self.worker_spec[job]
        return super().scale(jobs)

    def adapt(self, *args: Any, minimum_jobs: int | None = None,
              maximum_jobs: int | None = None, **kwargs: Any) -> Any:
        """Scale with the load, through distributed's ``Adaptive``: between
        ``minimum_jobs`` and ``maximum_jobs`` pilots (or ``minimum`` and
        ``maximum`` workers; other keyword arguments go to ``Adaptive``, such as
        ``interval`` and ``wait_count``). Whole pilots are retired, never one
        worker of each (``worker_key``)."""
        per_job = self._layout.processes
        if minimum_jobs is not None:
            kwargs["minimum"] = minimum_jobs * per_job
        if maximum_jobs is not None:
            kwargs["maximum"] = maximum_jobs * per_job
        if self._user_pilots is not None:
            most = sum(self._layouts[p.uid].processes for p in self._user_pilots)
            kwargs["maximum"] = min(kwargs.get("maximum", most), most)
        kwargs.setdefault("worker_key", job_of)
        return super().adapt(*args, **kwargs)

    def new_worker_spec(self) -> dict:
        """The next job: a new pilot, or a pilot of the user's that has none of the
        cluster's workers and time left. Job names are never used twice."""
        name = f"{self.name}-{self._i}"
        self._i += 1
        if self._user_pilots is None:
            return {name: self.new_spec}
        free = self._free_pilots()
        if not free:
            return {}
        return {name: self._spec(self._layouts[free[0].uid], free[0])}

    def _spec(self, shape: Layout, pilot: Any) -> dict:
        suffixes = [f"-{i}" for i in range(shape.processes)]
        return {"cls": PilotJob, "group": suffixes,
                "options": {"workers": self._pilot_workers, "shape": shape,
                            "suffixes": suffixes, "pilot": pilot, "retire": self._retire}}

    def _free_pilots(self) -> list:
        from rp_executor.views.summary import walltime_left

        used = {spec["options"]["pilot"].uid for spec in self.worker_spec.values()
                if spec["options"].get("pilot") is not None}
        free = []
        for p in self._user_pilots or ():
            if p.uid in used or p.is_final:
                continue
            left = walltime_left(p)
            runtime_s = p.description["runtime"] * 60.0
            margin = self._margin if self._margin is not None else default_margin(runtime_s)
            if left is None or worth_starting(left, margin):
                free.append(p)
        return free

    def _threads_per_worker(self) -> int:
        return self._layout.threads

    def _memory_per_worker(self) -> int:
        if self._layout.memory is None:
            raise ValueError("adapt(minimum_memory=...) needs the cluster's memory= set")
        return self._layout.memory

    # jobs that end ---------------------------------------------------------------

    async def _retire(self, names: list[str]) -> None:
        """Retire workers by name while the cluster runs: their data moves to the
        other workers, then they close (at close, nothing is moved)."""
        if self.status != Status.running or self.scheduler_comm is None:
            return
        await self.scheduler_comm.retire_workers(names=names, close_workers=True,
                                                 remove=True)

    def _on_job_end(self, job: str) -> None:
        """Every worker unit of ``job`` ended (the session's callback thread)."""
        if self.status not in (Status.created, Status.starting, Status.running):
            return
        try:
            self.loop.add_callback(self._job_ended, job)
        except RuntimeError:   # the loop is gone: the cluster is closing
            log.debug("%s: %s ended after the loop closed", self.name, job)

    def _job_ended(self, job: str) -> None:
        """Forget a job whose workers are gone (retired at the end of their
        lifetime, or their pilot died): its spec goes, so that ``scale`` and
        ``adapt`` count it no more; closing it ends its pilot if the cluster owns it."""
        if self.status != Status.running or self.worker_spec.pop(job, None) is None:
            return
        log.info("%s: the workers of %s ended", self.name, job)
        self._correct_state()

    # closing ---------------------------------------------------------------------

    async def _close(self) -> None:
        await super()._close()
        import asyncio
        await asyncio.get_running_loop().run_in_executor(None, self._release)

    def _release(self) -> None:
        """End what the cluster holds besides the scheduler and the jobs: its
        managers, its TLS files and, if it made it, the session. Runs once."""
        if self._released:
            return
        self._released = True
        try:
            if self._pilot_workers is not None:
                self._pilot_workers.close()
            if self._tls_dir is not None:
                tls.remove_files(self._tls_dir)
        finally:
            if self._registered:
                self._registered = False
                self._session.unregister_close_callback(self._session_closing)
            if self._own_session:
                self._session.close()

    def _session_closing(self) -> None:
        """The session closes: nothing of the cluster may outlive it."""
        self.close()


def _check_fields(fields: dict) -> None:
    from rp_executor.description import ComputePilotDescription

    allowed = [n for n in ComputePilotDescription._attrs
               if n not in _OWN_FIELDS and not n.startswith("_")]
    for key in fields:
        if key not in allowed:
            raise BadParameter(f"DaskCluster got an unexpected argument {key!r}; pilot "
                               f"description fields allowed here: {', '.join(allowed)}",
                               attribute=key, value=fields[key])


def _own_pilots(session: Any, fields: dict, processes: int | None, threads: int | None,
                memory: Any) -> tuple[dict, Layout]:
    """The description fields of the cluster's own pilots (cores filled in, memory
    in MB), checked, and how their cores hold workers."""
    from rp_executor.description import ComputePilotDescription

    fields["cores"] = fields["cores"] or _default_cores(session, fields["resource"])
    shape = layout(fields["cores"], processes, threads, fields["gpus"], memory)
    if shape.memory is not None:
        # MB, as the description counts it (the journal shows it)
        fields["memory"] = shape.memory * shape.processes // 1_000_000
    ComputePilotDescription(**fields).validate()
    session.get_resource_config(fields["resource"])   # DoesNotExist, with suggestions
    return fields, shape


def _default_cores(session: Any, resource: str) -> int:
    """A pilot's cores when the cluster is not told: this machine's for a resource
    here, else the resource's ``cores_per_node``."""
    from rp_executor.agent.resource_manager import detect_cores

    rcfg = session.get_resource_config(resource)
    if (rcfg.get("provider") or "LocalProvider") == "LocalProvider":
        return detect_cores()
    if rcfg.get("cores_per_node"):
        return int(rcfg["cores_per_node"])
    raise BadParameter(f"DaskCluster: cores must be given for {resource!r} (its config "
                       "has no cores_per_node)", attribute="cores", value=None)


def _number(job: str) -> int:
    try:
        return int(job.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def _scheduler_class() -> Any:
    from distributed.scheduler import Scheduler
    return Scheduler
