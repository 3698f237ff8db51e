"""Removing a pilot from a UnitManager re-routes the units it has not started."""

from __future__ import annotations

import pytest

import rp_executor as rp


def sleeper(seconds: float) -> rp.ComputeUnitDescription:
    return rp.ComputeUnitDescription(executable="/bin/sleep", arguments=[str(seconds)])


def one_core_pilot(pmgr):
    pilot = pmgr.submit_pilots(rp.ComputePilotDescription(
        resource="local.localhost", cores=1, runtime=10))
    assert pilot.wait(rp.PMGR_ACTIVE, timeout=60) == rp.PMGR_ACTIVE, pilot.log
    return pilot


@pytest.mark.timeout(120)
def test_units_queued_in_a_removed_pilots_agent_move_to_another_pilot(session, pmgr):
    first = one_core_pilot(pmgr)
    umgr = rp.UnitManager(session)
    umgr.add_pilots(first)
    units = umgr.submit_units([sleeper(1.5) for _ in range(4)])
    umgr.wait_units(units[0].uid, state=rp.EXECUTING, timeout=30)
    # the other three wait in the first pilot's agent: it has one core
    assert all(u.pilot == first.uid for u in units)

    second = one_core_pilot(pmgr)
    umgr.add_pilots(second)
    umgr.remove_pilots(first.uid)
    assert umgr.wait_units(timeout=60) == [rp.DONE] * 4

    assert units[0].pilot == first.uid          # it was running: it stayed
    assert [u.pilot for u in units[1:]] == [second.uid] * 3
    for u in units[1:]:
        assert u.unit_sandbox.startswith(second.pilot_sandbox)
    assert first.state == rp.PMGR_ACTIVE        # removing does not stop a pilot


@pytest.mark.timeout(120)
def test_units_left_running_on_a_removed_pilot_still_end_when_it_dies(session, pmgr):
    pilot = one_core_pilot(pmgr)
    umgr = rp.UnitManager(session)
    umgr.add_pilots(pilot)
    unit = umgr.submit_units(sleeper(100))
    umgr.wait_units(unit.uid, state=rp.EXECUTING, timeout=30)
    umgr.remove_pilots(pilot.uid)
    pilot.cancel()
    assert umgr.wait_units(unit.uid, timeout=30) == rp.FAILED
    assert pilot.uid in unit.stderr
