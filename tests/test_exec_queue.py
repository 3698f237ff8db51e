"""Executables queued behind the unit that runs on their core: the launcher starts
each the moment the one before it ends, and the executor follows the same line."""

from __future__ import annotations

import os
import signal
import time

import pytest

from rp_executor.agent.executing import ForkExecutor
from rp_executor.agent.queueing import LONG_UNIT, moving_mean, queue_depth
from rp_executor.agent.scheduler import NodeSlot, Slots

from test_agent_executing import CPU, launcher_of, reap_all, run_one, unit, unit_pid

CORE1 = Slots([NodeSlot("localhost", (1,), ())])


@pytest.fixture
def ex(tmp_path):
    executor = ForkExecutor(tmp_path / "pilot", launchers=2)
    yield executor
    executor.kill_all()


def test_queued_units_run_one_after_another_each_taking_over_the_slots(ex):
    ex.launch(unit("unit.000000", "/bin/sleep", "0.3"), CPU)
    queued = [unit("unit.000001", "/bin/echo", "one"), unit("unit.000002", "/bin/echo", "two")]
    assert ex.queue_room(depth=2) == 2
    assert ex.queue_many(queued, depth=2) == 2
    assert ex.running == 3 and ex.queue_room(depth=2) == 0
    res = reap_all(ex, 3)
    first, one, two = (res[f"unit.00000{i}"] for i in range(3))
    assert (first.successor, one.successor, two.successor) == ("unit.000001", "unit.000002",
                                                               None)
    assert first.slots == one.slots == two.slots == CPU
    assert (one.stdout, two.stdout, one.exit_code, two.exit_code) == ("one\n", "two\n", 0, 0)
    # each started after the one before it ended, on the same core
    assert first.stopped <= one.started <= one.stopped <= two.started


def test_queued_units_are_spread_over_the_cores_that_run_units(ex):
    ex.launch(unit("unit.000010", "/bin/sleep", "0.3"), CPU)
    ex.launch(unit("unit.000011", "/bin/sleep", "0.3"), CORE1)
    assert ex.queue_many([unit(f"unit.00002{i}", "/bin/true") for i in range(5)],
                         depth=2) == 4   # two per core: the fifth waits
    res = reap_all(ex, 6)
    followers = {res["unit.000010"].successor, res["unit.000011"].successor}
    assert followers == {"unit.000020", "unit.000021"}
    slots = [res[f"unit.00002{i}"].slots for i in range(4)]
    assert slots.count(CPU) == slots.count(CORE1) == 2
    assert "unit.000024" not in res and ex.running == 0
    assert ex.queue_many([unit("unit.000024", "/bin/true")], depth=2) == 0   # none runs


def test_nothing_is_queued_before_the_units_are_known_to_be_short(ex):
    ex.launch(unit("unit.000030", "/bin/sleep", "100"), CPU)
    assert ex.mean_duration is None and ex.depth == 0
    assert ex.queue_room() == 0
    assert ex.queue_many([unit("unit.000031", "/bin/true")]) == 0
    assert ex.running == 1


def test_the_mean_duration_follows_the_units_that_ran_on_one_core(ex):
    mean = None
    for i in range(4):
        res = run_one(ex, unit(f"unit.00004{i}", "/bin/true"))
        mean = moving_mean(mean, res.stopped - res.started)
    assert ex.mean_duration == pytest.approx(mean)
    assert ex.depth == queue_depth(mean)


def test_units_of_more_than_one_core_or_with_gpus_take_no_queue(ex):
    ex.launch(unit("unit.000050", "/bin/sleep", "0.3"), Slots([NodeSlot("localhost", (0, 1), ())]))
    ex.launch(unit("unit.000051", "/bin/sleep", "0.3"), Slots([NodeSlot("localhost", (2,), (0,))]))
    assert ex.queue_room(depth=4) == 0
    assert ex.queue_many([unit("unit.000052", "/bin/true")], depth=4) == 0
    res = reap_all(ex, 2)
    assert res["unit.000050"].successor is None and res["unit.000051"].successor is None


