"""Dask distributed on a LocalCluster of two single-threaded worker processes."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Iterator

from benchmarks.payloads import noop
from benchmarks.timing import peak_rss_mb, rate, round_trips

log = logging.getLogger(__name__)


@contextlib.contextmanager
def connected(timeout: float, close_timeout: float | None = None
              ) -> Iterator[tuple[Any, dict[str, float]]]:
    """Start a LocalCluster and a Client; yield ``(client, timings)`` after a first result.

    ``timings`` holds ``dask_first_result_s``: from the ``LocalCluster`` call until
    the first no-op's result. Cluster and client are closed on the way out, each
    given ``close_timeout`` seconds when set (Dask's default otherwise); one that
    does not close in time is logged, not raised, so that what was measured is
    kept (the worker processes are the daemon children of this one and end with it).
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
            _close(client, close_timeout)
    finally:
        _close(cluster, close_timeout)


def _close(closable: Any, timeout: float | None) -> None:
    """Close a Dask client or cluster, within ``timeout`` seconds when set (see
    :func:`connected`)."""
    if timeout is None:
        closable.close()
        return
    try:
        closable.close(timeout=timeout)
    except TimeoutError:
        log.warning("%s did not close within %g s; its worker processes end with this "
                    "process", type(closable).__name__, timeout)


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


#: Seconds :func:`million` gives each of the client and the cluster to close.
CLOSE_S = 60
#: Seconds :func:`million` keeps out of its limit for what follows the wait: a client
#: and cluster that still hold a million tasks took over three minutes to count,
#: cancel and close here, and the driver kills the job's process at its own limit.
TEARDOWN_S = 180


def million(n: int, timeout: float) -> dict[str, Any]:
    """``client.map`` over ``n`` no-ops, then wait for all: wall time, throughput and
    the peak RSS of this process (the client and LocalCluster's scheduler).

    The map and the wait share one deadline, ``timeout`` less :data:`TEARDOWN_S`;
    when it passes, throughput and wall time are left out and ``dask_million_dnf_s``
    says how long was waited, with the number of tasks finished by then.
    """
    from distributed import wait

    budget = max(1.0, timeout - TEARDOWN_S)
    with connected(timeout, close_timeout=CLOSE_S) as (client, _timings):
        t0 = time.perf_counter()
        futures = client.map(noop, range(n))
        t1 = time.perf_counter()
        values: dict[str, Any] = {"dask_million_n": n, "dask_million_submit_s": t1 - t0}
        try:
            wait(futures, timeout=max(0.0, budget - (t1 - t0)))
        except TimeoutError:
            values["dask_million_dnf_s"] = budget
        else:
            t2 = time.perf_counter()
            values.update({"dask_million_tput": rate(n, t2 - t0),
                           "dask_million_wall_s": t2 - t0})
        values["dask_million_finished"] = sum(f.status == "finished" for f in futures)
        values["dask_million_peak_rss_mb"] = peak_rss_mb()
        return values
