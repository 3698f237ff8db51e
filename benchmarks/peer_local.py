"""The no-framework baselines: ProcessPoolExecutor(2) and a two-thread subprocess loop."""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import subprocess
import threading
import time

from benchmarks.cpu import CpuMeter
from benchmarks.payloads import noop
from benchmarks.timing import rate, round_trips

WORKERS = 2


def _pool() -> cf.ProcessPoolExecutor:
    pool = cf.ProcessPoolExecutor(WORKERS)
    # Start both workers before timing anything.
    list(pool.map(noop, range(WORKERS)))
    return pool


def ppe_fn_tput(n: int, timeout: float) -> dict[str, float]:
    """Throughput of ``n`` no-op ``submit``s to ProcessPoolExecutor(2), then wait all."""
    with _pool() as pool:
        t0 = time.perf_counter()
        futures = [pool.submit(noop, i) for i in range(n)]
        t1 = time.perf_counter()
        for f in futures:
            f.result(timeout=timeout)
        t2 = time.perf_counter()
    return {"ppe_fn_tput": rate(n, t2 - t0), "ppe_fn_tput_wall_s": t2 - t0,
            "ppe_fn_tput_submit_s": t1 - t0, "ppe_fn_tput_n": n}


def ppe_latency(n: int, timeout: float) -> dict[str, float]:
    """Median and p90 of ``n`` sequential ``submit(...).result()`` round trips."""
    with _pool() as pool:
        return round_trips("ppe", n, lambda i: pool.submit(noop, i).result(timeout=timeout))


def raw_exec_tput(n: int, timeout: float) -> dict[str, float]:
    """Throughput of ``n`` ``subprocess.run(['/bin/true'])`` calls from two threads.

    :raises RuntimeError: a launch failed or the loop ran past ``timeout``.
    """
    tickets = itertools.count()  # next() on a count is atomic under the GIL
    errors: list[BaseException] = []
    deadline = time.monotonic() + timeout

    def launcher() -> None:
        try:
            while next(tickets) < n and time.monotonic() < deadline:
                subprocess.run(["/bin/true"], check=True)
        except BaseException as exc:  # reported by the caller below
            errors.append(exc)

    threads = [threading.Thread(target=launcher, name=f"launcher-{i}") for i in range(WORKERS)]
    meter = CpuMeter()
    meter.start()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = meter.stop(n, "raw_exec_tput")
    if errors:
        raise RuntimeError(f"raw /bin/true loop failed: {errors[0]!r}") from errors[0]
    if time.monotonic() >= deadline:
        raise RuntimeError(f"raw /bin/true loop ran past its {timeout} s timeout")
    return {"raw_exec_tput": rate(n, wall), "raw_exec_tput_wall_s": wall, "raw_exec_tput_n": n,
            **cpu}
