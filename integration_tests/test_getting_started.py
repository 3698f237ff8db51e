"""The getting-started script of the README, run for real."""

from __future__ import annotations

import os

import pytest

import rp_executor as rp
from support import assert_no_session_processes


@pytest.mark.timeout(120)
def test_getting_started_script_runs_128_echo_units(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with rp.Session() as session:
        pmgr = rp.PilotManager(session)
        pilot = pmgr.submit_pilots(rp.ComputePilotDescription(
            resource="local.localhost", cores=2, runtime=10))
        umgr = rp.UnitManager(session)
        umgr.add_pilots(pilot)
        units = umgr.submit_units([rp.ComputeUnitDescription(
            executable="/bin/echo", arguments=["hello", str(i)]) for i in range(128)])
        states = umgr.wait_units(timeout=100)

    assert states == [rp.DONE] * 128, [(u.uid, u.state, u.stderr) for u in units
                                       if u.state != rp.DONE]
    assert [u.exit_code for u in units] == [0] * 128
    assert [u.stdout for u in units] == [f"hello {i}\n" for i in range(128)]
    assert all(u.pilot == pilot.uid for u in units)
    assert os.path.isfile(tmp_path / session.uid / "session.sqlite")
    assert pilot.pilot_sandbox == str(tmp_path / "radical.pilot.sandbox" / session.uid / pilot.uid)
    assert pilot.state == rp.CANCELED  # closing the session cancels its pilots
    assert_no_session_processes(session.uid)
