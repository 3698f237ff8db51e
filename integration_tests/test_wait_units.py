"""wait_units: timeouts, target states by current, alias and legacy names, scalars."""

from __future__ import annotations

import time

import pytest

import rp_executor as rp
from support import echo, sleep


@pytest.mark.timeout(60)
def test_wait_units_returns_non_final_states_after_the_timeout(umgr):
    units = umgr.submit_units([sleep(30), sleep(30)])
    start = time.monotonic()
    states = umgr.wait_units(timeout=1.0)
    waited = time.monotonic() - start
    assert 0.9 <= waited < 2.0, waited
    assert len(states) == 2 and not any(s in rp.FINAL for s in states), states
    umgr.cancel_units()
    assert [u.state for u in units] == [rp.CANCELED] * 2


@pytest.mark.timeout(60)
@pytest.mark.parametrize("state", [rp.EXECUTING, "AGENT_EXECUTING", "Executing",
                                   [rp.DONE, rp.EXECUTING]])
def test_wait_units_for_executing_returns_while_units_run(umgr, state):
    units = umgr.submit_units([sleep(5), sleep(5)])
    start = time.monotonic()
    states = umgr.wait_units(state=state, timeout=20)
    waited = time.monotonic() - start
    assert states == [rp.EXECUTING] * 2, states
    assert waited < 4, waited  # before the units could have ended
    assert all(u.state == rp.EXECUTING for u in units)
    umgr.cancel_units()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("state", [rp.DONE, "Done", "DONE", None])
def test_wait_units_for_done_returns_final_states(umgr, state):
    units = umgr.submit_units([echo("a"), echo("b"), rp.ComputeUnitDescription(
        executable="/bin/false")])
    states = umgr.wait_units(state=state, timeout=30)
    assert states == [rp.DONE, rp.DONE, rp.FAILED]
    assert [u.state for u in units] == states


@pytest.mark.timeout(60)
def test_wait_units_gives_a_scalar_for_a_scalar(umgr):
    unit = umgr.submit_units(echo("one"))
    assert isinstance(unit, rp.ComputeUnit)
    assert umgr.wait_units(unit.uid, timeout=30) == rp.DONE
    assert umgr.wait_units([unit.uid], timeout=30) == [rp.DONE]
    assert umgr.wait_units(unit.uid, state="Executing", timeout=30) == rp.DONE
    assert unit.wait(timeout=30) == rp.DONE
