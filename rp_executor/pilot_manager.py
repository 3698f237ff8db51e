"""PilotManager: submits pilots as Parsl blocks, follows them, cancels them."""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rp_executor import states
from rp_executor._core import providers
from rp_executor._core import reattach, wire
from rp_executor._core.journal import to_json
from rp_executor._core.lifecycle import Manager
from rp_executor.agent.config import AgentConfig
from rp_executor.constants import PILOT_STATE, PMGR_METRICS
from rp_executor.description import ComputePilotDescription
from rp_executor.exceptions import BadParameter
from rp_executor.pilot import ComputePilot

log = logging.getLogger(__name__)


class PilotManager(Manager):
    """Launches and follows the pilots of a session.

    :param session: the :class:`Session` this manager belongs to.
    """

    _kind = "pilot"
    _metrics = tuple(PMGR_METRICS)

    def __init__(self, session: Any, uid: str | None = None) -> None:
        super().__init__(session, uid or session._next_id("pmgr", 4))
        self._pilots: dict[str, ComputePilot] = {}
        self._launch_queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._launcher = threading.Thread(target=self._launch_loop, daemon=True,
                                          name=f"rp-{self._uid}-launcher")
        self._watcher = threading.Thread(target=self._watch_loop, daemon=True,
                                         name=f"rp-{self._uid}-watcher")
        session._register_pmgr(self)
        self._launcher.start()
        self._watcher.start()

    # queries ------------------------------------------------------------------------

    def list_pilots(self) -> list[str]:
        """The uids of this manager's pilots."""
        with self._lock:
            return list(self._pilots)

    def get_pilots(self, uids: Any = None) -> Any:
        """The pilots for ``uids`` (all when None); a scalar uid gives one pilot.

        :raises DoesNotExist: a uid is not known (also a ``ValueError``).
        """
        with self._lock:
            pilots, scalar = self._lookup(self._pilots, uids, "pilot")
        return pilots[0] if scalar else pilots

    def as_dict(self) -> dict:
        """``{uid, cfg}`` as in RADICAL-Pilot."""
        return {"uid": self._uid, "cfg": {}}

    def __repr__(self) -> str:
        from rp_executor.views.summary import pmgr_text
        return pmgr_text(self)

    def _repr_html_(self) -> str:
        """The manager's view in a notebook: its pilots' counts per state, and the
        first pilots with their cores, GPUs and walltime left."""
        from rp_executor.views.html import pmgr_view
        return pmgr_view(self)

    def is_valid(self, term: bool = True) -> bool:
        """Whether the manager can still be used: open, its session valid, its
        launcher and watcher threads alive. ``term`` is accepted for RADICAL-Pilot
        compatibility."""
        return not self._closed and self._session.is_valid(term) and \
            self._launcher.is_alive() and self._watcher.is_alive()

    # submission ---------------------------------------------------------------------

    def submit_pilots(self, descriptions: Any) -> Any:
        """Launch one pilot per description; one description in gives one pilot out.

        Every description is validated before any pilot is launched. A pilot whose
        block runs on this machine (a ``LocalProvider``, as for ``local.localhost``)
        may ask for at most the cores and GPUs the machine has, unless its
        description sets ``oversubscribe=True``.

        :raises BadParameter: an invalid description (the message names which and why),
            or an empty list.
        """
        self._check_open()
        scalar = not isinstance(descriptions, (list, tuple))
        descs = [descriptions] if scalar else list(descriptions)
        if not descs:
            raise BadParameter("cannot submit no pilot descriptions", attribute="descriptions",
                               value=descriptions)
        checked = []
        for i, d in enumerate(descs):
            if isinstance(d, dict):
                d = ComputePilotDescription(d)
            elif not isinstance(d, ComputePilotDescription):
                raise BadParameter(f"descriptions[{i}]: expected a ComputePilotDescription "
                                   f"or dict; got {type(d).__name__}",
                                   attribute="descriptions", value=d)
            else:
                d = d.copy()
            d.validate()
            if d.input_staging or d.output_staging:
                _check_pilot_staging(d, i)
            rcfg = self._session._resources.get(d.resource)  # DoesNotExist, with suggestions
            if d.access_schema is not None:
                try:
                    rcfg = self._session._resources.get(d.resource, d.access_schema)
                except BadParameter as exc:
                    raise BadParameter(f"descriptions[{i}].access_schema: {exc}",
                                       attribute="access_schema",
                                       value=d.access_schema) from exc
            _check_provider(d, i)
            if _runs_here(d, rcfg) and not d.oversubscribe:
                _check_machine_size(d, i)
            checked.append(d)
        now = time.time()
        pilots = [ComputePilot(self._session._next_id("pilot", 4), self, d) for d in checked]
        self._session._journal.add_pilots(
            [(p.uid, self._uid, to_json(p._description.as_dict())) for p in pilots])
        with self._lock:
            for p in pilots:
                self._pilots[p.uid] = p
                self._session._pilots[p.uid] = p
            self._advance([(p, [(states.NEW, now), (states.PMGR_LAUNCHING_PENDING, now)])
                           for p in pilots])
        for p in pilots:
            self._launch_queue.put(p)
        return pilots[0] if scalar else pilots

    def wait_pilots(self, uids: Any = None, state: Any = None,
                    timeout: float | None = None) -> Any:
        """Wait until the pilots reached or passed ``state`` (default: final) or are final.

        ``uids=None`` waits for all pilots. Returns their states (a scalar for a scalar
        uid), also when ``timeout`` seconds ran out.
        """
        with self._lock:
            pilots, scalar = self._lookup(self._pilots, uids, "pilot")
        result = self._wait(pilots, state, timeout)
        return result[0] if scalar else result

    def cancel_pilots(self, uids: Any = None, _timeout: float | None = None) -> None:
        """Cancel pilots (all when None) and wait until they are final.

        Running units of a canceled pilot end FAILED, as in RADICAL-Pilot.
        """
        with self._lock:
            pilots, _ = self._lookup(self._pilots, uids, "pilot")
        for p in pilots:
            self._cancel(p)
        self._wait(pilots, None, _timeout)
        for p in pilots:
            self._remove_block(p)
            self._stage_out(p)

    def close(self, terminate: bool = True) -> None:
        """Stop this manager; with ``terminate``, cancel its pilots first."""
        if self._closed:
            return
        if terminate:
            self.cancel_pilots(_timeout=10)
        with self._lock:
            self._closed = True
            leftovers = [p for p in self._pilots.values() if not p.is_final]
        self._set_states([(p, [(states.FAILED, time.time())]) for p in leftovers],
                         cause="pilot manager closed")
        self._stop.set()
        self._launch_queue.put(None)
        self._launcher.join(timeout=10)
        self._watcher.join(timeout=10)
        for p in self._pilots.values():
            self._remove_block(p)

    def _stage_out(self, pilot: ComputePilot) -> None:
        """Run the description's output_staging once, after the pilot ended; a
        failure is logged and noted in ``pilot.log`` (the pilot is final already)."""
        if pilot._staged_out or not pilot._description.output_staging \
                or pilot.pilot_sandbox is None:
            return
        pilot._staged_out = True
        from rp_executor.staging.stager import stage_pilot
        try:
            stage_pilot(pilot, pilot._description.output_staging, output=True,
                        name="output_staging")
        except Exception as exc:  # the pilot is final: report, do not raise from cancel
            log.warning("%s: %s", pilot.uid, exc)
            pilot.log.append(str(exc))

    def _check_metric(self, metric: str | None) -> None:
        if metric is not None and metric != PILOT_STATE:
            raise BadParameter(f"metric {metric!r} is not known for pilots; allowed: "
                               f"{PILOT_STATE}", attribute="metric", value=metric)

    # state changes that reach the unit managers ----------------------------------

    def _set_states(self, items: list, cause: str | None = None) -> None:
        """Advance pilots; tell the unit managers about pilots that became final."""
        with self._lock:
            changed = self._advance(items)
        for p in changed:
            if p.is_final:
                if cause:
                    p.log.append(cause)
                for umgr in list(p._umgrs):
                    # every manager must hear of it, or its units of p never end
                    try:
                        umgr._pilot_final(p, cause or p._state)
                    except Exception:
                        log.exception("%s could not end its units of %s", umgr.uid, p.uid)
            elif p._state == states.PMGR_ACTIVE:
                for umgr in list(p._umgrs):
                    umgr._pilot_active(p)

    # launching ----------------------------------------------------------------------

    def _launch_loop(self) -> None:
        while True:
            pilot = self._launch_queue.get()
            if pilot is None:
                return
            try:
                self._launch(pilot)
            except Exception as exc:
                log.exception("launching %s failed", pilot.uid)
                pilot.stderr = f"launch failed: {exc}"
                self._set_states([(pilot, [(states.FAILED, time.time())])],
                                 cause=f"launch failed: {exc}")
            finally:
                pilot._launched.set()

    def _launch(self, pilot: ComputePilot) -> None:
        if pilot._canceling:
            self._set_states([(pilot, [(states.CANCELED, time.time())])],
                             cause="canceled before launch")
            return
        self._set_states([(pilot, [(states.PMGR_LAUNCHING, time.time())])])
        session = self._session
        pd = pilot._description
        rcfg = session._resources.get(pd.resource, pd.access_schema)
        pilot._rcfg = rcfg
        for arg in rcfg.get("mandatory_args") or []:
            if not pd.get(arg):
                raise BadParameter(f"attribute {arg!r} is required for resource {pd.resource}",
                                   attribute=arg, value=None)
        workdir = pd.sandbox or rcfg.get("default_remote_workdir") or "$PWD"
        workdir = os.path.expandvars(workdir.replace("$PWD", session._client_sandbox))
        resource_sb = Path(workdir) / "radical.pilot.sandbox"
        session_sb = resource_sb / session.uid
        pilot_sb = session_sb / pilot.uid
        pilot_sb.mkdir(parents=True, exist_ok=True)
        pilot._sandboxes = {"resource": str(resource_sb), "session": str(session_sb),
                            "pilot": str(pilot_sb)}
        if pd.input_staging:
            # before the block starts, so the agent's units find their inputs; a
            # failure fails the pilot (the launcher's except clause)
            from rp_executor.staging.stager import stage_pilot
            stage_pilot(pilot, pd.input_staging, output=False, name="input_staging")
        pilot._keys = wire.KeyPair.generate()
        reattach.save_keys(session._dir, pilot.uid, pilot._keys)   # for a reattach
        session._channel.allow(pilot._keys.public)
        cfg_path = pilot_sb / "agent.cfg.json"
        cores_per_node = rcfg.get("cores_per_node")
        # the provider first: whether the block runs on this machine depends on it
        provider = providers.make_provider(rcfg, pd, pilot_sb)
        pilot._provider = provider
        AgentConfig(
            session_id=session.uid, pilot_id=pilot.uid,
            endpoint=session._channel.endpoint,
            server_public=session._channel.keys.public,
            public=pilot._keys.public, secret=pilot._keys.secret,
            sandbox=str(pilot_sb), cores=pd.cores, gpus=pd.gpus, runtime=pd.runtime,
            cores_per_node=cores_per_node, gpus_per_node=rcfg.get("gpus_per_node"),
            resource_manager=rcfg.get("lrms") or "local",
            task_launch_method=rcfg.get("task_launch_method") or "FORK",
            mpi_launch_method=rcfg.get("mpi_launch_method") or "MPIRUN",
            launch_options=rcfg.get("launch_options") or {},
            heartbeat_interval=session._cfg["heartbeat_interval"],
            reconnect_grace=session._cfg["reconnect_grace"],
            log_level=session._cfg["agent_log_level"],
            function_workers=session._cfg["function_workers"],
            # on this machine, function units can use what the client can import; ''
            # (a REPL, a notebook, python -c) is the client's directory, not the agent's
            python_path=[os.path.abspath(p) for p in sys.path]
            if session._is_local(pilot) else [],
        ).write(cfg_path)
        command = providers.agent_command(providers.python_for(rcfg), cfg_path,
                                          pd.output, pd.error)
        job_id = provider.submit(command, 1, f"rp.{session.uid}.{pilot.uid}")
        if job_id is None:
            raise RuntimeError(f"provider {type(provider).__name__} is at capacity")
        pilot.job_id = str(job_id)
        pilot._last_seen = time.monotonic()
        session._journal.set_pilot_job(pilot.uid, pilot.job_id, str(pilot_sb))
        pilot.log.append(f"submitted as job {job_id} of {type(provider).__name__}")
        self._set_states([(pilot, [(states.PMGR_ACTIVE_PENDING, time.time())])])
        if pilot._canceling:
            self._cancel(pilot)

    # cancelling ---------------------------------------------------------------------

    def _cancel(self, pilot: ComputePilot) -> None:
        if pilot.is_final:
            return
        pilot._canceling = True
        if pilot._send(wire.CancelPilot()):
            return  # the agent ends its units and says Bye(CANCELED)
        if pilot.job_id is not None and pilot._provider is not None:
            self._remove_block(pilot)
            self._set_states([(pilot, [(states.CANCELED, time.time())])],
                             cause="canceled before the agent connected")
        elif pilot._restored:
            self._set_states([(pilot, [(states.CANCELED, time.time())])],
                             cause="canceled before the agent reconnected")
            self._remove_block(pilot)
        # otherwise the launcher sees _canceling and does not launch

    def _remove_block(self, pilot: ComputePilot, grace: float = 5.0) -> None:
        """Make sure the pilot's block and every process of it are gone.

        A block whose agent said goodbye ends by itself and gets ``grace`` seconds
        to do so; one whose agent died or hangs (no goodbye) is canceled at once
        through its provider (``scancel`` for Slurm, SIGTERM to the process group of
        LocalProvider's shell). On this machine, what the pilot left (a stopped
        agent, its workers, units in their own process groups) is then ended by
        :func:`providers.sweep_local_processes`; so are the processes of a pilot
        rebuilt by a reattach, which has no provider. Runs once per pilot; a second
        caller waits until the first is done.
        """
        with pilot._block_lock:
            if pilot._block_gone:
                return
            if pilot._provider is None or pilot.job_id is None:
                if pilot._restored and self._session._is_local(pilot) and pilot.pilot_sandbox:
                    if pilot._said_bye:   # the agent ends by itself: give it the time
                        _wait_gone(pilot.resource_details.get("pid"), grace)
                    providers.sweep_local_processes(self._session.uid, pilot.uid,
                                                    pilot.pilot_sandbox)
                    pilot._block_gone = True
                return
            try:
                if not providers.wait_terminal(pilot._provider, pilot.job_id,
                                               grace if pilot._said_bye else 0):
                    pilot._provider.cancel([pilot.job_id])
                    providers.wait_terminal(pilot._provider, pilot.job_id, grace)
            except Exception:
                log.exception("removing the block of %s failed", pilot.uid)
            pilot._block_gone = True
            if self._session._is_local(pilot) and pilot.pilot_sandbox:
                providers.sweep_local_processes(self._session.uid, pilot.uid,
                                                pilot.pilot_sandbox)

    # watching -----------------------------------------------------------------------

    def _watch_loop(self) -> None:
        interval = self._session._cfg["watch_interval"]
        while not self._stop.wait(interval):
            try:
                self._watch_once()
            except Exception:
                log.exception("watching the pilots of %s failed", self._uid)

    def _watch_once(self) -> None:
        timeout = self._session._cfg["heartbeat_timeout"]
        # an agent's silence is known up to the time the client had read everything
        # that had arrived, not up to now: the client may have stalled meanwhile
        heard_until = self._session._channel.caught_up
        with self._lock:
            pilots = [p for p in self._pilots.values()
                      if not p.is_final and p.job_id is not None]
        for p in pilots:
            if p._provider is None:   # rebuilt by a reattach: the agent must come back
                if heard_until - p._last_seen > timeout or reattach.agent_gone(p):
                    self._agent_gone(p)
                continue
            status = p._provider.status([p.job_id])[0]
            if status.terminal:
                # what the agent sent before it ended (its last states and results, a
                # Bye) may still wait in the socket: the I/O thread reads it first
                self._catch_up(time.monotonic(), timeout)
                if p.is_final:
                    continue
                detail = _job_detail(status, p)
                p.stderr = detail
                self._set_states([(p, [(states.FAILED, time.time())])],
                                 cause=f"the block ended before the agent said goodbye "
                                       f"({detail})")
            elif heard_until - p._last_seen > timeout:
                self._set_states([(p, [(states.FAILED, time.time())])],
                                 cause=f"no heartbeat from the agent for {timeout:.0f} s")
            else:
                continue
            # what the agent left (or the hung agent itself) ends off this thread, which
            # watches the other pilots; closing the manager waits for it (_block_lock)
            threading.Thread(target=self._remove_block, args=(p,), daemon=True,
                             name=f"rp-{p.uid}-remove").start()

    def _agent_gone(self, pilot: ComputePilot) -> None:
        """A pilot rebuilt by a reattach whose agent ended, or did not come back in
        ``heartbeat_timeout``: what the agent left in its sandbox is applied, and the
        pilot ends with what it held."""
        applied = reattach.replay_spill(pilot)
        end = reattach.read_agent_end(pilot)
        if applied:
            pilot.log.append(f"applied {applied} report(s) the agent left in its sandbox")
        if not pilot.is_final:
            if end:
                cause = f"the agent ended while no client was attached: {end['cause']}"
                state = end["state"] if end["state"] in states.FINAL_STATES else states.FAILED
            else:
                cause = ("the agent did not come back to the reattached client within "
                         f"{self._session._cfg['heartbeat_timeout']:g} s")
                state = states.FAILED
            self._set_states([(pilot, [(state, time.time())])], cause=cause)
        self._remove_block(pilot)

    def _catch_up(self, since: float, limit: float) -> None:
        """Wait (``limit`` seconds at most) until the I/O thread has read everything
        that arrived before ``since``."""
        channel = self._session._channel
        deadline = since + limit
        while channel.caught_up < since and time.monotonic() < deadline:
            time.sleep(0.02)


