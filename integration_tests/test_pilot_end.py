"""A pilot ends by runtime, by a killed agent or with the session; its units end too."""

from __future__ import annotations

import signal
import time

import pytest

import rp_executor as rp
from support import agent_process, alive, assert_no_session_processes, sleep, wait_for


@pytest.mark.timeout(150)
def test_pilot_ends_done_at_its_runtime_and_fails_unfinished_units(session, pmgr):
    pilot = pmgr.submit_pilots(rp.ComputePilotDescription(
        resource="local.localhost", cores=2, runtime=1))
    umgr = rp.UnitManager(session)
    umgr.add_pilots(pilot)
    units = umgr.submit_units([sleep(300), sleep(300), sleep(300)])  # the third waits
    assert pilot.wait(timeout=100) == rp.DONE, (pilot.state, pilot.log)
    assert umgr.wait_units(timeout=10) == [rp.FAILED] * 3
    for u in units:
        assert "runtime" in u.stderr, u.stderr
        assert pilot.uid in u.stderr, u.stderr
    ran = units[:2]
    assert all(u.exit_code is not None for u in ran), [u.exit_code for u in ran]
    assert_no_session_processes(session.uid, pilot.uid)


@pytest.mark.timeout(90)
def test_killed_agent_fails_its_pilot_and_units(session, pilot, umgr):
    units = umgr.submit_units([sleep(100), sleep(100), sleep(100)])  # the third waits
    umgr.wait_units([u.uid for u in units[:2]], state=rp.EXECUTING, timeout=20)
    agent = agent_process(pilot)

    start = time.monotonic()
    agent.send_signal(signal.SIGKILL)
    assert pilot.wait(timeout=30) == rp.FAILED, (pilot.state, pilot.log)
    assert umgr.wait_units(timeout=30 - (time.monotonic() - start)) == [rp.FAILED] * 3
    assert time.monotonic() - start < 30
    for u in units:
        assert pilot.uid in u.stderr, u.stderr
    assert_no_session_processes(session.uid, pilot.uid, within=5)
    assert not alive(int(pilot.job_id))


