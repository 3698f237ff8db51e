"""Dask collections and raw graphs on pilots, through client.executor and client.get:
the same results as dask's synchronous scheduler."""

from __future__ import annotations

import operator
import os

import pytest

from rp_executor._core.calls import RemoteTraceback

import dask  # noqa: E402 - a core dependency: a missing install must fail, not skip


def _numpy():
    try:
        import numpy
    except ImportError:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail("numpy is needed for dask.array (install the test extras)")
        pytest.skip("numpy is not installed: dask.array needs it")
    return numpy


def inc(x):
    return x + 1


def fail(x):
    raise ArithmeticError(f"bad {x}")


def _same(collection, client):
    (ours,) = dask.compute(collection, scheduler=client.executor)
    (theirs,) = dask.compute(collection, scheduler="sync")
    return ours, theirs


@pytest.mark.timeout(120)
def test_delayed_graphs_give_the_synchronous_result(client):
    from dask import delayed
    parts = [delayed(inc)(i) for i in range(10)]
    total = delayed(sum)(parts)
    both = delayed(operator.add)(total, delayed(lambda x: x * 2)(total))
    ours, theirs = _same(both, client)
    assert ours == theirs == 165
    units = _units_ever(client)
    with dask.config.set(scheduler=client.executor):
        assert total.compute() == 55
    # ran on the pilot: new units (the journal keeps those whose futures are released)
    assert _units_ever(client) > units


def _units_ever(client):
    journal = client.session.journal
    journal.flush()
    return len({uid for kind, uid, _, _ in journal.transitions() if kind == "unit"})


@pytest.mark.timeout(120)
def test_array_computations_give_the_synchronous_result(client):
    np = _numpy()
    import dask.array as da
    x = da.arange(400, chunks=50).reshape(20, 20).rechunk(5)
    expr = (x + x.T).sum(axis=0) / 3 + da.ones(20, chunks=5).cumsum(axis=0)
    ours, theirs = _same(expr, client)
    np.testing.assert_array_equal(ours, theirs)
    ours, theirs = _same(da.arange(1000, chunks=100).mean(), client)
    assert ours == theirs == 499.5


@pytest.mark.timeout(120)
def test_bag_computations_give_the_synchronous_result(client):
    import dask.bag as db
    b = db.from_sequence(range(100), npartitions=7)
    expr = b.map(inc).filter(lambda v: v % 3 == 0).fold(operator.add)
    ours, theirs = _same(expr, client)
    assert ours == theirs == sum(v for v in range(1, 101) if v % 3 == 0)
    freq = b.map(lambda v: v % 4).frequencies()
    ours, theirs = _same(freq, client)
    assert sorted(ours) == sorted(theirs)


@pytest.mark.timeout(120)
def test_client_get_runs_raw_graphs_and_is_a_dask_scheduler(client):
    dsk = {"a": 1, "b": (inc, "a"), "c": (operator.add, "a", "b"), "d": (inc, "c")}
    assert client.get(dsk, "d") == 4
    assert client.get(dsk, ["b", ["c", "d"]]) == (2, (3, 4))
    from dask import delayed
    assert dask.compute(delayed(inc)(41), scheduler=client) == (42,)


@pytest.mark.timeout(120)
def test_a_failing_task_raises_its_error_from_compute(client):
    from dask import delayed
    with pytest.raises(ArithmeticError, match="bad 1") as info:
        dask.compute(delayed(fail)(1), scheduler=client.executor)
    assert isinstance(info.value.__cause__, RemoteTraceback)
