"""Every unit ends with an Outcome that says why, and the final callback hears of it
once, after the unit's state callbacks."""

from __future__ import annotations

import threading

import pytest

import rp_executor as rp
from rp_executor.outcome import Ending


@pytest.mark.timeout(120)
def test_the_outcome_says_why_each_unit_ended_and_the_final_callback_hears_once(
        session, pilot, umgr):
    seen: list = []
    order: list = []
    lock = threading.Lock()

    def on_state(unit, state):
        if state in rp.FINAL:
            with lock:
                order.append(("state", unit.uid))

    def on_final(units):
        with lock:
            seen.extend(u.uid for u in units)
            order.extend(("final", u.uid) for u in units)

    umgr.register_callback(on_state)
    umgr.register_final_callback(on_final)
    ok, bad, sleeper, missing = umgr.submit_units([
        rp.ComputeUnitDescription(executable="/bin/echo", arguments=["hi"]),
        rp.ComputeUnitDescription(executable="/bin/sh", arguments=["-c", "'exit 3'"]),
        rp.ComputeUnitDescription(executable="/bin/sleep", arguments=["60"]),
        rp.ComputeUnitDescription(executable="/no/such/program"),
    ])
    assert ok.wait(timeout=60) == rp.DONE and bad.wait(timeout=60) == rp.FAILED
    assert missing.wait(timeout=60) == rp.FAILED
    assert sleeper.wait(rp.EXECUTING, timeout=60) == rp.EXECUTING
    sleeper.cancel()
    session._callbacks.flush(10)

    assert (ok.outcome.ending, ok.outcome.exit_code, ok.stdout) == (Ending.DONE, 0, "hi\n")
    assert ok.outcome.nodes and ok.outcome.started <= ok.outcome.stopped
    assert (bad.outcome.ending, bad.exit_code) == (Ending.FAILED, 3)
    assert missing.outcome.ending is Ending.FAILED and missing.exit_code == 127
    assert "cannot execute '/no/such/program'" in missing.stderr
    assert sleeper.state == rp.CANCELED and sleeper.outcome.ending is Ending.CANCELED
    assert sorted(seen) == sorted(u.uid for u in (ok, bad, sleeper, missing))
    for uid in seen:   # each unit's final state callback before the final callback
        assert order.index(("state", uid)) < order.index(("final", uid))


@pytest.mark.timeout(120)
def test_units_of_an_ended_pilot_are_lost_with_it_not_failed_by_themselves(
        session, pmgr, pilot, umgr):
    running = umgr.submit_units(rp.ComputeUnitDescription(executable="/bin/sleep",
                                                          arguments=["60"]))
    assert running.wait(rp.EXECUTING, timeout=60) == rp.EXECUTING
    pmgr.cancel_pilots(pilot.uid)
    assert running.wait(timeout=60) == rp.FAILED
    assert running.outcome.ending is Ending.LOST and running.outcome.lost
    assert f"pilot {pilot.uid} ended" in running.stderr
    with pytest.raises(rp.BadParameter, match="not registered"):
        umgr.unregister_final_callback(print)


@pytest.mark.timeout(120)
def test_a_late_report_does_not_change_how_a_lost_unit_ended(session, pilot, umgr):
    # The client gives up on a pilot (as its watcher does when the block ended or the
    # heartbeats stopped) while the agent still has a report of the unit on its way:
    # the unit stays lost with the pilot; the report does not rewrite its outcome.
    import os
    import signal
    import time

    from support import session_processes, wait_for

    unit = umgr.submit_units(rp.ComputeUnitDescription(executable="/bin/sleep",
                                                       arguments=["60"]))
    assert unit.wait(rp.EXECUTING, timeout=60) == rp.EXECUTING

    def unit_process():
        for proc in session_processes(session.uid, pilot.uid):
            try:
                if proc.environ().get("RP_UNIT_ID") == unit.uid:
                    return proc
            except Exception:   # gone meanwhile
                continue
        return None

    proc = wait_for(unit_process, 30, "the unit's process")
    pilot.pmgr._set_states([(pilot, [(rp.FAILED, time.time())])],
                           cause="given up on by the test")
    assert unit.state == rp.FAILED and unit.outcome.ending is Ending.LOST
    os.kill(proc.pid, signal.SIGKILL)     # the agent, alive, reports the unit's end
    wait_for(lambda: not proc.is_running(), 10, "the unit's process to end")
    time.sleep(1.0)                       # the agent's report arrives meanwhile
    assert unit.state == rp.FAILED
    assert unit.outcome.ending is Ending.LOST, unit.outcome
    assert unit.exit_code is None and pilot.uid in unit.stderr, unit.stderr
