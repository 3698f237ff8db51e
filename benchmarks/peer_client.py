"""rp-executor's futures door: a ``Client`` owning one 2-core local pilot, as peer_rp's.

The same no-op work as every peer, submitted the way a Dask user would:
``client.map`` then ``client.gather`` for throughput, ``submit(...).result()`` for
latency. The Client adds futures, keys and dependency checks on top of the units
measured by :mod:`benchmarks.peer_rp`.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from typing import Any, Iterator

from benchmarks.payloads import noop
from benchmarks.peer_rp import PILOT_CORES, Unavailable
from benchmarks.timing import rate, round_trips


@contextlib.contextmanager
def connected(timeout: float) -> Iterator[tuple[Any, dict[str, float]]]:
    """A Client with its own 2-core pilot, after a first result; closed on the way out.

    ``timings`` holds ``client_first_result_s``: from ``Client()`` to the first no-op's
    result.
    """
    try:
        from rp_executor import Client
    except ImportError as exc:
        raise Unavailable(f"rp_executor.Client is not available: {exc}") from exc
    tmp = tempfile.mkdtemp(prefix="rpbench-client-")
    t0 = time.perf_counter()
    client = Client(cores=PILOT_CORES, base_dir=tmp)
    try:
        client.gather([client.submit(noop), client.submit(noop)])
        yield client, {"client_first_result_s": time.perf_counter() - t0}
    finally:
        client.close()
        shutil.rmtree(tmp, ignore_errors=True)


def fn_tput(n: int, timeout: float) -> dict[str, float]:
    """Throughput of ``client.map`` over ``n`` no-ops, then ``gather``."""
    with connected(timeout) as (client, timings):
        t0 = time.perf_counter()
        futures = client.map(noop, range(n))
        t1 = time.perf_counter()
        client.wait(futures, timeout=timeout)
        client.gather(futures)
        t2 = time.perf_counter()
        return {"client_fn_tput": rate(n, t2 - t0), "client_fn_tput_wall_s": t2 - t0,
                "client_fn_tput_submit_s": t1 - t0, "client_fn_tput_n": n, **timings}


def latency(n: int, timeout: float) -> dict[str, float]:
    """Median and p90 of ``n`` sequential ``submit(noop, i).result()`` round trips."""
    with connected(timeout) as (client, _timings):
        return round_trips("client", n, lambda i: client.submit(noop, i).result(timeout=timeout))
