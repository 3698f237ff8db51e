"""A local pilot fits this machine unless it says it oversubscribes; an oversubscribed
pilot still starts a bounded pool of function workers, runs its units and cancels."""

from __future__ import annotations

import os
import time

import psutil
import pytest

import rp_executor as rp
from rp_executor.agent.function_pool import pool_size
from rp_executor.agent.resource_manager import detect_gpus
from rp_executor.exceptions import BadParameter
from support import agent_process, assert_no_session_processes, sleep

CORES = len(os.sched_getaffinity(0))


def pid_after(seconds):
    time.sleep(seconds)
    return os.getpid()


def local(**kw) -> rp.ComputePilotDescription:
    return rp.ComputePilotDescription(resource="local.localhost", runtime=10, **kw)


@pytest.mark.timeout(60)
def test_a_local_pilot_larger_than_this_machine_is_refused_naming_what_is_allowed(pmgr):
    with pytest.raises(BadParameter) as err:
        pmgr.submit_pilots([local(cores=1), local(cores=CORES + 1)])
    assert str(err.value) == (
        f"descriptions[1].cores: {CORES + 1} is more than the {CORES} cores of this "
        f"machine (local.localhost); allowed: 1..{CORES}, or set oversubscribe=True")
    assert (err.value.attribute, err.value.value) == ("cores", CORES + 1)

    gpus = detect_gpus(os.environ)
    with pytest.raises(BadParameter) as err:
        pmgr.submit_pilots({"resource": "local.localhost", "runtime": 10, "cores": 1,
                            "gpus": gpus + 1})
    allowed = f"0..{gpus}" if gpus else "0"
    assert str(err.value) == (
        f"descriptions[0].gpus: {gpus + 1} is more than the {gpus} GPUs of this machine "
        f"(local.localhost); allowed: {allowed}, or set oversubscribe=True")
    assert (err.value.attribute, err.value.value) == ("gpus", gpus + 1)
    assert pmgr.list_pilots() == []      # nothing was launched


@pytest.mark.timeout(120)
def test_an_oversubscribed_pilot_runs_functions_on_a_bounded_pool_and_cancels(session, pmgr):
    cores = 1_000_000
    ceiling = pool_size(cores, CORES)
    assert ceiling < 300
    pilot = pmgr.submit_pilots(local(cores=cores, oversubscribe=True))
    assert pilot.wait(rp.PMGR_ACTIVE, timeout=60) == rp.PMGR_ACTIVE, (pilot.log, pilot.stderr)
    assert pilot.resource_details["cores"] == cores
    agent = agent_process(pilot)

    umgr = rp.UnitManager(session)
    umgr.add_pilots(pilot)
    units = umgr.submit_units(
        [rp.ComputeUnitDescription(function=pid_after, args=[0.2])
         for _ in range(2 * ceiling + 1)] + [sleep(300)])
    assert umgr.wait_units([u.uid for u in units[:-1]], timeout=60) == \
        [rp.DONE] * (len(units) - 1), [u.stderr for u in units if u.state != rp.DONE]
    workers = [p for p in agent.children() if "rp_executor.agent.worker" in p.cmdline()]
    assert 1 <= len(workers) <= ceiling, len(workers)
    assert {u.return_value for u in units[:-1]} <= {w.pid for w in workers}

    pmgr.cancel_pilots(pilot.uid)
    assert pilot.state == rp.CANCELED, (pilot.state, pilot.log)   # the agent answered
    assert units[-1].state in rp.FINAL
    assert_no_session_processes(session.uid, pilot.uid, within=10)
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)


@pytest.mark.timeout(60)
def test_the_sessions_function_workers_setting_bounds_the_pool(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadParameter, match="function_workers: got 0; allowed: an int >= 1"):
        rp.Session(cfg={"function_workers": 0})
    session = rp.Session(cfg={"function_workers": 1})
    try:
        pilot = rp.PilotManager(session).submit_pilots(local(cores=CORES))
        umgr = rp.UnitManager(session)
        umgr.add_pilots(pilot)
        units = umgr.submit_units([rp.ComputeUnitDescription(function=pid_after, args=[0.1])
                                   for _ in range(3)])
        assert umgr.wait_units(timeout=45) == [rp.DONE] * 3, [u.stderr for u in units]
        assert len({u.return_value for u in units}) == 1
    finally:
        session.close()
    assert_no_session_processes(session.uid)
