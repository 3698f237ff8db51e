"""The futures door's pure parts: dependencies, resources, keys, as_completed, the
future's states, pickled calls, and the agent's priority order. No processes."""

from __future__ import annotations

import collections
import concurrent.futures as cf
import pickle
import threading
from collections import namedtuple

import cloudpickle
import pytest

from rp_executor.futures.completion import AsCompleted
from rp_executor.futures.client import resource_attributes, token_of
from rp_executor.futures.dependencies import find_futures, has_futures, rebuild, substitute
from rp_executor.exceptions import BadParameter
from rp_executor.futures.future import Future
from rp_executor._core.calls import Call, ScatterRef, load_scattered, run_chunk

Pair = namedtuple("Pair", "a b")


def fut(key="k", client=None):
    return Future(client, key)


def done(value, key="d"):
    f = fut(key)
    f._settle(value)
    return f


# dependencies -----------------------------------------------------------------------

def test_futures_are_found_nested_in_lists_tuples_sets_and_dict_values_once_each():
    a, b, c = fut("a"), fut("b"), fut("c")
    args = ([a, (b, {"x": a})], {"k": frozenset([c])}, Pair(b, 1), "a")
    assert list(find_futures(args).values()) == [a, b, c]
    assert has_futures((1, [a]), {}) and has_futures((), {"x": {"y": c}})
    assert not has_futures((1, "x", [2]), {"k": 3})


def test_objects_other_than_the_containers_are_not_searched():
    class Holder:
        def __init__(self, f):
            self.f = f
    assert find_futures([Holder(fut())]) == {}
    assert find_futures({fut(): 1}) == {}   # keys are not dependencies


def test_substitute_rebuilds_containers_with_futures_and_keeps_the_others():
    a, b = done(1, "a"), done(2, "b")
    plain = [1, (2, 3)]
    out = substitute(([a, plain], {"x": b}, Pair(a, b), {a}), lambda f: f.result())
    assert out == ([1, [1, (2, 3)]], {"x": 2}, Pair(1, 2), {1})
    assert type(out[2]) is Pair
    assert out[0][1] is plain   # no future inside: not copied


def test_rebuild_leaves_out_skipped_futures():
    a, bad = done(1, "a"), done(None, "bad")
    skip = lambda f: f is bad  # noqa: E731
    value = lambda f: f.result()  # noqa: E731
    assert rebuild([a, bad, (bad, a)], value, skip) == [1, (1,)]
    assert rebuild({"a": a, "bad": bad}, value, skip) == {"a": 1}
    assert rebuild(bad, value, skip) is None


# resources and keys -----------------------------------------------------------------

def test_resources_map_to_description_attributes():
    assert resource_attributes(None) == {}
    assert resource_attributes({"cores": 4}) == {"cpu_threads": 4}
    assert resource_attributes({"cores": 4, "gpus": 1, "mpi": True}) == {
        "gpu_processes": 1, "cpu_processes": 4, "cpu_process_type": "MPI"}


@pytest.mark.parametrize("bad, match", [
    ({"ram": 1}, r"unknown key\(s\) 'ram'; allowed keys: cores, gpus, mpi"),
    ({"cores": 0}, "must be an int >= 1"), ({"gpus": -1}, "must be an int >= 0"),
    ({"mpi": "yes"}, "must be a bool"), ([1], "expected a dict")])
def test_bad_resources_are_refused_naming_what_is_allowed(bad, match):
    with pytest.raises(BadParameter, match=match):
        resource_attributes(bad)


def test_tokens_are_equal_for_equal_calls_and_count_futures_by_key():
    def f(x, y=0):
        return x + y
    assert token_of(f, (1,), {"y": 2}) == token_of(f, (1,), {"y": 2})
    assert token_of(f, (1,), {}) != token_of(f, (2,), {})
    assert token_of(f, (fut("a"),), {}) == token_of(f, (fut("a"),), {})
    assert token_of(f, (fut("a"),), {}) != token_of(f, (fut("b"),), {})


# the future -------------------------------------------------------------------------

def test_future_status_follows_its_unit_and_works_with_concurrent_futures_wait():
    f = fut()
    assert f.status == "pending" and f.unit is None
    assert f._mark_running() and f.status == "running" and f.running()
    assert f._settle(42) and f.status == "finished" and f.result() == 42
    assert not f._settle(43) and not f._mark_cancelled() and f.result() == 42
    e = fut()
    e._settle(exception=KeyError("x"))
    assert e.status == "error" and isinstance(e.exception(), KeyError)
    c = fut()
    c._mark_running()
    assert c._mark_cancelled() and c.status == "cancelled" and c.cancelled()
    done_, not_done = cf.wait([f, e, c, fut()], timeout=0)
    assert done_ == {f, e, c} and len(not_done) == 1


