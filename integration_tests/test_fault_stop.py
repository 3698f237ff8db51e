"""A hung agent (SIGSTOP) does not leave its pilot's processes behind.

Whatever declares the pilot over — its silence (heartbeat timeout), ``cancel_pilots``
or ``session.close()`` — the agent, its function workers, the units (each in its own
process group, one of them stopped too, one ignoring SIGTERM) and the block's shell
end, stopped ones included. The checks scan every process on the machine by
environment and command line, as the sweep does.
"""

from __future__ import annotations

import signal
import time

import psutil
import pytest

import rp_executor as rp
from support import agent_process, alive, assert_no_session_processes, describe, \
    session_processes, sleep, wait_for

HEARTBEAT = {"heartbeat_timeout": 3.0, "heartbeat_interval": 0.5, "watch_interval": 0.5}


def nap(seconds):
    time.sleep(seconds)
    return seconds


def stubborn(seconds: int) -> rp.ComputeUnitDescription:
    """A unit whose shell and ``sleep`` ignore SIGTERM (only SIGKILL ends them), and
    whose second ``sleep`` runs without the unit's environment (``env -i``): only its
    place in the process tree tells that it belongs to the pilot."""
    return rp.ComputeUnitDescription(
        executable="/bin/sh",
        arguments=["-c", f"trap '' TERM; env -i /bin/sleep {seconds + 1} & sleep {seconds}"])


@pytest.fixture
def stop_session(tmp_path, monkeypatch):
    """A session that declares a silent agent dead after 3 s; closed, and checked."""
    monkeypatch.chdir(tmp_path)
    s = rp.Session(cfg=HEARTBEAT)
    try:
        yield s
    finally:
        s.close()
    assert_no_session_processes(s.uid)


def start_and_stop(session):
    """A 2-core local pilot running a stubborn executable unit and a function unit,
    with more of both waiting; then the running executable and the agent get SIGSTOP.
    Returns the pilot manager, the pilot, the unit manager, the units and the pilot's
    process tree (the block's shell, the agent and its descendants)."""
    pmgr = rp.PilotManager(session)
    pilot = pmgr.submit_pilots(rp.ComputePilotDescription(
        resource="local.localhost", cores=2, runtime=10))
    umgr = rp.UnitManager(session)
    umgr.add_pilots(pilot)
    units = umgr.submit_units([
        stubborn(300), rp.ComputeUnitDescription(function=nap, args=[300]),
        sleep(300), rp.ComputeUnitDescription(function=nap, args=[300])])
    wait_for(lambda: [u.state for u in units[:2]] == [rp.EXECUTING] * 2, 60,
             "the first two units executing")
    agent = agent_process(pilot)
    unit_procs = wait_for(lambda: [p for p in session_processes(session.uid, pilot.uid)
                                   if _unit_of(p) == units[0].uid and p.name() == "sh"], 10,
                          "the process of the first unit")
    wait_for(lambda: len(unit_procs[0].children()) == 2, 10, "the unit's two sleeps")
    stopped = [agent] + unit_procs
    for proc in stopped:
        proc.send_signal(signal.SIGSTOP)
    wait_for(lambda: all(p.status() == psutil.STATUS_STOPPED for p in stopped), 10,
             "the agent and the unit stopped")
    tree = [psutil.Process(int(pilot.job_id)), agent] + agent.children(recursive=True)
    assert len(tree) >= 7, describe(tree)   # shell, agent, 2 workers, sh, 2 sleeps
    return pmgr, pilot, umgr, units, tree


def _unit_of(proc: psutil.Process) -> str | None:
    try:
        return proc.environ().get("RP_UNIT_ID")
    except psutil.Error:
        return None


@pytest.mark.timeout(120)
def test_a_stopped_agent_fails_its_pilot_and_leaves_no_process(stop_session):
    session = stop_session
    _, pilot, umgr, units, tree = start_and_stop(session)
    assert session_processes(session.uid, pilot.uid)
    assert pilot.wait(timeout=60) == rp.FAILED, (pilot.state, pilot.log)
    assert "heartbeat" in pilot.log[-1], pilot.log
    states = umgr.wait_units(timeout=30)
    assert all(s in rp.FINAL for s in states), states
    assert_no_session_processes(session.uid, pilot.uid, within=30)
    assert not any(alive(p.pid) for p in tree), describe(tree)


@pytest.mark.timeout(120)
def test_closing_the_session_ends_a_stopped_agent_and_everything_of_it(tmp_path,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    session = rp.Session(cfg=HEARTBEAT)
    try:
        _, pilot, _, units, tree = start_and_stop(session)
    finally:
        session.close()        # at once: the pilot is not known to be hung yet
    assert_no_session_processes(session.uid, within=5)
    assert not any(alive(p.pid) for p in tree), describe(tree)
    assert pilot.state in rp.FINAL and all(u.state in rp.FINAL for u in units), \
        (pilot.state, [u.state for u in units])


@pytest.mark.timeout(120)
def test_canceling_a_pilot_whose_agent_is_stopped_ends_everything(stop_session):
    session = stop_session
    pmgr, pilot, umgr, units, tree = start_and_stop(session)
    pmgr.cancel_pilots(pilot.uid)
    assert pilot.state in rp.FINAL, (pilot.state, pilot.log)
    states = umgr.wait_units(timeout=30)
    assert all(s in rp.FINAL for s in states), states
    assert_no_session_processes(session.uid, pilot.uid, within=5)
    assert not any(alive(p.pid) for p in tree), describe(tree)
