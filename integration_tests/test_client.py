"""The Client on real pilots: what it owns, futures as dependencies, results and
errors, gather, as_completed, wait, keys, scatter, executables, nested tasks."""

from __future__ import annotations

import concurrent.futures as cf
import os
import shlex
import time
from collections import namedtuple

import pytest

import rp_executor as rp
from rp_executor import Client
from rp_executor._core.calls import RemoteTraceback
from support import assert_no_session_processes

Pair = namedtuple("Pair", "a b")


def inc(x):
    return x + 1


def add(*xs):
    return sum(xs)


def boom(x):
    raise KeyError(f"boom {x}")


def nap_then(seconds, value):
    time.sleep(seconds)
    return value


def describe(obj):
    return repr(obj)


def size(data):
    return len(data)


# what a client owns ----------------------------------------------------------------

@pytest.mark.timeout(60)
def test_default_client_owns_a_machine_sized_pilot_and_close_ends_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Client(base_dir=tmp_path) as c:
        [pilot] = c.pilots
        assert pilot.description["cores"] == len(os.sched_getaffinity(0))
        assert c.executor._max_workers == len(os.sched_getaffinity(0))
        assert c.submit(inc, 1).result(timeout=30) == 2
    assert c.session.closed and pilot.state == rp.CANCELED
    assert_no_session_processes(c.session.uid)


@pytest.mark.timeout(60)
def test_client_on_the_callers_pilot_leaves_session_and_pilot_running(session, pilot, umgr):
    with Client(session=session, pilots=[pilot]) as c:
        assert c.submit(inc, 1).result(timeout=30) == 2
        assert c.total_cores == 2
    with Client(unit_manager=umgr) as c2:
        assert c2.unit_manager is umgr
        assert c2.submit(inc, 2).result(timeout=30) == 3
    assert not session.closed and pilot.state == rp.PMGR_ACTIVE
    u = umgr.submit_units(rp.ComputeUnitDescription(function=inc, args=[5]))
    umgr.wait_units(u.uid, timeout=30)
    assert u.return_value == 6


@pytest.mark.timeout(60)
def test_close_cancels_unfinished_work_of_the_client(session, pilot):
    c = Client(session=session, pilots=pilot)
    running = c.submit(nap_then, 30, 1)
    waiting = c.submit(inc, running)
    c.close()
    assert running.cancelled() and waiting.cancelled()
    assert running.unit.state == rp.CANCELED
    with pytest.raises(rp.IncorrectState):
        c.submit(inc, 1)


# futures as arguments -------------------------------------------------------------

@pytest.mark.timeout(60)
def test_nested_futures_are_dependencies_replaced_by_their_results(client):
    a, b = client.submit(inc, 1), client.submit(inc, 2)
    assert client.submit(add, a, b).result(timeout=30) == 5
    args = ([a, (b, {"k": a})], {"set": frozenset([b])}, Pair(a, [b]))
    got = client.submit(describe, args).result(timeout=30)
    assert got == repr(([2, (3, {"k": 2})], {"set": frozenset([3])}, Pair(2, [3])))
    chained = client.submit(inc, client.submit(inc, client.submit(inc, 0)))
    assert chained.result(timeout=30) == 3
    assert client.submit(add, x=a).exception(timeout=30) is not None  # kwargs too
    assert client.submit(lambda x=0: x, x=[a]).result(timeout=30) == [2]


@pytest.mark.timeout(60)
def test_a_failed_dependency_fails_its_dependents_with_the_same_error(client):
    bad = client.submit(boom, 1)
    child = client.submit(inc, [bad])
    grandchild = client.submit(inc, child)
    with pytest.raises(KeyError, match="boom 1") as info:
        grandchild.result(timeout=30)
    assert info.value is bad.exception() is child.exception()
    assert child.status == grandchild.status == "error"
    assert child.unit is None and grandchild.unit is None   # never sent to a pilot


