"""Dask's LocalCluster beside a DaskCluster on one local pilot of the same cores.

Both run two single-threaded worker processes on this machine, as their users get
them (LocalCluster over TCP, DaskCluster over TLS, its default), with no dashboard,
and run the same three things, each in its own fresh process:

* start-up: from the cluster's constructor to the first no-op's result through a
  ``distributed.Client`` (the cluster's class is imported before, for both);
* throughput of one ``client.map`` over ``n`` no-ops, then ``gather``;
* a ``dask.array`` reduction (the sum of a random array), in graph tasks per second.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator

from benchmarks.payloads import noop
from benchmarks.peer_rp import Unavailable
from benchmarks.timing import rate

WORKERS = 2
RUNTIME_MIN = 30


def _local_cluster() -> Callable[[], Any]:
    from distributed import LocalCluster
    return lambda: LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                                dashboard_address=None)


def _dask_cluster() -> Callable[[], Any]:
    from rp_executor import DaskCluster
    return lambda: DaskCluster(cores=WORKERS, processes=WORKERS, threads=1,
                               runtime=RUNTIME_MIN,
                               scheduler_options={"dashboard_address": None})


@contextlib.contextmanager
def _running(make: Callable[[], Any], prefix: str, timeout: float
             ) -> Iterator[tuple[Any, dict[str, float]]]:
    from distributed import Client

    t0 = time.perf_counter()
    cluster = make()
    try:
        with Client(cluster) as client:
            client.submit(noop, pure=False).result(timeout=timeout)
            started = time.perf_counter() - t0
            client.wait_for_workers(WORKERS, timeout=timeout)
            yield client, {f"{prefix}_start_s": started}
    finally:
        cluster.close()


def _array_side(n: int) -> int:
    """The side of the reduced array: 8,000 for the full run (256 chunks of 500²),
    2,000 for ``--quick`` (16 chunks)."""
    return 8000 if n >= 10_000 else 2000


def _measure(make: Callable[[], Any], prefix: str, n: int,
             timeout: float) -> dict[str, float]:
    try:
        import dask.array as da
        import numpy  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"dask.array needs numpy: {exc}") from exc
    with _running(make, prefix, timeout) as (client, values):
        t0 = time.perf_counter()
        client.gather(client.map(noop, range(n)))
        mapped = time.perf_counter() - t0
        side = _array_side(n)
        total = da.random.random((side, side), chunks=(500, 500)).sum()
        tasks = len(total.__dask_graph__())
        t0 = time.perf_counter()
        client.compute(total).result(timeout=timeout)
        reduced = time.perf_counter() - t0
    values.update({f"{prefix}_map_tput": rate(n, mapped), f"{prefix}_map_n": n,
                   f"{prefix}_array_tput": rate(tasks, reduced),
                   f"{prefix}_array_s": reduced, f"{prefix}_array_tasks": tasks})
    return values


def local(n: int, timeout: float) -> dict[str, float]:
    """Dask's LocalCluster: start-up, map throughput, array reduction."""
    return _measure(_local_cluster(), "localcluster", n, timeout)


def pilot(n: int, timeout: float) -> dict[str, float]:
    """DaskCluster on one 2-core local pilot: start-up, map throughput, array
    reduction."""
    return _measure(_dask_cluster(), "daskcluster", n, timeout)