def test_a_queued_unit_canceled_ends_canceled_without_running(ex, tmp_path):
    ex.launch(unit("unit.000060", "/bin/sleep", "0.5"), CPU)
    assert ex.queue_many([unit("unit.000061", "/bin/echo", "never"),
                          unit("unit.000062", "/bin/echo", "runs")], depth=2) == 2
    assert ex.cancel("unit.000061") is True
    res = reap_all(ex, 3)
    canceled = res["unit.000061"]
    assert (canceled.canceled, canceled.exit_code, canceled.slots) == (True, -signal.SIGTERM,
                                                                       None)
    assert not (tmp_path / "pilot" / "unit.000061").exists()   # it never started
    assert res["unit.000060"].successor == "unit.000062"
    assert (res["unit.000062"].stdout, res["unit.000062"].slots) == ("runs\n", CPU)


def test_a_queued_unit_that_cannot_start_fails_and_the_next_one_runs(ex):
    ex.launch(unit("unit.000070", "/bin/sleep", "0.3"), CPU)
    assert ex.queue_many([unit("unit.000071", "/no/such/program"),
                          unit("unit.000072", "/bin/echo", "after")], depth=2) == 2
    res = reap_all(ex, 3)
    bad = res["unit.000071"]
    assert bad.exit_code == 127 and "cannot execute '/no/such/program'" in bad.stderr
    assert (res["unit.000070"].successor, bad.successor) == ("unit.000071", "unit.000072")
    assert (res["unit.000072"].stdout, res["unit.000072"].slots) == ("after\n", CPU)


def test_a_queued_unit_with_an_invalid_description_fails_at_once(ex):
    ex.launch(unit("unit.000075", "/bin/sleep", "0.3"), CPU)
    assert ex.queue_many([{"uid": "unit.000076", "description": {"executable": ""}}],
                         depth=1) == 1
    res = reap_all(ex, 2)
    assert res["unit.000076"].exit_code == 1 and res["unit.000076"].slots is None
    assert "invalid unit description" in res["unit.000076"].stderr
    assert res["unit.000075"].successor is None   # nothing was queued behind it


def test_kill_all_ends_queued_units_without_running_them(ex, tmp_path):
    ex.launch(unit("unit.000080", "/bin/sleep", "100"), CPU)
    queued = [f"unit.00008{i}" for i in range(1, 4)]
    assert ex.queue_many([unit(uid, "/bin/echo", uid) for uid in queued], depth=3) == 3
    res = {r.uid: r for r in ex.kill_all()}
    assert set(res) == {"unit.000080", *queued}
    assert all(r.canceled for r in res.values())
    assert [uid for uid in queued if (tmp_path / "pilot" / uid).exists()] == []
    assert ex.running == 0 and ex.reap() == []


def test_a_killed_launcher_fails_its_running_and_queued_units_once(ex):
    ex.launch(unit("unit.000090", "/bin/sleep", "100"), CPU)
    pid = unit_pid("unit.000090")
    assert ex.queue_many([unit("unit.000091", "/bin/true"), unit("unit.000092", "/bin/true")],
                         depth=2) == 2
    try:
        launcher_of(pid).kill()
        res = reap_all(ex, 3)
    finally:
        os.killpg(pid, signal.SIGKILL)   # its launcher could not end it
    assert all(r.exit_code == 1 and "the launcher of the unit ended" in r.stderr
               for r in res.values())
    # the slots are given back once: by the unit that held them
    assert res["unit.000090"].slots == CPU
    assert res["unit.000091"].slots is None and res["unit.000092"].slots is None
    assert ex.running == 0
    # the core has no line left: a new unit there starts in a new launcher
    assert run_one(ex, unit("unit.000093", "/bin/echo", "again")).stdout == "again\n"


def test_a_unit_launched_on_slots_that_run_a_unit_starts_at_once(ex):
    # the executor does not check slots: two units given the same core both run now
    ex.launch(unit("unit.000100", "/bin/sleep", "100"), CPU)
    res = run_one(ex, unit("unit.000101", "/bin/echo", "beside"))
    assert res.stdout == "beside\n" and res.successor is None


