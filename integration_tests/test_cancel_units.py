"""Canceling running units kills their processes and ends them CANCELED, quickly."""

from __future__ import annotations

import time

import pytest

import rp_executor as rp
from support import session_processes, sleep, wait_for, describe


def unit_processes(session, units):
    uids = {u.uid for u in units}
    return [p for p in session_processes(session.uid)
            if _env(p).get("RP_UNIT_ID") in uids]


def _env(proc):
    try:
        return proc.environ()
    except Exception:  # gone meanwhile
        return {}


@pytest.mark.timeout(60)
def test_cancel_units_kills_running_units_within_two_seconds(session, umgr):
    running = umgr.submit_units([sleep(100), sleep(100)])
    queued = umgr.submit_units(sleep(100))  # no core left for it
    assert umgr.wait_units([u.uid for u in running], state=rp.EXECUTING, timeout=20) \
        == [rp.EXECUTING] * 2
    wait_for(lambda: len(unit_processes(session, running)) == 2, 10, "the sleep processes")

    start = time.monotonic()
    umgr.cancel_units()
    took = time.monotonic() - start

    assert took < 2.5, f"cancel_units took {took:.2f} s"
    assert [u.state for u in running + [queued]] == [rp.CANCELED] * 3
    left = unit_processes(session, running + [queued])
    assert not left, describe(left)


@pytest.mark.timeout(60)
def test_canceled_units_free_their_cores(umgr):
    umgr.submit_units([sleep(100), sleep(100)])
    umgr.wait_units(state=rp.EXECUTING, timeout=20)
    umgr.cancel_units()
    later = umgr.submit_units(rp.ComputeUnitDescription(executable="/bin/echo",
                                                        arguments=["next"]))
    assert later.wait(timeout=20) == rp.DONE
    assert later.stdout == "next\n"
