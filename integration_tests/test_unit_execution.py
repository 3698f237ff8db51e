"""Units run where and how their description says, on the cores they asked for."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

import rp_executor as rp


@pytest.mark.timeout(60)
def test_units_run_with_their_environment_and_pre_post_exec_in_their_sandbox(
        session, pilot, umgr, tmp_path):
    plain, scripted = umgr.submit_units([
        rp.ComputeUnitDescription(executable="/usr/bin/env",
                                  environment={"GREETING": "hello world", "N": "3"}),
        rp.ComputeUnitDescription(
            executable="/bin/sh",
            arguments=["-c", shlex.quote('echo "$FROM_PRE $(pwd)"')],
            pre_exec=["export FROM_PRE=pre-was-here", "echo pre > pre.txt"],
            post_exec=["echo post > post.txt"]),
    ])
    assert umgr.wait_units(timeout=30) == [rp.DONE, rp.DONE], [plain.stderr, scripted.stderr]

    expected_sandbox = tmp_path / "radical.pilot.sandbox" / session.uid / pilot.uid
    for u in (plain, scripted):
        assert u.unit_sandbox == str(expected_sandbox / u.uid)

    # env prints more than the 1024 characters unit.stdout keeps: read the whole file
    out = (Path(plain.unit_sandbox) / "STDOUT").read_text()
    assert plain.stdout.endswith(out[-500:])
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert env["RP_UNIT_ID"] == plain.uid
    assert env["RP_PILOT_ID"] == pilot.uid
    assert env["RP_SESSION_ID"] == session.uid
    assert env["GREETING"] == "hello world"
    assert env["N"] == "3"

    sandbox = Path(scripted.unit_sandbox)
    assert scripted.stdout == f"pre-was-here {sandbox}\n"
    assert (sandbox / "pre.txt").read_text() == "pre\n"
    assert (sandbox / "post.txt").read_text() == "post\n"


def _timed(threads: int, seconds: float) -> rp.ComputeUnitDescription:
    body = f"date +%s.%N > start; sleep {seconds}; date +%s.%N > stop; echo $OMP_NUM_THREADS"
    return rp.ComputeUnitDescription(executable="/bin/sh", arguments=["-c", shlex.quote(body)],
                                     cpu_threads=threads)


def _intervals(units) -> list[tuple[float, float]]:
    out = []
    for u in units:
        sandbox = Path(u.unit_sandbox)
        out.append((float((sandbox / "start").read_text()),
                    float((sandbox / "stop").read_text())))
    return sorted(out)


@pytest.mark.timeout(60)
def test_units_with_two_threads_on_a_two_core_pilot_run_one_at_a_time(umgr):
    units = umgr.submit_units([_timed(2, 0.4) for _ in range(3)])
    assert umgr.wait_units(timeout=30) == [rp.DONE] * 3, [u.stderr for u in units]
    assert [u.stdout for u in units] == ["2\n"] * 3
    intervals = _intervals(units)
    for (_, stop), (start, _) in zip(intervals, intervals[1:]):
        assert start >= stop, intervals


@pytest.mark.timeout(60)
def test_units_with_one_thread_on_a_two_core_pilot_run_two_at_a_time(umgr):
    units = umgr.submit_units([_timed(1, 1.0) for _ in range(2)])
    assert umgr.wait_units(timeout=30) == [rp.DONE] * 2, [u.stderr for u in units]
    (start1, stop1), (start2, stop2) = _intervals(units)
    assert start2 < stop1, "two one-core units on two cores should overlap"
