"""How the Client's tasks are run: retries, priority, cancelling running units,
fire-and-forget, resources, and the executor's max_workers window."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

import rp_executor as rp
from rp_executor import Client
from support import assert_no_session_processes, wait_for


def flaky(counter: str, failures: int):
    """Fail the first ``failures`` calls (counted in the file ``counter``)."""
    path = Path(counter)
    n = int(path.read_text()) if path.exists() else 0
    path.write_text(str(n + 1))
    if n < failures:
        raise RuntimeError(f"attempt {n + 1} fails")
    return n + 1


def record(log: str, name: str):
    with open(log, "a") as fh:
        fh.write(f"{name}\n")
    return name


def nap(seconds):
    time.sleep(seconds)
    return seconds


def touch_later(path: str, seconds: float):
    time.sleep(seconds)
    Path(path).write_text("done")


def threads():
    import os
    return os.environ.get("OMP_NUM_THREADS")


@pytest.fixture
def client1(tmp_path, monkeypatch):
    """A client with a 1-core pilot of its own."""
    monkeypatch.chdir(tmp_path)
    c = Client(cores=1, base_dir=tmp_path)
    try:
        yield c
    finally:
        c.close()
    assert_no_session_processes(c.session.uid)


@pytest.mark.timeout(60)
def test_retries_rerun_a_failed_unit_up_to_n_times(client1, tmp_path):
    ok = client1.submit(flaky, str(tmp_path / "a"), 2, retries=2)
    assert ok.result(timeout=30) == 3
    bad = client1.submit(flaky, str(tmp_path / "b"), 2, retries=1)
    with pytest.raises(RuntimeError, match="attempt 2 fails"):
        bad.result(timeout=30)
    assert (tmp_path / "b").read_text() == "2"
    assert bad.unit.state == rp.FAILED


@pytest.mark.timeout(60)
def test_higher_priority_units_start_first_when_waiting_for_cores(client1, tmp_path):
    log = str(tmp_path / "order.log")
    blocker = client1.submit(nap, 1.0)
    wait_for(lambda: blocker.status == "running", 30, "the blocker to run")
    low = client1.map(record, [log] * 3, ["low0", "low1", "low2"])
    mid = client1.submit(record, log, "mid", priority=5)
    high = client1.submit(record, log, "high", priority=10)
    negative = client1.submit(record, log, "negative", priority=-1)
    client1.gather([blocker, low, mid, high, negative])
    order = Path(log).read_text().split()
    assert order == ["high", "mid", "low0", "low1", "low2", "negative"]


@pytest.mark.timeout(60)
def test_cancelling_a_running_future_kills_its_unit(client1):
    fut = client1.submit(nap, 60)
    wait_for(lambda: fut.status == "running", 30, "the unit to run")
    t0 = time.monotonic()
    assert fut.cancel() is True
    assert time.monotonic() - t0 < 10
    assert fut.cancelled() and fut.status == "cancelled"
    assert fut.unit.state == rp.CANCELED
    assert client1.submit(nap, 0).result(timeout=30) == 0   # the slot is free again
    assert fut.cancel() is True   # cancelling again: still cancelled


@pytest.mark.timeout(60)
def test_cancelling_a_queued_future_cancels_its_unit_before_it_runs(client1, tmp_path):
    log = str(tmp_path / "ran.log")
    blocker = client1.submit(nap, 60)
    wait_for(lambda: blocker.status == "running", 30, "the blocker to run")
    # the pilot's one core is busy for a minute: this unit is certainly still queued
    queued = client1.submit(record, log, "queued")
    assert queued.status == "pending" and queued.unit is not None
    assert queued.cancel() is True
    assert queued.cancelled() and queued.status == "cancelled"
    assert queued.unit.state == rp.CANCELED
    assert rp.EXECUTING not in [s for s, _ in queued.unit.state_history]
    assert blocker.cancel() is True
    assert client1.submit(record, log, "after").result(timeout=30) == "after"
    assert Path(log).read_text().split() == ["after"]   # the cancelled unit never ran


@pytest.mark.timeout(60)
def test_close_waits_for_fire_and_forget_tasks_and_cancels_the_rest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = Client(cores=2, base_dir=tmp_path)
    kept = c.submit(touch_later, str(tmp_path / "kept"), 1.0)
    c.fire_and_forget([kept])
    dropped = c.submit(touch_later, str(tmp_path / "dropped"), 20)
    del kept
    c.close()
    assert (tmp_path / "kept").read_text() == "done"
    assert dropped.cancelled() and not (tmp_path / "dropped").exists()
    assert_no_session_processes(c.session.uid)


@pytest.mark.timeout(60)
def test_resources_set_the_units_cores_and_bad_ones_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Client(cores=2, base_dir=tmp_path) as c:
        fut = c.submit(threads, resources={"cores": 2})
        assert fut.result(timeout=30) == "2"
        assert fut.unit.description["cpu_threads"] == 2
        with pytest.raises(rp.BadParameter, match=re.escape(
                "resources: unknown key(s) 'memory'; allowed keys: cores, gpus, mpi")):
            c.submit(threads, resources={"memory": 3})
        with pytest.raises(rp.BadParameter, match=re.escape(
                "resources['cores']: must be an int >= 1; got 0")):
            c.submit(threads, resources={"cores": 0})
        too_big = c.submit(threads, resources={"cores": 3})
        error = too_big.exception(timeout=30)
        assert type(error) is RuntimeError
        assert str(error) == (
            "rp_executor: non-MPI unit does not fit onto a single node: it requests 3 "
            "cores and 0 gpus, the largest node has 2 cores and 0 gpus (pilot: 2 cores, "
            "0 gpus on 1 node(s))")
        assert too_big.status == "error" and too_big.unit.state == rp.FAILED


@pytest.mark.timeout(90)
def test_executor_with_max_workers_keeps_the_rest_and_cancels_it_on_shutdown(client1):
    ex = client1.get_executor(max_workers=2)
    assert ex._max_workers == 2
    futures = [ex.submit(nap, 0.3) for _ in range(10)]
    assert sum(f.unit is not None for f in futures) == 2
    ex.shutdown(wait=True, cancel_futures=True)
    cancelled = [f for f in futures if f.cancelled()]
    assert len(cancelled) == 8 and all(f.unit is None for f in cancelled)
    assert [f.result() for f in futures if not f.cancelled()] == [0.3, 0.3]
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(nap, 0)
    assert client1.executor.submit(nap, 0).result(timeout=30) == 0
    with client1.get_executor() as ex2:
        assert list(ex2.map(nap, [0, 0, 0], chunksize=2)) == [0, 0, 0]