@pytest.mark.timeout(60)
def test_a_cancelled_dependency_cancels_its_dependents(client):
    slow = client.submit(nap_then, 30, 1)
    child = client.submit(inc, {"x": slow})
    assert child.status == "pending" and child.unit is None
    assert slow.cancel() is True
    assert child.cancelled() and child.status == "cancelled"
    with pytest.raises(cf.CancelledError):
        child.result(timeout=5)


@pytest.mark.timeout(60)
def test_waiting_dependents_hold_no_slot(client):
    slow = [client.submit(nap_then, 1.5, i) for i in range(1)]
    dependents = [client.submit(inc, slow[0]) for _ in range(20)]
    quick = client.submit(inc, 100)
    assert quick.result(timeout=30) == 101
    assert not slow[0].done(), "the quick task ran on the slot the dependents left free"
    assert all(d.unit is None for d in dependents)
    assert client.gather(dependents) == [1] * 20


# results and errors ---------------------------------------------------------------

@pytest.mark.timeout(60)
def test_errors_reraise_with_their_type_and_the_remote_traceback(client):
    fut = client.submit(boom, 7)
    with pytest.raises(KeyError) as info:
        fut.result(timeout=30)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "in boom" in info.value.__cause__.tb
    assert fut.status == "error" and "in boom" in fut.traceback()
    assert isinstance(fut.exception(), KeyError)


@pytest.mark.timeout(60)
def test_gather_keeps_structure_and_skips_errors_on_request(client):
    a, b, bad = client.submit(inc, 1), client.submit(inc, 2), client.submit(boom, 0)
    assert client.gather({"x": a, "y": [b, (a, 7)]}) == {"x": 2, "y": [3, (2, 7)]}
    with pytest.raises(KeyError):
        client.gather([a, bad, b])
    assert client.gather([a, bad, b], errors="skip") == [2, 3]
    assert client.gather({"a": a, "bad": bad}, errors="skip") == {"a": 2}
    assert list(client.gather(iter([a, b]))) == [2, 3]


@pytest.mark.timeout(60)
def test_as_completed_yields_in_order_of_ending_with_add_and_batches(client):
    slow, fast = client.submit(nap_then, 1.0, "slow"), client.submit(nap_then, 0, "fast")
    ac = client.as_completed([slow, fast], with_results=True)
    assert ac.count() == 2
    first = next(ac)
    assert first == (fast, "fast")
    ac.add(client.submit(boom, 3))
    with pytest.raises(KeyError):
        for _ in ac:
            pass
    futures = client.map(inc, range(10))
    seen = []
    ac = client.as_completed(futures)
    for batch in ac.batches():
        assert batch and all(f.done() for f in batch)
        seen.extend(batch)
    assert sorted(f.result() for f in seen) == list(range(1, 11)) and ac.is_empty()
    pairs = list(client.as_completed([client.submit(boom, 4)], with_results=True,
                                     raise_errors=False))
    assert isinstance(pairs[0][1], KeyError)


@pytest.mark.timeout(60)
def test_wait_follows_concurrent_futures(client):
    slow, fast = client.submit(nap_then, 3, 1), client.submit(inc, 1)
    done, not_done = client.wait([slow, fast], return_when=cf.FIRST_COMPLETED)
    assert done == {fast} and not_done == {slow}
    done, not_done = client.wait([slow], timeout=0.1)
    assert not done and not_done == {slow}
    with pytest.raises(ValueError, match="return_when"):
        client.wait([fast], return_when="SOMETIMES")
    slow.cancel()


