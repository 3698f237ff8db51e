"""A stream of short executables on a local pilot: the agent queues them behind the
unit that runs on each core, and every unit still ends exactly once, as it ran."""

from __future__ import annotations

import collections
import threading

import pytest

import rp_executor as rp
from support import wait_for


def finals_counter(umgr):
    """A callback that counts the final states each unit reaches, and the counts."""
    counts: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def count(unit, state):
        if state in rp.FINAL:
            with lock:
                counts[unit.uid] += 1

    umgr.register_callback(count)
    return counts


@pytest.mark.timeout(120)
def test_a_stream_of_short_executables_all_end_done_with_their_own_output(umgr):
    counts = finals_counter(umgr)
    units = umgr.submit_units([rp.ComputeUnitDescription(executable="/bin/echo",
                                                         arguments=[str(i)])
                               for i in range(600)])
    assert set(umgr.wait_units(timeout=90)) == {rp.DONE}
    assert [u.stdout for u in units] == [f"{i}\n" for i in range(600)]
    assert all(u.exit_code == 0 for u in units)
    wait_for(lambda: len(counts) == 600, 10, "a final callback for every unit")
    assert set(counts.values()) == {1}
    for u in units:
        names = [s for s, _ in u.state_history]
        assert names.index(rp.AGENT_EXECUTING_PENDING) < names.index(rp.AGENT_EXECUTING) \
            < names.index(rp.DONE)
        stamps = [t for _, t in u.state_history]
        assert stamps == sorted(stamps), u.state_history


@pytest.mark.timeout(120)
def test_canceling_a_stream_ends_each_unit_once_and_frees_every_core(umgr):
    counts = finals_counter(umgr)
    units = umgr.submit_units([rp.ComputeUnitDescription(executable="/bin/true")
                               for _ in range(3000)])
    wait_for(lambda: sum(u.state == rp.DONE for u in units) >= 200, 60, "200 units DONE")
    umgr.cancel_units()
    ended = umgr.wait_units(timeout=60)
    assert set(ended) <= {rp.DONE, rp.CANCELED}, collections.Counter(ended)
    assert rp.CANCELED in ended
    assert all(u.exit_code == 0 for u in units if u.state == rp.DONE)
    wait_for(lambda: len(counts) == 3000, 10, "a final callback for every unit")
    assert set(counts.values()) == {1}
    # no core was lost or given twice: two units that need both cores at once run
    later = umgr.submit_units([rp.ComputeUnitDescription(
        executable="/bin/sh", arguments=["-c", "'echo both'"], cpu_processes=2),
        rp.ComputeUnitDescription(executable="/bin/echo", arguments=["next"])])
    assert umgr.wait_units([u.uid for u in later], timeout=30) == [rp.DONE, rp.DONE]
    assert [u.stdout for u in later] == ["both\n", "next\n"]


@pytest.mark.timeout(120)
def test_units_queued_behind_a_long_unit_run_on_the_core_that_frees(umgr):
    # short units queue behind whatever runs on each core, the long one too; once
    # the others are done, a free core takes those back instead of waiting 60 s
    counts = finals_counter(umgr)

    def echo(i):
        return rp.ComputeUnitDescription(executable="/bin/echo", arguments=[str(i)])

    short = umgr.submit_units([echo(i) for i in range(300)])
    long_ = umgr.submit_units(rp.ComputeUnitDescription(executable="/bin/sleep",
                                                        arguments=["60"]))
    short += umgr.submit_units([echo(i) for i in range(300, 600)])
    assert set(umgr.wait_units([u.uid for u in short], timeout=40)) == {rp.DONE}
    assert long_.state == rp.AGENT_EXECUTING
    assert [u.stdout for u in short] == [f"{i}\n" for i in range(600)]
    for u in short:   # a unit given back and placed anew takes each state once
        names = [s for s, _ in u.state_history]
        assert len(names) == len(set(names)), u.state_history
    umgr.cancel_units(long_.uid)
    assert long_.wait(timeout=20) == rp.CANCELED
    wait_for(lambda: len(counts) == 601, 10, "a final callback for every unit")
    assert set(counts.values()) == {1}
