"""Queued units beyond one per worker: the depth follows the units' mean duration."""

from __future__ import annotations

import os
import signal
import sys
import time

import cloudpickle
import pytest

from rp_executor.agent.function_pool import (LONG_UNIT, MAX_DEPTH, QUEUE_COVER, FuncResult,
                                             FunctionPool, queue_depth)

from test_function_pool import CPU, collect_all, submit, value, wait_for_file

# the workers cannot import this test module: its functions travel by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def append(path, text):
    with open(path, "a") as f:
        f.write(text + "\n")
    return os.getpid()


def touch_then_sleep(path, seconds):
    open(path, "w").close()
    time.sleep(seconds)
    return os.getpid()


def units(*specs):
    """``(uid, fn, *args)`` → the records ``queue_many`` takes."""
    return [(uid, cloudpickle.dumps(fn), cloudpickle.dumps((args, {})), None)
            for uid, fn, *args in specs]


def warm_up(pool: FunctionPool) -> None:
    """Run no-op units until the pool's mean duration is short enough for depth > 1."""
    for i in range(500):
        if pool.depth > 1:
            return
        submit(pool, f"warm.{i:06d}", os.getpid)
        collect_all(pool)
    raise AssertionError(f"the mean duration stayed at {pool.mean_duration}s")


def test_depth_covers_a_few_milliseconds_and_is_one_for_long_or_unknown_units():
    assert queue_depth(None) == 0
    assert queue_depth(LONG_UNIT) == queue_depth(10 * LONG_UNIT) == 0
    assert queue_depth(1e-7) == MAX_DEPTH
    assert queue_depth(QUEUE_COVER / 4) == 4
    assert all(queue_depth(m / 1000) >= queue_depth((m + 1) / 1000) for m in range(10))


def test_a_backlog_of_short_units_queues_several_per_worker_which_run_in_order(sandbox):
    log = sandbox / "log"
    with FunctionPool(1, sandbox) as pool:
        warm_up(pool)
        assert pool.depth == MAX_DEPTH
        submit(pool, "unit.000000", touch_then_sleep, str(sandbox / "first"), 0.2)
        many = units(*((f"unit.{i:06d}", append, str(log), f"unit.{i:06d}")
                       for i in range(1, MAX_DEPTH + 5)))
        # the policy's depth, given: its other rule (nothing behind a unit that ran
        # LONG_UNIT already) would depend on how fast this test gets here
        assert pool.queue_many(many, depth=pool.depth) == MAX_DEPTH   # the rest wait
        assert pool.queue_room(depth=pool.depth) == 0
        results = collect_all(pool, MAX_DEPTH + 1)
        chain = ["unit.000000"]
        while results[chain[-1]].successor is not None:
            chain.append(results[chain[-1]].successor)
        assert chain == [f"unit.{i:06d}" for i in range(MAX_DEPTH + 1)]
        assert all(r.slots == CPU for r in results.values())
        assert all(r.ok for r in results.values()), [r.stderr or r.traceback for r in results.values() if not r.ok][:1]
        assert log.read_text().split() == chain[1:]     # each ran once, in order
        assert all(results[a].stopped <= results[b].started for a, b in zip(chain, chain[1:]))
        assert pool.idle == 1 and pool.running == 0


def test_queued_units_are_spread_evenly_over_the_workers(sandbox):
    with FunctionPool(2, sandbox) as pool:
        warm_up(pool)
        submit(pool, "unit.000000", time.sleep, 0.2)
        submit(pool, "unit.000001", time.sleep, 0.2)
        assert pool.queue_many(units(*((f"unit.{i:06d}", os.getpid) for i in range(2, 8))),
                               depth=pool.depth) == 6
        results = collect_all(pool, 8)
        pids = [value(results[f"unit.{i:06d}"]) for i in range(2, 8)]
        assert sorted(pids.count(pid) for pid in set(pids)) == [3, 3]


def test_long_units_queue_nothing_behind_them(sandbox):
    # they wait in the agent for a free core, where a unit of higher priority that
    # comes later still goes first
    with FunctionPool(1, sandbox) as pool:
        submit(pool, "unit.000000", time.sleep, 2 * LONG_UNIT)
        collect_all(pool)
        assert pool.mean_duration >= LONG_UNIT and pool.depth == 0
        submit(pool, "unit.000001", time.sleep, 0.1)
        assert pool.queue_many(units(("unit.000002", os.getpid))) == 0
        assert pool.queue_room() == 0
        results = collect_all(pool, 1)
        assert results["unit.000001"].successor is None


def test_short_units_queue_nothing_behind_one_that_runs_long(sandbox):
    with FunctionPool(1, sandbox) as pool:
        warm_up(pool)
        assert pool.depth > 1
        submit(pool, "unit.000000", time.sleep, 0.5)
        time.sleep(2 * LONG_UNIT)     # it has run longer than a short unit does
        assert pool.queue_room() == 0
        assert pool.queue_many(units(("unit.000001", os.getpid))) == 0
        collect_all(pool, 1)


def test_a_unit_canceled_deep_in_a_queue_never_runs_and_spares_the_others(sandbox):
    log = sandbox / "log"
    with FunctionPool(1, sandbox) as pool:
        warm_up(pool)
        victim = pool.pids[0]
        submit(pool, "unit.000000", touch_then_sleep, str(sandbox / "first"), 0.3)
        uids = [f"unit.{i:06d}" for i in range(1, 7)]
        assert pool.queue_many(units(*((uid, append, str(log), uid) for uid in uids)),
                               depth=MAX_DEPTH) == 6
        assert pool.cancel("unit.000004")
        results = collect_all(pool, 7)
        canceled = results.pop("unit.000004")
        assert canceled.canceled and canceled.slots is None
        assert all(r.ok for r in results.values())
        assert log.read_text().split() == [u for u in uids if u != "unit.000004"]
        assert results["unit.000003"].successor == "unit.000005"
        assert pool.pids == [victim]    # the worker dropped it: nobody was killed
        assert pool.running == 0


def test_a_worker_killed_with_several_queued_units_hands_them_all_to_its_replacement(sandbox):
    log = sandbox / "log"
    with FunctionPool(1, sandbox) as pool:
        warm_up(pool)
        victim = pool.pids[0]
        submit(pool, "unit.000000", touch_then_sleep, str(sandbox / "first"), 60)
        wait_for_file(sandbox / "first")
        uids = [f"unit.{i:06d}" for i in range(1, 6)]
        assert pool.queue_many(units(*((uid, append, str(log), uid) for uid in uids)),
                               depth=MAX_DEPTH) == 5
        assert pool.cancel("unit.000002")
        os.kill(victim, signal.SIGKILL)
        results: dict[str, FuncResult] = {}
        deadline = time.monotonic() + 30
        while len(results) < 6:
            assert time.monotonic() < deadline, f"only {sorted(results)} came back"
            for res in collect_all(pool, 1).values():
                assert res.uid not in results, f"{res.uid} ended twice"
                results[res.uid] = res
        first = results["unit.000000"]
        assert not first.ok and "SIGKILL" in first.stderr and first.successor == "unit.000001"
        assert results["unit.000002"].canceled
        ran = [u for u in uids if u != "unit.000002"]
        assert log.read_text().split() == ran           # once each, in order
        assert {value(results[u]) for u in ran} == set(pool.pids) != {victim}
        assert pool.running == 0 and pool.size == 1


@pytest.fixture
def sandbox(tmp_path):
    return tmp_path / "pilot"