def _wait_gone(pid: Any, timeout: float) -> None:
    """Wait up to ``timeout`` seconds until process ``pid`` (of this host) is gone."""
    deadline = time.monotonic() + timeout
    while pid and time.monotonic() < deadline:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return
        except OSError:
            return
        time.sleep(0.05)


def _job_detail(status: Any, pilot: ComputePilot) -> str:
    parts = [f"job state {status.state.name}"]
    if status.exit_code is not None:
        parts.append(f"exit code {status.exit_code}")
    if status.message:
        parts.append(str(status.message))
    try:
        err = status.stderr_summary
    except Exception:  # the provider's files may be gone
        err = None
    if not err and pilot._description.error and pilot.pilot_sandbox:
        # the agent's stderr went to the description's error file
        try:
            err = Path(pilot.pilot_sandbox, pilot._description.error).read_text(
                errors="replace")
        except OSError:
            err = None
    if err:
        parts.append(f"stderr: {err.strip()[-500:]}")
    return "; ".join(parts)


def _check_provider(d: ComputePilotDescription, index: int) -> None:
    """A description's ``provider``: None, a Parsl ExecutionProvider (an object with
    ``submit``, ``status`` and ``cancel``) or the name of a class of
    ``parsl.providers``; anything else raises BadParameter naming it."""
    provider = d.provider
    if provider is None:
        return
    if isinstance(provider, str):
        import parsl.providers
        known = sorted(n for n in dir(parsl.providers) if n.endswith("Provider"))
        if provider not in known:
            raise BadParameter(f"descriptions[{index}].provider: got {provider!r}; a name "
                               f"must be one of {', '.join(known)}", attribute="provider",
                               value=provider)
        return
    missing = [m for m in ("submit", "status", "cancel")
               if not callable(getattr(provider, m, None))]
    if missing:
        raise BadParameter(f"descriptions[{index}].provider: got {provider!r} "
                           f"({type(provider).__name__}), which has no {', '.join(missing)}; "
                           "allowed: a Parsl ExecutionProvider, the name of one, or None",
                           attribute="provider", value=provider)