def test_a_waiting_wait_is_woken_by_settle_and_cancel():
    f, g = fut("f"), fut("g")
    threading.Timer(0.05, f._settle, (1,)).start()
    threading.Timer(0.05, g._mark_cancelled).start()
    done_, _ = cf.wait([f, g], timeout=10)
    assert done_ == {f, g}


def test_futures_refuse_to_be_pickled_with_advice():
    captured = fut()
    with pytest.raises(TypeError, match="pass futures as arguments"):
        cloudpickle.dumps(lambda: captured.result())


# as_completed -----------------------------------------------------------------------

def test_as_completed_yields_as_futures_end_and_accepts_more():
    a, b, c = cf.Future(), cf.Future(), cf.Future()
    ac = AsCompleted([a, b])
    b.set_result(2)
    assert next(ac) is b and ac.count() == 1
    ac.add(c)
    c.set_result(3)
    a.set_result(1)
    assert list(ac) == [c, a] and ac.is_empty()


def test_as_completed_batches_and_results():
    fs = [cf.Future() for _ in range(4)]
    ac = AsCompleted(fs, with_results=True, raise_errors=False)
    for i, f in enumerate(fs[:3]):
        f.set_result(i)
    first = ac.next_batch()
    assert [v for _, v in first] == [0, 1, 2] and ac.has_ready() is False
    fs[3].set_exception(ValueError("x"))
    [[(f, exc)]] = list(ac.batches())
    assert f is fs[3] and isinstance(exc, ValueError)


def test_as_completed_raises_errors_and_times_out():
    bad = cf.Future()
    bad.set_exception(ValueError("x"))
    with pytest.raises(ValueError):
        next(AsCompleted([bad], with_results=True))
    with pytest.raises(TimeoutError, match="1 futures unfinished"):
        next(AsCompleted([cf.Future()], timeout=0.01))
    dup = cf.Future()
    ac = AsCompleted([dup, dup])
    dup.set_result(1)
    assert list(ac) == [dup, dup]   # as in Dask: added twice, yielded twice


# what travels to the worker -----------------------------------------------------------

def double(x, plus=0):
    return 2 * x + plus


def test_a_call_runs_its_pickled_function_and_holds_only_bytes():
    call = Call(cloudpickle.dumps(double), pickle.dumps(((3,), {"plus": 1})), "double")
    again = pickle.loads(pickle.dumps(call))
    assert again() == 7 and repr(again) == "<call of double>"
    named = Call(f"{__name__}:double", pickle.dumps(((1,), {})))
    assert named() == 2
    assert run_chunk(double, [(1,), (2,)]) == [2, 4]


def test_scattered_data_unpickles_from_its_file(tmp_path):
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps({"big": list(range(5))}))
    value = pickle.loads(pickle.dumps([ScatterRef(str(path))]))
    assert value == [{"big": [0, 1, 2, 3, 4]}]
    assert load_scattered(str(path)) is load_scattered(str(path))   # read once


# the agent's waiting order ------------------------------------------------------------

def test_the_agent_keeps_higher_priority_first_and_arrival_order_among_equals():
    from rp_executor.agent.agent import Agent
    agent = object.__new__(Agent)   # only the queue: no sockets, no pool
    agent.waiting, agent.updates, agent.now = collections.OrderedDict(), {}, 0.0
    agent.first_update, agent.prioritized = None, False

    def unit(uid, priority=0):
        return {"uid": uid, "description": {"priority": priority} if priority else {}}

    agent._receive([unit("a"), unit("b")])
    assert list(agent.waiting) == ["a", "b"] and not agent.prioritized
    agent._receive([unit("c", -1), unit("d", 5), unit("e")])
    agent._receive([unit("f", 5)])
    assert list(agent.waiting) == ["d", "f", "a", "b", "e", "c"]


def test_the_agent_gathers_updates_longer_only_while_units_wait_for_cores():
    import types

    from rp_executor.agent import agent as agent_mod
    agent = object.__new__(agent_mod.Agent)   # only the gathering: no sockets, no pool
    agent.rm = types.SimpleNamespace(cores=2)
    agent.waiting = collections.OrderedDict.fromkeys(["a"])
    agent.updates, agent.first_update = {"x": None}, 10.0
    assert agent._batch_age() == agent_mod._BATCH_AGE
    assert agent._flush_timeout(10.001) == pytest.approx(agent_mod._BATCH_AGE - 0.001)
    agent.waiting["b"] = None                 # a core's worth waits: results come steadily
    assert agent._batch_age() == agent_mod._BACKLOG_AGE > agent_mod._BATCH_AGE
    assert agent._flush_timeout(10.001) == pytest.approx(agent_mod._BACKLOG_AGE - 0.001)