def test_long_units_never_take_a_queue(ex):
    assert queue_depth(LONG_UNIT) == 0
    ex.launch(unit("unit.000110", "/bin/sleep", "0.3"), CPU)
    res = reap_all(ex)["unit.000110"]
    assert ex.mean_duration == pytest.approx(res.stopped - res.started)
    assert ex.mean_duration >= LONG_UNIT and ex.depth == 0
    ex.launch(unit("unit.000111", "/bin/sleep", "100"), CPU)
    assert ex.queue_many([unit("unit.000112", "/bin/true")]) == 0


# -- given back: units queued behind a unit that turned out long ---------------------


def take_all_withdrawn(ex, n, timeout=10.0):
    """Reap until ``n`` units came back unstarted; their uids, in order."""
    back = []
    deadline = time.monotonic() + timeout
    while len(back) < n:
        assert time.monotonic() < deadline, f"only {back} came back"
        assert ex.reap() == []
        back += [u["uid"] for u in ex.take_withdrawn()]
        time.sleep(0.01)
    return back


def test_units_queued_behind_a_long_unit_are_given_back_unstarted(ex, tmp_path):
    ex.launch(unit("unit.000120", "/bin/sleep", "100"), CPU)
    queued = [unit("unit.000121", "/bin/echo", "a"), unit("unit.000122", "/bin/echo", "b")]
    assert ex.queue_many(queued, depth=2) == 2
    assert ex.withdraw_stranded() == 0            # it has not run long yet
    time.sleep(2 * LONG_UNIT)
    assert ex.withdraw_stranded() == 2
    assert ex.withdraw_stranded() == 0            # asked once
    assert take_all_withdrawn(ex, 2) == ["unit.000121", "unit.000122"]
    assert (ex.queued, ex.running) == (0, 1)
    assert [u for u in ("unit.000121", "unit.000122") if (tmp_path / "pilot" / u).exists()] \
        == []
    # given back, a unit runs anywhere it is placed anew
    assert run_one(ex, queued[0], CORE1).stdout == "a\n"


def test_a_unit_that_started_before_it_was_asked_back_runs_as_queued(ex):
    ex.launch(unit("unit.000130", "/bin/sleep", "0.2"), CPU)
    assert ex.queue_many([unit("unit.000131", "/bin/echo", "ran")], depth=1) == 1
    time.sleep(0.5)          # the first ended, and its launcher started the second
    assert ex.withdraw_stranded() == 1   # the executor has not heard of it yet
    res = reap_all(ex, 2)
    assert res["unit.000130"].successor == "unit.000131"
    assert (res["unit.000131"].stdout, res["unit.000131"].slots) == ("ran\n", CPU)
    assert ex.take_withdrawn() == [] and ex.queued == 0


def test_a_unit_canceled_while_asked_back_ends_canceled_once(ex):
    ex.launch(unit("unit.000140", "/bin/sleep", "100"), CPU)
    assert ex.queue_many([unit("unit.000141", "/bin/true")], depth=1) == 1
    time.sleep(2 * LONG_UNIT)
    assert ex.withdraw_stranded() == 1
    assert ex.cancel("unit.000141") is True
    res = reap_all(ex)["unit.000141"]
    assert (res.canceled, res.slots, res.successor) == (True, None, None)
    time.sleep(0.2)
    assert ex.reap() == [] and ex.take_withdrawn() == []
    assert (ex.queued, ex.running) == (0, 1)


def test_kill_all_reports_units_given_back_and_not_taken(ex):
    ex.launch(unit("unit.000150", "/bin/sleep", "100"), CPU)
    assert ex.queue_many([unit("unit.000151", "/bin/true")], depth=1) == 1
    time.sleep(2 * LONG_UNIT)
    assert ex.withdraw_stranded() == 1
    deadline = time.monotonic() + 10
    while ex.queued:          # given back: it waits in the executor to be taken
        assert time.monotonic() < deadline
        assert ex.reap() == []
        time.sleep(0.01)
    res = {r.uid: r for r in ex.kill_all()}
    assert set(res) == {"unit.000150", "unit.000151"}
    assert res["unit.000151"].canceled and res["unit.000151"].slots is None
    assert ex.take_withdrawn() == []
