"""Dask distributed on a LocalCluster of two single-threaded worker processes."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

from benchmarks.payloads import noop
from benchmarks.timing import rate, round_trips


@contextlib.contextmanager
def connected(timeout: float) -> Iterator[tuple[Any, dict[str, float]]]:
    """Start a LocalCluster and a Client; yield ``(client, timings)`` after a first result.

    ``timings`` holds ``dask_first_result_s``: from the ``LocalCluster`` call until
    the first no-op's result. Cluster and client are closed on the way out.
    """
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    try:
        client = Client(cluster)
        try:
            client.submit(noop, pure=False).result(timeout=timeout)
            t1 = time.perf_counter()
            yield client, {"dask_first_result_s": t1 - t0}
        finally:
            client.close()
    finally:
        cluster.close()


def startup(n: int, timeout: float) -> dict[str, float]:
    """Time ``LocalCluster`` + ``Client`` -> first no-op result (``n`` is ignored)."""
    with connected(timeout) as (_client, timings):
        return dict(timings)


def fn_tput(n: int, timeout: float) -> dict[str, float]:
    """Throughput of ``client.map`` over ``n`` no-ops, then ``gather``."""
    with connected(timeout) as (client, _timings):
        t0 = time.perf_counter()
        futures = client.map(noop, range(n))
        t1 = time.perf_counter()
        client.gather(futures)
        t2 = time.perf_counter()
        return {"dask_fn_tput": rate(n, t2 - t0), "dask_fn_tput_wall_s": t2 - t0,
                "dask_fn_tput_submit_s": t1 - t0, "dask_fn_tput_n": n}


def latency(n: int, timeout: float) -> dict[str, float]:
    """Median and p90 of ``n`` sequential ``submit(...).result()`` round trips."""
    with connected(timeout) as (client, _timings):
        return round_trips("dask", n, lambda i: client.submit(noop, i, pure=False)
                           .result(timeout=timeout))