@pytest.mark.timeout(90)
def test_closing_the_session_leaves_no_process(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    session = rp.Session()
    try:
        pmgr = rp.PilotManager(session)
        pilots = pmgr.submit_pilots([rp.ComputePilotDescription(
            resource="local.localhost", cores=2, runtime=10) for _ in range(2)])
        umgr = rp.UnitManager(session)
        umgr.add_pilots(pilots)
        units = umgr.submit_units([sleep(100) for _ in range(6)])  # 4 run, 2 wait
        wait_for(lambda: sum(u.state == rp.EXECUTING for u in units) == 4, 20,
                 "four running units")
        agents = [agent_process(p) for p in pilots]
    finally:
        session.close()
    assert_no_session_processes(session.uid, within=1)
    assert not any(alive(a.pid) for a in agents)
    assert all(u.state in rp.FINAL for u in units), [u.state for u in units]
    assert [p.state for p in pilots] == [rp.CANCELED] * 2


@pytest.mark.timeout(120)
def test_a_stopped_agent_and_its_workers_do_not_outlive_the_session(tmp_path, monkeypatch):
    import signal

    import psutil

    from support import alive, assert_no_session_processes
    monkeypatch.chdir(tmp_path)
    session = rp.Session(cfg={"heartbeat_timeout": 3.0})
    try:
        pilot = rp.PilotManager(session).submit_pilots(rp.ComputePilotDescription(
            resource="local.localhost", cores=2, runtime=10))
        assert pilot.wait(rp.PMGR_ACTIVE, timeout=60) == rp.PMGR_ACTIVE, pilot.log
        agent = psutil.Process(pilot.resource_details["pid"])
        workers = agent.children(recursive=True)
        assert workers, "the agent has its warm workers"
        agent.send_signal(signal.SIGSTOP)          # hung: no heartbeats, no Bye
        assert pilot.wait(timeout=60) == rp.FAILED
    finally:
        session.close()
    assert not alive(agent.pid) and not any(alive(w.pid) for w in workers)
    assert_no_session_processes(session.uid)


@pytest.mark.timeout(90)
def test_closing_with_restartable_units_ends_every_unit_of_every_manager(tmp_path,
                                                                         monkeypatch):
    # the pilots end while the session closes: a closed manager does not resubmit its
    # restartable units, and the other manager still hears that the pilots ended
    monkeypatch.chdir(tmp_path)
    session = rp.Session()
    try:
        pmgr = rp.PilotManager(session)
        pilots = pmgr.submit_pilots([rp.ComputePilotDescription(
            resource="local.localhost", cores=1, runtime=10) for _ in range(2)])
        first, second = rp.UnitManager(session), rp.UnitManager(session)
        first.add_pilots(pilots)
        second.add_pilots(pilots)
        restartable = first.submit_units([rp.ComputeUnitDescription(
            executable="/bin/sleep", arguments=["100"], restartable=True) for _ in range(2)])
        queued = second.submit_units([sleep(100), sleep(100)])   # one waits on each pilot
        first.wait_units(state=rp.EXECUTING, timeout=30)
        second.wait_units(state=rp.AGENT_SCHEDULING_PENDING, timeout=30)
    finally:
        session.close()
    assert [p.state for p in pilots] == [rp.CANCELED] * 2
    assert [u.state for u in restartable + queued] == [rp.FAILED] * 4
    assert len(first.list_units()) == 2      # no copies
    assert_no_session_processes(session.uid)


@pytest.mark.timeout(90)
def test_a_stalled_client_does_not_take_a_live_agent_for_dead(tmp_path, monkeypatch):
    # While the client's I/O thread cannot handle what arrives (here it waits for the
    # manager's lock; a full garbage collection of a large session or a starved CPU
    # does the same), the agent's frames wait in the socket: its silence is not known
    # beyond the last time the client had read everything.
    monkeypatch.chdir(tmp_path)
    timeout = 2.0
    session = rp.Session(cfg={"heartbeat_timeout": timeout})
    try:
        pilot = rp.PilotManager(session).submit_pilots(rp.ComputePilotDescription(
            resource="local.localhost", cores=1, runtime=10))
        assert pilot.wait(rp.PMGR_ACTIVE, timeout=60) == rp.PMGR_ACTIVE, pilot.log
        umgr = rp.UnitManager(session)
        umgr.add_pilots(pilot)
        unit = umgr.submit_units(sleep(0.1))
        with umgr._lock:      # the I/O thread waits here with the unit's first states
            time.sleep(3 * timeout)
        assert unit.wait(timeout=30) == rp.DONE, unit.stderr
        assert pilot.state == rp.PMGR_ACTIVE, pilot.log
    finally:
        session.close()
    assert_no_session_processes(session.uid)


@pytest.mark.timeout(90)
def test_what_a_killed_agent_reported_before_it_died_counts(session, pilot, umgr):
    # The unit ends and is reported, then the agent dies; the client reads the report
    # only after it saw the block end (its I/O thread was held up, as a busy client's
    # is): the unit is DONE, not lost with the pilot.
    unit = umgr.submit_units(sleep(3))
    assert unit.wait(rp.EXECUTING, timeout=30) == rp.EXECUTING
    agent = agent_process(pilot)
    with pilot._io_lock:      # the I/O thread stops at its next heartbeat to the agent
        time.sleep(3.5)       # the unit ends; its report waits in the socket
        agent.send_signal(signal.SIGKILL)
        wait_for(lambda: not alive(int(pilot.job_id)), 10, "the block to end")
        time.sleep(2.5)       # the watcher sees the block gone
    assert pilot.wait(timeout=30) == rp.FAILED, pilot.log
    assert unit.wait(timeout=30) == rp.DONE, unit.stderr
    assert unit.exit_code == 0