def _runs_here(d: ComputePilotDescription, rcfg: dict) -> bool:
    """Whether the pilot's block would run on this machine: its provider (the
    description's, else the resource config's, else the default) is a LocalProvider."""
    provider = d.provider
    if provider is None:
        provider = rcfg.get("provider") or "LocalProvider"
    name = provider if isinstance(provider, str) else type(provider).__name__
    return name == "LocalProvider"


def _check_machine_size(d: ComputePilotDescription, index: int) -> None:
    """A pilot on this machine asks for no more cores and GPUs than it has;
    BadParameter names the field, the value and what is allowed."""
    from rp_executor.agent.resource_manager import detect_cores, detect_gpus

    cores = detect_cores()
    if d.cores > cores:
        raise BadParameter(f"descriptions[{index}].cores: {d.cores} is more than the {cores} "
                           f"cores of this machine ({d.resource}); allowed: 1..{cores}, or "
                           "set oversubscribe=True", attribute="cores", value=d.cores)
    if d.gpus:
        gpus = detect_gpus(os.environ)
        if d.gpus > gpus:
            allowed = f"0..{gpus}" if gpus else "0"
            raise BadParameter(f"descriptions[{index}].gpus: {d.gpus} is more than the {gpus} "
                               f"GPUs of this machine ({d.resource}); allowed: {allowed}, or "
                               "set oversubscribe=True", attribute="gpus", value=d.gpus)


def _check_pilot_staging(d: ComputePilotDescription, index: int) -> None:
    """Parse a pilot description's directives; BadParameter names the bad one."""
    from rp_executor.constants import TARBALL, TRANSFER
    from rp_executor.staging.directives import expand
    for name in ("input_staging", "output_staging"):
        for directive in expand(getattr(d, name), f"descriptions[{index}].{name}"):
            if directive.action not in (TRANSFER, TARBALL):
                raise BadParameter(f"{directive.field}.action: invalid action "
                                   f"{directive.action!r} on pilot level; allowed: {TRANSFER}",
                                   attribute=name, value=directive.action)
