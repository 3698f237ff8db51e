"""The RP side of a Dask cluster: its pilots, and its workers as units of them.

:class:`PilotWorkers` holds a cluster's unit manager (every worker process is one
long-running executable unit, in the journal with its states) and, for the pilots
the cluster starts itself, its pilot manager. Its methods block (they submit,
cancel and wait), so the cluster's event loop, which also runs the Dask scheduler,
calls them on worker threads; what it learns from RP (a job's units all ended) it
hands back through ``on_job_end``, on the session's callback thread.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any, Callable

from rp_executor import states
from rp_executor.dask.workers import (Layout, WorkerTemplate, default_margin, lifetime,
                                      worker_description)

log = logging.getLogger(__name__)


class PilotWorkers:
    """Starts and ends the Dask workers of one cluster on pilots.

    :param session: the session the pilots and units belong to.
    :param pilot_fields: the ComputePilotDescription of the pilots the cluster
        starts (``resource``, ``cores``, ``runtime``, ...).
    :param margin: seconds before a pilot ends that its workers retire; None: a
        tenth of its runtime, 30 s to 5 min (:func:`.workers.default_margin`).
    :param on_job_end: ``on_job_end(name)`` once every worker unit of a job ended
        (retired at the end of their lifetime, their pilot gone, canceled).
    """

    #: what every worker unit has in common; set before the first job starts
    template: WorkerTemplate

    def __init__(self, session: Any, pilot_fields: dict, margin: float | None,
                 on_job_end: Callable[[str], None]) -> None:
        from rp_executor.unit_manager import UnitManager

        self.session = session
        self.pilot_fields = dict(pilot_fields)
        self.margin = margin
        self._on_job_end = on_job_end
        self._pmgr: Any = None
        self._ready: list = []                      # pilots launched ahead of their job
        self._lock = threading.Lock()
        self._jobs: dict[str, set[str]] = {}        # job name -> uids of units not final
        self._job_of: dict[str, str] = {}           # unit uid -> job name
        self._added: set[str] = set()               # pilots added to the unit manager
        self.umgr = UnitManager(session)
        self.umgr.register_final_callback(self._on_final)

    # what a job does ---------------------------------------------------------------

    def start(self, job: str, scheduler: str, pilot: Any, shape: Layout,
              suffixes: list[str]) -> tuple[Any, list]:
        """Start one job: its pilot (a new one when ``pilot`` is None) and one worker
        unit per suffix (named ``<job><suffix>``) bound to it. Returns ``(pilot,
        units)`` without waiting for them to run; a job whose pilot has ended gets
        no units and is reported ended at once.

        :raises BadParameter: the pilot description is refused (by
            :meth:`~rp_executor.pilot_manager.PilotManager.submit_pilots`).
        """
        if pilot is None:
            pilot = self._new_pilot()
        if pilot.is_final:
            log.warning("%s: pilot %s has ended (%s): no workers on it", job, pilot.uid,
                        pilot.state)
            self._on_job_end(job)
            return pilot, []
        with self._lock:
            if pilot.uid not in self._added:
                self.umgr.add_pilots(pilot)
                self._added.add(pilot.uid)
            runtime_s = pilot._description.runtime * 60.0
            left = _walltime_left(pilot)
            margin = self.margin if self.margin is not None else default_margin(runtime_s)
            life = lifetime(runtime_s if left is None else left, margin)
            template = self._template_for(pilot)
            units = self.umgr.submit_units([
                worker_description(template, scheduler, f"{job}{suffix}", shape,
                                   pilot.uid, life) for suffix in suffixes])
            self._jobs[job] = {u.uid for u in units}
            self._job_of.update((u.uid, job) for u in units)
        log.info("%s: %d worker(s) on %s, lifetime %.0f ± %.0f s", job, len(units),
                 pilot.uid, *life)
        return pilot, units

    def stop(self, pilot: Any, units: list, own: bool) -> None:
        """End a job: cancel its worker units that still run, then its pilot if the
        cluster started it (a pilot of the user's is left running)."""
        running = [u.uid for u in units if not u.is_final]
        if running:
            self.umgr.cancel_units(running)
        if own and pilot is not None and not pilot.is_final:
            pilot.cancel()

    def close(self) -> None:
        """Stop the managers; with the pilot manager, the pilots the cluster started
        end too (those of the user do not)."""
        try:
            self.umgr.unregister_final_callback(self._on_final)
        except Exception:   # never registered, or the manager is gone
            log.debug("final callback of %s already gone", self.umgr.uid)
        self.umgr.close()
        if self._pmgr is not None:
            self._pmgr.close(terminate=True)

    # internals --------------------------------------------------------------------

    def launch_ahead(self, n: int) -> None:
        """Submit ``n`` pilots now, for the next jobs to take: a new cluster's
        first pilots start while its scheduler does.

        :raises BadParameter: the pilot description is refused.
        """
        if n > 0:
            pilots = self._submit(n)
            with self._lock:
                self._ready.extend(pilots)

    def _new_pilot(self) -> Any:
        with self._lock:
            if self._ready:
                return self._ready.pop(0)
        return self._submit(1)[0]

    def _submit(self, n: int) -> list:
        from rp_executor.description import ComputePilotDescription
        from rp_executor.pilot_manager import PilotManager

        with self._lock:
            if self._pmgr is None:
                self._pmgr = PilotManager(self.session)
        return self._pmgr.submit_pilots([ComputePilotDescription(**self.pilot_fields)
                                         for _ in range(n)])

    def _template_for(self, pilot: Any) -> WorkerTemplate:
        """The template with the pilot's interpreter filled in and, on this machine,
        what the client can import on the workers' path (its functions are then
        unpickled by reference, as the pilots' function units do)."""
        from rp_executor._core.providers import python_for
        from rp_executor.pilot_manager import _runs_here

        d = pilot._description
        rcfg = self.session._resources.get(d.resource, d.access_schema)
        env = dict(self.template.environment)
        if _runs_here(d, rcfg) and "PYTHONPATH" not in env:
            path = client_path()
            if path:
                env["PYTHONPATH"] = path
        return WorkerTemplate(python=self.template.python or python_for(rcfg),
                              tls=self.template.tls, nanny=self.template.nanny,
                              extra_args=list(self.template.extra_args),
                              environment=env, pre_exec=list(self.template.pre_exec))

    def _on_final(self, units: list) -> None:
        """Final callback of the unit manager (the session's callback thread)."""
        ended = []
        with self._lock:
            for u in units:
                job = self._job_of.pop(u.uid, None)
                if job is None:
                    continue
                if u.state != states.DONE:
                    log.info("worker %s (%s) ended %s: %s", u.name, u.uid, u.state,
                             (u.stderr or "").strip()[-300:])
                left = self._jobs.get(job)
                if left is not None:
                    left.discard(u.uid)
                    if not left:
                        del self._jobs[job]
                        ended.append(job)
        for job in ended:
            self._on_job_end(job)


def _walltime_left(pilot: Any) -> float | None:
    from rp_executor.views.summary import walltime_left
    return walltime_left(pilot)


def client_path() -> str:
    """The client's import path for workers on this machine: the entries of
    ``sys.path`` outside the interpreter's own prefix (the script's directory, the
    test folder, an editable install), then ``$PYTHONPATH``."""
    own = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    entries = []
    for p in sys.path:
        full = os.path.realpath(p or os.getcwd())
        if any(full == o or full.startswith(o + os.sep) for o in own):
            continue
        if full not in entries:
            entries.append(full)
    inherited = os.environ.get("PYTHONPATH")
    return os.pathsep.join(entries + ([inherited] if inherited else []))