# keys -----------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_pure_calls_and_explicit_keys_share_one_live_task(client):
    a1, a2 = client.submit(inc, 10, pure=True), client.submit(inc, 10, pure=True)
    assert a1 is a2 and a1.key.startswith("inc-")
    assert client.submit(inc, 11, pure=True) is not a1
    i1, i2 = client.submit(inc, 10), client.submit(inc, 10)  # impure: the default
    assert i1 is not i2 and i1.key != i2.key
    k1 = client.submit(inc, 1, key="the-one")
    assert client.submit(inc, 100, key="the-one") is k1 and k1.result(timeout=30) == 2
    slow = client.submit(nap_then, 30, 0, key="again")
    slow.cancel()
    assert client.submit(nap_then, 0, 5, key="again").result(timeout=30) == 5
    keys = [f.key for f in client.map(inc, [1, 2], key="batch")]
    assert keys == ["batch-0", "batch-1"]


# scatter, executables, tasks that submit tasks ---------------------------------------

@pytest.mark.timeout(60)
def test_scattered_data_is_written_once_and_read_by_the_units(client):
    data = bytes(3 * 10**6)
    [big] = client.scatter([data])
    assert big.status == "finished" and big.result() is data
    sizes = client.gather([client.submit(size, big) for _ in range(4)])
    assert sizes == [len(data)] * 4
    cfg = client.scatter({"cfg": {"n": 3}})
    assert client.submit(describe, cfg["cfg"]).result(timeout=30) == "{'n': 3}"


@pytest.mark.timeout(60)
def test_executable_units_give_their_stdout_or_fail_with_exit_code(client):
    ok = client.submit_unit(rp.ComputeUnitDescription(executable="/bin/echo",
                                                      arguments=["hello"]))
    assert ok.result(timeout=30) == "hello\n" and ok.unit.state == rp.DONE
    # arguments reach the shell as they are (as in RADICAL-Pilot): quote them
    bad = client.submit_unit({"executable": "/bin/sh",
                              "arguments": ["-c", shlex.quote("echo no >&2; exit 3")]})
    with pytest.raises(rp.UnitFailed, match="exit code 3") as info:
        bad.result(timeout=30)
    assert info.value.exit_code == 3 and "no" in bad.traceback()
    fn = client.submit_unit(rp.ComputeUnitDescription(function=inc, args=[ok.unit.exit_code]))
    assert fn.result(timeout=30) == 1


@pytest.mark.timeout(60)
def test_tasks_cannot_submit_tasks_to_their_client(client):
    with pytest.raises(rp.BadParameter, match="tasks cannot submit tasks"):
        client.submit(lambda: client.submit(inc, 1).result())
    with pytest.raises(rp.BadParameter, match="tasks cannot submit tasks"):
        client.submit(describe, client)
    fut = client.submit(inc, 1)
    with pytest.raises(rp.BadParameter, match="pass futures as arguments"):
        client.submit(lambda: fut.result())


@pytest.mark.timeout(60)
def test_units_of_dropped_futures_are_released_and_kept_ones_stay(client):
    import gc
    kept = client.submit(inc, 1)
    dropped = client.map(inc, range(20))
    assert client.gather(dropped) == list(range(1, 21)) and kept.result(timeout=30) == 2
    dropped_uids = {f.unit.uid for f in dropped}
    del dropped
    gc.collect()
    # released as the client hears of its units: run one more task
    assert client.submit(inc, 41).result(timeout=30) == 42
    known = set(client.unit_manager.list_units())
    assert not dropped_uids & known
    assert kept.unit.uid in known and kept.result() == 2
    # the journal still has them
    client.session.journal.flush()
    journaled = {uid for _, uid, _, _ in client.session.journal.transitions()}
    assert dropped_uids <= journaled


@pytest.mark.timeout(60)
def test_a_shared_unit_manager_keeps_every_unit(session, pilot, umgr):
    import gc
    with Client(unit_manager=umgr) as c:
        futures = c.map(inc, range(5))
        uids = {f.unit.uid for f in futures}
        assert c.gather(futures) == [1, 2, 3, 4, 5]
        del futures
        gc.collect()
        assert c.submit(inc, 0).result(timeout=30) == 1
        assert uids <= set(umgr.list_units())   # RADICAL-Pilot's manager forgets nothing
