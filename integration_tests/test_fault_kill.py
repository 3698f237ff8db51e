"""Fault injection on real local pilots: SIGKILL of the agent, of the block (the
LocalProvider's wrapper shell), of a function worker and of a unit's process, before
units arrive, while they run, while they stage and while the session closes.

Whatever dies, every unit ends exactly once: one final state in the manager's state
callbacks, in the final-unit hook (``register_final_callback``) and in the journal,
and they agree with ``unit.state``. A lost pilot ends FAILED (CANCELED where the
client canceled it first); a killed worker or unit process fails only its own unit.
No process of the session is left after ``session.close()``.

Nothing here asserts a duration (the machine is shared). The time from each fault to
its units' final states is recorded in :data:`FAULT_TIMES`, written to
``build/fault_times.json`` and printed as a table at the end of the test session
(``pytest -s`` shows it).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

import rp_executor as rp
from rp_executor._core.journal import entries_of
from support import alive, assert_no_session_processes, describe, session_processes, wait_for

# test -> the fault, its units and their final states, seconds from the fault until
# the units it failed and until all units were final, the pilot's final state
FAULT_TIMES: dict[str, dict[str, Any]] = {}

# the soak's figures: units, wall time, throughput, kill -> all final, re-routed
SOAK: dict[str, Any] = {}

HEARTBEAT_TIMEOUT = 3.0
FINAL_TIMEOUT = 60        # seconds a test waits for its units to end after a fault
BIG = 256 * 1024 * 1024   # bytes of each file staged while a pilot dies


# functions the pilots' workers run -------------------------------------------------

def add(a, b):
    return a + b


def hold(pid_file, seconds=60):
    """Say which process runs this call (atomically, in ``pid_file``), then sleep."""
    tmp = f"{pid_file}.tmp"
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.rename(tmp, pid_file)
    time.sleep(seconds)
    return seconds


def nap(seconds):
    time.sleep(seconds)
    return seconds


def fn(function, *args):
    return rp.ComputeUnitDescription(function=function, args=list(args))


def exe(executable, *args, **kwargs):
    return rp.ComputeUnitDescription(executable=executable, arguments=list(args), **kwargs)


# bookkeeping -------------------------------------------------------------------------

class Tracker:
    """Counts the final states each unit of a manager reports, through the manager's
    state callbacks and through its final-unit hook, with the time they arrived."""

    def __init__(self, umgr: rp.UnitManager) -> None:
        self._lock = threading.Lock()
        self.state_cbs: dict[str, list[tuple[str, float]]] = collections.defaultdict(list)
        self.final_cbs: dict[str, list[tuple[str, float]]] = collections.defaultdict(list)
        self.fault_at: float | None = None
        self.fault_name = ""
        umgr.register_callback(self._on_state)
        umgr.register_final_callback(self._on_final)

    def _on_state(self, unit: Any, state: str) -> None:
        if state in rp.FINAL:
            with self._lock:
                self.state_cbs[unit.uid].append((state, time.monotonic()))

    def _on_final(self, units: list) -> None:
        now = time.monotonic()
        with self._lock:
            for u in units:
                self.final_cbs[u.uid].append((u.state, now))

    def kill(self, proc: psutil.Process, what: str) -> None:
        """SIGKILL ``proc`` (checked to be ours by the caller) and note the time; a
        process that ended meanwhile (while the session closes, the agent ends its
        units and workers too) is noted as such."""
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            what += " (had ended)"
        self.fault_at = time.monotonic()
        self.fault_name = what

    def check(self, session: rp.Session, units: list, name: str, phase: str,
              pilot: Any = None, umgr_callbacks: bool = True) -> dict[str, str]:
        """Assert that every unit has exactly one final state, the same in its
        ``state``, the final hook, the journal and (``umgr_callbacks``) the manager's
        state callbacks; record the times from the fault. Returns uid -> state.

        With ``umgr_callbacks=False`` (a fault during ``close()``, which removes the
        manager's state callbacks first, as RADICAL-Pilot does), a manager callback
        may be missing but never doubled or different.
        """
        assert self.fault_at is not None, "no fault was injected"
        states = {u.uid: u.state for u in units}
        assert all(s in rp.FINAL for s in states.values()), states
        if not session.closed:
            assert session._callbacks.flush(30), "callbacks still queued after 30 s"
        session.journal.flush()
        journal: dict[str, list[str]] = collections.defaultdict(list)
        for kind, uid, state, _ in session.journal.transitions():
            if kind == "unit" and state in rp.FINAL:
                journal[uid].append(state)
        with self._lock:
            for u in units:
                hook = [s for s, _ in self.final_cbs.get(u.uid, [])]
                cbs = [s for s, _ in self.state_cbs.get(u.uid, [])]
                assert journal[u.uid] == [u.state], (u.uid, journal[u.uid], u.state)
                assert hook == [u.state], (u.uid, hook, u.state)
                if umgr_callbacks:
                    assert cbs == [u.state], (u.uid, cbs, u.state)
                else:
                    assert cbs in ([], [u.state]), (u.uid, cbs, u.state)
            arrived = {u.uid: self.final_cbs[u.uid][0][1] - self.fault_at for u in units}
        failed = [arrived[u.uid] for u in units if u.state != rp.DONE]
        FAULT_TIMES[name] = {
            "fault": self.fault_name, "phase": phase, "units": len(units),
            "states": dict(collections.Counter(states.values())),
            "failed_final_s": round(max(failed), 3) if failed else None,
            "all_final_s": round(max(arrived.values()), 3),
            "pilot": pilot.state if pilot is not None else None}
        return states


@pytest.fixture(scope="session", autouse=True)
def fault_times_table():
    """At the end of the test session: ``build/fault_times.json`` and a table."""
    yield
    if not FAULT_TIMES and not SOAK:
        return
    out = Path(__file__).resolve().parents[1] / "build" / "fault_times.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"faults": FAULT_TIMES, "soak": SOAK}, indent=1,
                              sort_keys=True) + "\n")
    print(f"\n{out}")
    if FAULT_TIMES:
        print("seconds from the fault until its failed units / all units were final:")
        rows = [("test", "fault", "phase", "units", "final states", "failed s", "all s",
                 "pilot")]
        for name, r in sorted(FAULT_TIMES.items()):
            finals = " ".join(f"{k}={v}" for k, v in sorted(r["states"].items()))
            failed = "-" if r["failed_final_s"] is None else f"{r['failed_final_s']:.2f}"
            rows.append((name, r["fault"], r["phase"], str(r["units"]), finals, failed,
                         f"{r['all_final_s']:.2f}", str(r["pilot"])))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)))
    if SOAK:
        print("soak: " + ", ".join(f"{k}={v}" for k, v in SOAK.items()))


@pytest.fixture
def session(tmp_path, monkeypatch):
    """A session with a short heartbeat timeout, in a fresh directory; closed (if the
    test did not), then checked for leftover processes."""
    monkeypatch.chdir(tmp_path)
    s = rp.Session(cfg={"heartbeat_timeout": HEARTBEAT_TIMEOUT})
    try:
        yield s
    finally:
        s.close()
        # the big files of the staging tests: pytest keeps the last runs' tmp_path
        for big in list(tmp_path.rglob("big*.bin")):
            big.unlink()
    assert_no_session_processes(s.uid)


def start_pilots(session: rp.Session, n: int = 1, cores: int = 2) -> list:
    pilots = rp.PilotManager(session).submit_pilots([rp.ComputePilotDescription(
        resource="local.localhost", cores=cores, runtime=10) for _ in range(n)])
    for p in pilots:
        assert p.wait(rp.PMGR_ACTIVE, timeout=60) == rp.PMGR_ACTIVE, (p.state, p.log)
    return pilots


# the processes of a pilot ------------------------------------------------------------

def one_pilot(session: rp.Session) -> tuple[Any, rp.UnitManager, Tracker]:
    """An active 2-core pilot, a unit manager with it added, and its tracker."""
    (pilot,) = start_pilots(session)
    umgr = rp.UnitManager(session)
    tracker = Tracker(umgr)
    umgr.add_pilots(pilot)
    return pilot, umgr, tracker


def _env(proc: psutil.Process) -> dict:
    try:
        return proc.environ()
    except (psutil.Error, OSError):
        return {}


def agent_of(pilot: Any) -> psutil.Process:
    """The pilot's agent, checked by its command line."""
    proc = psutil.Process(pilot.resource_details["pid"])
    cmdline = " ".join(proc.cmdline())
    assert "rp_executor.agent" in cmdline and pilot.pilot_sandbox in cmdline, cmdline
    return proc


def block_of(pilot: Any) -> psutil.Process:
    """The LocalProvider's wrapper shell of the pilot's block (its job id), checked to
    run the pilot's submit script and to be the agent's parent."""
    proc = psutil.Process(int(pilot.job_id))
    cmdline = " ".join(proc.cmdline())
    assert pilot.pilot_sandbox in cmdline and proc.name() == "bash", cmdline
    assert agent_of(pilot).ppid() == proc.pid
    return proc


def workers_of(pilot: Any) -> list[psutil.Process]:
    """The pilot's function workers: the agent's children running the worker."""
    return [c for c in agent_of(pilot).children() if "rp_executor.agent.worker" in _cmdline(c)]


def _cmdline(proc: psutil.Process) -> str:
    """A process's command line; '' for one that ended meanwhile (a unit's process,
    a child of the agent too, may end between listing and reading it)."""
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def worker_running(pilot: Any, pid_file: Path) -> psutil.Process:
    """The worker that runs :func:`hold` (it wrote ``pid_file``), checked to be a
    worker of ``pilot``."""
    wait_for(pid_file.exists, 30, f"{pid_file} from the function unit")
    proc = psutil.Process(int(pid_file.read_text()))
    env = _env(proc)
    assert env.get("RP_PILOT_ID") == pilot.uid and \
        "rp_executor.agent.worker" in " ".join(proc.cmdline()), (env, proc.cmdline())
    return proc


def unit_process(session: rp.Session, unit: Any) -> psutil.Process:
    """The process leading ``unit``: it has ``RP_UNIT_ID`` and leads its process group
    (the agent starts each unit in a session of its own)."""
    def find():
        for proc in session_processes(session.uid):
            try:
                if _env(proc).get("RP_UNIT_ID") == unit.uid and \
                        proc.pid == os.getpgid(proc.pid):
                    return proc
            except ProcessLookupError:
                continue
        return None
    return wait_for(find, 30, f"the process of {unit.uid}")


def pilot_pids(pilot: Any) -> list[int]:
    """The block, the agent and the workers of a live pilot."""
    return [int(pilot.job_id), pilot.resource_details["pid"]] + \
        [w.pid for w in workers_of(pilot)]


def assert_gone(pids: list[int]) -> None:
    left = [pid for pid in pids if alive(pid)]
    assert not left, describe([psutil.Process(pid) for pid in left if psutil.pid_exists(pid)])


def kill_pilot(tracker: Tracker, pilot: Any, target: str) -> psutil.Process:
    """SIGKILL the pilot's agent or its block (the LocalProvider's wrapper shell);
    returns the process killed."""
    proc = agent_of(pilot) if target == "agent" else block_of(pilot)
    tracker.kill(proc, f"SIGKILL {target}")
    return proc


def wait_reaped(pilot: Any, block: psutil.Process) -> None:
    """The LocalProvider sees a block end when its wrapper's pid is gone: a zombie
    counts as running. Where nothing reaps orphans (a container whose init does not),
    a killed block stays 'running' and the agent serves on; skip there."""
    deadline = time.monotonic() + 15
    while block.is_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    if block.is_running():
        pytest.skip(f"the killed wrapper {block.pid} of {pilot.uid} is not reaped here (no "
                    "init that reaps orphans): the LocalProvider cannot see the block end")


def kill_while_closing(session: rp.Session, tracker: Tracker, proc: psutil.Process,
                       what: str) -> None:
    """SIGKILL ``proc`` as soon as ``session.close()``, started on another thread, has
    begun; fail unless that close returns."""
    closer = threading.Thread(target=session.close, name="closer")
    closer.start()
    deadline = time.monotonic() + 10
    while not session.closed:
        assert time.monotonic() < deadline, "close() did not begin"
        time.sleep(0.0005)
    tracker.kill(proc, what)
    closer.join(FINAL_TIMEOUT)
    assert not closer.is_alive(), "session.close() did not return"


def assert_lost_with(units: list, pilot: Any) -> None:
    for u in units:
        assert u.state == rp.FAILED, (u.uid, u.state, u.stderr)
        assert u.outcome.lost, (u.uid, u.outcome)
        assert pilot.uid in u.stderr, (u.uid, u.stderr)


def last_before_final(session: rp.Session, uid: str) -> str:
    session.journal.flush()
    names = [s for _, _, s, _ in session.journal.transitions(uid)]
    return names[-2]


# the agent and the block -------------------------------------------------------------

TARGETS = ["agent", "block"]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("target", TARGETS)
def test_pilot_killed_before_units_arrive_moves_them_to_the_other_pilot(session, target):
    victim, spare = start_pilots(session, 2)
    pids = pilot_pids(victim)
    umgr = rp.UnitManager(session)
    tracker = Tracker(umgr)
    umgr.add_pilots(victim)
    killed = kill_pilot(tracker, victim, target)
    units = umgr.submit_units([exe("/bin/sleep", "3"), fn(nap, 3), exe("/bin/echo", "x"),
                               fn(add, 1, 2)])
    umgr.add_pilots(spare)
    if target == "block":
        wait_reaped(victim, killed)
    assert victim.wait(timeout=FINAL_TIMEOUT) == rp.FAILED, (victim.state, victim.log)
    assert set(umgr.wait_units(timeout=FINAL_TIMEOUT)) <= set(rp.FINAL)
    states = tracker.check(session, units, f"{target}-before-start", "before units arrive",
                           victim)
    if target == "agent":
        # none reached a live agent: all moved to the spare pilot
        assert list(states.values()) == [rp.DONE] * 4, [(u.uid, u.stderr) for u in units]
        assert all(u.pilot == spare.uid for u in units)
    else:
        # the agent outlives its block until the client notices: what it started is lost
        assert_lost_with([u for u in units if u.state != rp.DONE], victim)
        assert all(u.pilot == spare.uid for u in units if u.state == rp.DONE)
    assert_no_session_processes(session.uid, victim.uid)
    assert_gone(pids)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("target", TARGETS)
def test_pilot_killed_while_units_run_fails_them_and_moves_the_queued(session, tmp_path,
                                                                      target):
    victim, spare = start_pilots(session, 2)
    umgr = rp.UnitManager(session)
    tracker = Tracker(umgr)
    umgr.add_pilots(victim)
    running = umgr.submit_units([exe("/bin/sleep", "60"), fn(hold, str(tmp_path / "pid"))])
    umgr.wait_units([u.uid for u in running], state=rp.EXECUTING, timeout=30)
    worker_running(victim, tmp_path / "pid")
    queued = umgr.submit_units([exe("/bin/echo", "queued"), fn(add, 2, 3)])
    umgr.wait_units([u.uid for u in queued], state=rp.AGENT_SCHEDULING_PENDING, timeout=30)
    umgr.add_pilots(spare)
    pids = pilot_pids(victim) + [unit_process(session, running[0]).pid]
    killed = kill_pilot(tracker, victim, target)
    if target == "block":
        wait_reaped(victim, killed)
    assert victim.wait(timeout=FINAL_TIMEOUT) == rp.FAILED, (victim.state, victim.log)
    umgr.wait_units(timeout=FINAL_TIMEOUT)
    tracker.check(session, running + queued, f"{target}-mid-run", "units executing", victim)
    assert_lost_with(running, victim)
    assert [u.state for u in queued] == [rp.DONE] * 2, [u.stderr for u in queued]
    assert [u.pilot for u in queued] == [spare.uid] * 2
    assert queued[1].return_value == 5
    assert_no_session_processes(session.uid, victim.uid)
    assert_gone(pids)


def _big_file(path: Path) -> Path:
    with open(path, "wb") as f:
        f.truncate(BIG)          # sparse: quick to make, a real copy to stage
    return path


@pytest.mark.timeout(150)
@pytest.mark.parametrize("target", TARGETS)
def test_pilot_killed_while_units_stage_in_fails_them(session, tmp_path, target):
    (victim,) = start_pilots(session)
    source = _big_file(tmp_path / "big.in.bin")
    umgr = rp.UnitManager(session)
    tracker = Tracker(umgr)
    umgr.add_pilots(victim)
    # the agent copies on one staging thread, one unit after the other
    units = umgr.submit_units([exe(
        "/bin/sleep", "60", input_staging=[{"source": f"file://{source}",
                                            "target": "unit:///big.bin",
                                            "action": rp.COPY}]) for _ in range(6)])
    wait_for(lambda: any(u.state == rp.AGENT_STAGING_INPUT for u in units), 30,
             "a unit in AGENT_STAGING_INPUT")
    pids = pilot_pids(victim)
    killed = kill_pilot(tracker, victim, target)
    if target == "block":
        wait_reaped(victim, killed)
    assert victim.wait(timeout=FINAL_TIMEOUT) == rp.FAILED, (victim.state, victim.log)
    umgr.wait_units(timeout=FINAL_TIMEOUT)
    tracker.check(session, units, f"{target}-staging-in", "agent input staging", victim)
    # no other pilot to move them to; those the agent started are lost with it
    assert_lost_with(units, victim)
    if target == "agent":
        # it died at once: what it was staging then stayed there
        before = [last_before_final(session, u.uid) for u in units]
        assert rp.AGENT_STAGING_INPUT in before, before
    assert_no_session_processes(session.uid, victim.uid)
    assert_gone(pids)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("target", TARGETS)
def test_pilot_killed_while_units_stage_out_fails_those_not_staged(session, target):
    victim, umgr, tracker = one_pilot(session)
    # each unit makes a big (sparse) file at once; the agent copies it out, one unit
    # after the other
    units = umgr.submit_units([exe(
        "/usr/bin/truncate", "-s", str(BIG), "big.out.bin",
        output_staging=[{"source": "big.out.bin", "target": f"pilot:///big.{i}.bin",
                         "action": rp.COPY}]) for i in range(6)])
    wait_for(lambda: any(u.state == rp.AGENT_STAGING_OUTPUT for u in units), 30,
             "a unit in AGENT_STAGING_OUTPUT")
    pids = pilot_pids(victim)
    killed = kill_pilot(tracker, victim, target)
    if target == "block":
        wait_reaped(victim, killed)
    assert victim.wait(timeout=FINAL_TIMEOUT) == rp.FAILED, (victim.state, victim.log)
    umgr.wait_units(timeout=FINAL_TIMEOUT)
    tracker.check(session, units, f"{target}-staging-out", "agent output staging", victim)
    done = [u for u in units if u.state == rp.DONE]
    lost = [u for u in units if u.state != rp.DONE]
    assert_lost_with(lost, victim)
    for u in done:
        assert os.path.getsize(os.path.join(
            victim.pilot_sandbox, "staging_area", f"big.{units.index(u)}.bin")) == BIG
    if target == "agent":
        # it died at once, with output still to stage (a killed block's agent goes
        # on until the client sees the block end, and may stage it all)
        before = [last_before_final(session, u.uid) for u in lost]
        assert rp.AGENT_STAGING_OUTPUT in before, before
    assert_no_session_processes(session.uid, victim.uid)
    assert_gone(pids)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("target", TARGETS)
def test_pilot_killed_while_the_session_closes(tmp_path, monkeypatch, target):
    monkeypatch.chdir(tmp_path)
    session = rp.Session(cfg={"heartbeat_timeout": HEARTBEAT_TIMEOUT})
    try:
        victim, umgr, tracker = one_pilot(session)
        units = umgr.submit_units([exe("/bin/sleep", "60"), fn(hold, str(tmp_path / "pid")),
                                   exe("/bin/echo", "queued"), fn(add, 2, 3)])
        umgr.wait_units([u.uid for u in units[:2]], state=rp.EXECUTING, timeout=30)
        worker_running(victim, tmp_path / "pid")
        pids = pilot_pids(victim) + [unit_process(session, units[0]).pid]
        proc = agent_of(victim) if target == "agent" else block_of(victim)
        kill_while_closing(session, tracker, proc, f"SIGKILL {target}")
    finally:
        session.close()   # returns at once if the closer did close it
    assert victim.state in (rp.FAILED, rp.CANCELED), (victim.state, victim.log)
    tracker.check(session, units, f"{target}-during-close", "session.close() runs", victim,
                  umgr_callbacks=False)
    # the running ones are lost, the queued ones have no other pilot
    assert [u.state for u in units] == [rp.FAILED] * 4, [u.stderr for u in units]
    assert_no_session_processes(session.uid)
    assert_gone(pids)


# a function worker ---------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_killed_idle_worker_is_replaced_before_units_arrive(session):
    pilot, umgr, tracker = one_pilot(session)
    victim = workers_of(pilot)[0]
    tracker.kill(victim, "SIGKILL idle worker")
    units = umgr.submit_units([fn(add, i, 1) for i in range(6)])
    umgr.wait_units(timeout=FINAL_TIMEOUT)
    tracker.check(session, units, "worker-before-start", "idle, before units arrive", pilot)
    assert [u.state for u in units] == [rp.DONE] * 6, [u.stderr for u in units]
    assert [u.return_value for u in units] == [i + 1 for i in range(6)]
    assert pilot.state == rp.PMGR_ACTIVE
    assert not alive(victim.pid)
    wait_for(lambda: len(workers_of(pilot)) == 2, 10, "two workers again")
    pids = pilot_pids(pilot)
    session.close()
    assert pilot.state == rp.CANCELED
    assert_gone(pids)


@pytest.mark.timeout(120)
def test_killed_busy_worker_fails_only_its_unit(session, tmp_path):
    pilot, umgr, tracker = one_pilot(session)
    victim_unit = umgr.submit_units(fn(hold, str(tmp_path / "pid")))
    others = umgr.submit_units([fn(nap, 1)] + [fn(add, i, 1) for i in range(6)])
    worker = worker_running(pilot, tmp_path / "pid")
    tracker.kill(worker, "SIGKILL busy worker")
    umgr.wait_units(timeout=FINAL_TIMEOUT)
    units = [victim_unit] + others
    tracker.check(session, units, "worker-mid-run", "its unit executing", pilot)
    assert victim_unit.state == rp.FAILED
    assert "died (SIGKILL)" in victim_unit.stderr, victim_unit.stderr
    assert not victim_unit.outcome.lost
    assert [u.state for u in others] == [rp.DONE] * 7, [u.stderr for u in others]
    assert [u.return_value for u in others] == [1] + [i + 1 for i in range(6)]
    again = umgr.submit_units([fn(add, 1, 1), fn(add, 2, 2)])
    umgr.wait_units([u.uid for u in again], timeout=FINAL_TIMEOUT)
    assert [u.return_value for u in again] == [2, 4]
    assert pilot.state == rp.PMGR_ACTIVE and not alive(worker.pid)
    pids = pilot_pids(pilot)
    session.close()
    assert pilot.state == rp.CANCELED
    assert_gone(pids)


@pytest.mark.timeout(120)
def test_killed_worker_while_the_session_closes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    session = rp.Session(cfg={"heartbeat_timeout": HEARTBEAT_TIMEOUT})
    try:
        pilot, umgr, tracker = one_pilot(session)
        units = umgr.submit_units([fn(hold, str(tmp_path / "pid")), fn(nap, 60),
                                   fn(add, 1, 2)])
        worker = worker_running(pilot, tmp_path / "pid")
        umgr.wait_units([u.uid for u in units[:2]], state=rp.EXECUTING, timeout=30)
        pids = pilot_pids(pilot)
        kill_while_closing(session, tracker, worker, "SIGKILL busy worker")
    finally:
        session.close()   # returns at once if the closer did close it
    assert pilot.state == rp.CANCELED, (pilot.state, pilot.log)
    tracker.check(session, units, "worker-during-close", "session.close() runs", pilot,
                  umgr_callbacks=False)
    assert [u.state for u in units] == [rp.FAILED] * 3, [u.stderr for u in units]
    assert_no_session_processes(session.uid)
    assert_gone(pids)


# a unit's process ----------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_killed_unit_process_fails_only_its_unit(session):
    pilot, umgr, tracker = one_pilot(session)
    victim = umgr.submit_units(exe("/bin/sleep", "60"))
    others = umgr.submit_units([exe("/bin/sleep", "1")] +
                               [exe("/bin/echo", str(i)) for i in range(4)] + [fn(add, 1, 1)])
    proc = unit_process(session, victim)
    tracker.kill(proc, "SIGKILL unit process")
    umgr.wait_units(timeout=FINAL_TIMEOUT)
    tracker.check(session, [victim] + others, "unit-mid-run", "executing", pilot)
    assert victim.state == rp.FAILED and victim.exit_code == -signal.SIGKILL, \
        (victim.state, victim.exit_code, victim.stderr)
    assert not victim.outcome.lost
    assert [u.state for u in others] == [rp.DONE] * 6, [u.stderr for u in others]
    assert [u.stdout for u in others[1:5]] == [f"{i}\n" for i in range(4)]
    assert pilot.state == rp.PMGR_ACTIVE
    session.close()
    assert pilot.state == rp.CANCELED


@pytest.mark.timeout(120)
def test_killed_unit_shell_in_pre_exec_fails_only_its_unit(session):
    pilot, umgr, tracker = one_pilot(session)
    victim = umgr.submit_units(exe("/bin/echo", "never", pre_exec=["sleep 60"]))
    others = umgr.submit_units([exe("/bin/echo", "after", pre_exec=["sleep 1"])] +
                               [exe("/bin/echo", str(i)) for i in range(3)])
    proc = unit_process(session, victim)          # the unit's bash, running pre_exec
    assert proc.name() == "bash", proc.cmdline()
    tracker.kill(proc, "SIGKILL unit shell (pre_exec)")
    umgr.wait_units(timeout=FINAL_TIMEOUT)
    tracker.check(session, [victim] + others, "unit-pre-exec", "in pre_exec", pilot)
    assert victim.state == rp.FAILED and victim.exit_code == -signal.SIGKILL
    assert "never" not in victim.stdout
    # the shell's command in pre_exec went with it
    wait_for(lambda: not [p for p in session_processes(session.uid)
                          if _env(p).get("RP_UNIT_ID") == victim.uid], 10,
             f"the processes of {victim.uid} to end")
    assert [u.state for u in others] == [rp.DONE] * 4, [u.stderr for u in others]
    assert others[0].stdout == "after\n"
    session.close()
    assert pilot.state == rp.CANCELED


@pytest.mark.timeout(120)
def test_killed_unit_process_while_the_session_closes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    session = rp.Session(cfg={"heartbeat_timeout": HEARTBEAT_TIMEOUT})
    try:
        pilot, umgr, tracker = one_pilot(session)
        units = umgr.submit_units([exe("/bin/sleep", "60"), exe("/bin/sleep", "60"),
                                   exe("/bin/echo", "queued")])
        umgr.wait_units([u.uid for u in units[:2]], state=rp.EXECUTING, timeout=30)
        proc = unit_process(session, units[0])
        pids = pilot_pids(pilot) + [proc.pid]
        kill_while_closing(session, tracker, proc, "SIGKILL unit process")
    finally:
        session.close()   # returns at once if the closer did close it
    assert pilot.state == rp.CANCELED, (pilot.state, pilot.log)
    tracker.check(session, units, "unit-during-close", "session.close() runs", pilot,
                  umgr_callbacks=False)
    assert [u.state for u in units] == [rp.FAILED] * 3, [u.stderr for u in units]
    assert_no_session_processes(session.uid)
    assert_gone(pids)


# the soak ------------------------------------------------------------------------------

SOAK_UNITS = int(os.environ.get("RP_SOAK_UNITS", "200000"))
_FINAL = frozenset(rp.FINAL)


def journal_finals(session: rp.Session, doubled: list) -> dict[str, str]:
    """uid -> final state, read from the journal one row at a time: the rows of
    :meth:`Journal.transitions` for this many units would take hundreds of MiB. A row
    is one batch, its entries grouped and compressed; :func:`entries_of` gives them
    back as ``[uid, 'STATE,STATE,...', stamps]`` (see :meth:`Journal.add_transitions`)."""
    finals: dict[str, str] = {}
    db = session.get_db()
    try:
        for kind, entries in db.execute("SELECT kind, entries FROM transitions ORDER BY seq"):
            if kind != "unit":
                continue
            for uid, names, _ in entries_of(entries):
                for state in names.split(","):
                    if state in _FINAL:
                        if uid in finals:
                            doubled.append(("journal", uid, finals[uid], state))
                        finals[uid] = state
    finally:
        db.close()
    return finals


@pytest.mark.timeout(900)
def test_soak_a_pilot_killed_halfway_through_200000_restartable_function_units(
        tmp_path, monkeypatch, caplog):
    # Two pilots share the units (round robin); one agent is SIGKILLed when half of
    # them are final (from the callback that counts them: the submission may still
    # run). The units it had not started move to the other pilot; those it was running
    # end FAILED (lost) and, being restartable, are resubmitted as new units
    # (RADICAL-Pilot's semantics, docs/resources.rst). Every input ends DONE exactly
    # once; every unit has one final state, the same in the state callbacks, the
    # final hook and the journal.
    import logging
    import resource

    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO, logger="rp_executor.unit_manager")   # re-routes
    n = SOAK_UNITS
    by_state_cb: dict[str, str] = {}
    by_hook: dict[str, str] = {}
    doubled: list = []
    kill: dict[str, Any] = {}

    # both run on the session's one callback thread
    def on_state(unit, state):
        if state in _FINAL:
            if unit.uid in by_state_cb:
                doubled.append(("state callback", unit.uid, by_state_cb[unit.uid], state))
            by_state_cb[unit.uid] = state

    def on_final(units):
        for u in units:
            if u.uid in by_hook:
                doubled.append(("final hook", u.uid, by_hook[u.uid], u.state))
            by_hook[u.uid] = u.state
        if len(by_hook) >= n // 2 and "at" not in kill:
            kill["agent"].send_signal(signal.SIGKILL)
            kill.update(at=time.monotonic(), final=len(by_hook))

    session = rp.Session(cfg={"heartbeat_timeout": HEARTBEAT_TIMEOUT})
    try:
        victim, other = start_pilots(session, 2)
        pids = pilot_pids(victim)
        kill["agent"] = agent_of(victim)
        umgr = rp.UnitManager(session)
        umgr.register_callback(on_state)
        umgr.register_final_callback(on_final)
        umgr.add_pilots([victim, other])
        start = time.monotonic()
        units = umgr.submit_units([rp.ComputeUnitDescription(
            function=abs, args=[-i], restartable=True) for i in range(n)])
        submitted = time.monotonic()
        assert victim.wait(timeout=600) == rp.FAILED, (victim.state, victim.log)
        assert set(umgr.wait_units([u.uid for u in units], timeout=600)) <= _FINAL
        lost = sum(u.state == rp.FAILED for u in units)
        # the copies of the lost ones are submitted right after the originals failed
        wait_for(lambda: len(umgr.list_units()) == n + lost, 30, f"{lost} copies")
        states = umgr.wait_units(timeout=600)
        assert set(states) <= _FINAL, collections.Counter(states)
        ended = time.monotonic()
        assert session._callbacks.flush(120)
    finally:
        session.close()
    assert other.state == rp.CANCELED, other.log
    assert "at" in kill and victim.log[-1].startswith("the block ended"), victim.log

    assert not doubled, doubled[:10]
    everything = umgr.get_units()
    journal = journal_finals(session, doubled)
    assert not doubled, doubled[:10]
    wrong = [(u.uid, u.state, by_state_cb.get(u.uid), by_hook.get(u.uid), journal.get(u.uid))
             for u in everything
             if not (u.state == by_state_cb.get(u.uid) == by_hook.get(u.uid)
                     == journal.get(u.uid))]
    assert not wrong, (len(wrong), wrong[:10])
    assert len(journal) == len(everything) == n + lost

    failed = [u for u in units if u.state != rp.DONE]
    assert_lost_with(failed, victim)
    assert all(u.pilot == victim.uid for u in failed)
    copies = everything[n:]
    assert not ({u.uid for u in units} & {c.uid for c in copies})
    assert [c.state for c in copies] == [rp.DONE] * len(copies), [c.stderr for c in copies]
    assert all(c.pilot == other.uid and c.description["restartable"] for c in copies)
    # each input ended DONE exactly once, with its result
    results = sorted(u.return_value for u in everything if u.state == rp.DONE)
    assert results == list(range(n))
    # the manager's own count of the units it moved ("... are re-routed")
    moved = sum(r.args[1] for r in caplog.records
                if r.name == "rp_executor.unit_manager" and "re-routed" in r.msg)
    assert moved > 0, "the killed pilot had no unit left to move"
    assert_no_session_processes(session.uid)
    assert_gone(pids)
    os.unlink(session.journal.path)   # ~150 MiB; pytest keeps the last runs' tmp_path

    SOAK.update({
        "units": n, "pilots": 2, "cores_per_pilot": 2,
        "final_at_kill": kill["final"],
        "submit_s": round(submitted - start, 1),
        "wall_s": round(ended - start, 1),
        "units_per_s": round(n / (ended - start)),
        "kill_to_all_final_s": round(ended - kill["at"], 1),
        "rerouted": moved + len(copies), "moved_unstarted": moved,
        "lost_and_resubmitted": len(copies),
        "client_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024})
