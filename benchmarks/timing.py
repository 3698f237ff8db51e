"""Small timing helpers shared by the peers: rates, latency summaries, a timed Parsl load."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Iterator, Sequence

from benchmarks.payloads import noop


def rate(n: int, seconds: float) -> float:
    """Return ``n / seconds`` (tasks per second); ``seconds`` must be positive."""
    if seconds <= 0:
        raise ValueError(f"a rate needs a positive duration; got {seconds!r} s for {n} tasks")
    return n / seconds


def app_throughput(app: Any, prefix: str, n: int, timeout: float,
                   first_result_s: float) -> dict[str, float]:
    """Submit ``n`` calls of a Parsl ``app``, then collect every result; the figures
    under ``<prefix>_fn_tput...`` keys (shared by the HTEX and RPExecutor peers)."""
    t0 = time.perf_counter()
    futures = [app(i) for i in range(n)]
    t1 = time.perf_counter()
    for f in futures:
        f.result(timeout=timeout)
    t2 = time.perf_counter()
    return {f"{prefix}_fn_tput": rate(n, t2 - t0), f"{prefix}_fn_tput_wall_s": t2 - t0,
            f"{prefix}_fn_tput_submit_s": t1 - t0, f"{prefix}_fn_tput_n": n,
            f"{prefix}_first_result_s": first_result_s}


def percentile(samples: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (0..100) of ``samples``, linearly interpolated."""
    if not samples:
        raise ValueError("a percentile needs at least one sample; got none")
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_summary(prefix: str, samples_s: Sequence[float]) -> dict[str, float]:
    """Return ``{prefix_latency_ms, prefix_latency_p90_ms, prefix_latency_n}``."""
    return {
        f"{prefix}_latency_ms": statistics.median(samples_s) * 1e3,
        f"{prefix}_latency_p90_ms": percentile(samples_s, 90) * 1e3,
        f"{prefix}_latency_n": len(samples_s),
    }


def round_trips(prefix: str, n: int, one: Callable[[int], Any]) -> dict[str, float]:
    """Call ``one(i)`` (a submit and its wait) for i in ``range(n)``, one after another;
    the median and p90 of their times as :func:`latency_summary` gives them."""
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        one(i)
        samples.append(time.perf_counter() - t0)
    return latency_summary(prefix, samples)


def peak_rss_mb() -> float:
    """Return this process's peak resident set size in MB (``ru_maxrss``)."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return maxrss / 1024.0 if sys.platform != "darwin" else maxrss / 2**20


def rss_mb() -> float:
    """Return this process's resident set size now, in MB (``/proc/self/statm``);
    where there is no ``/proc``, the peak (:func:`peak_rss_mb`) stands in."""
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
    except OSError:
        return peak_rss_mb()
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@contextlib.contextmanager
def parsl_loaded(executor: Any, timeout: float) -> Iterator[tuple[Any, dict[str, float]]]:
    """Load a fresh Parsl Config with ``executor`` alone (its run_dir a new temporary
    directory); yield ``(noop_app, timings)`` after the app's first result.

    ``timings`` holds ``<label>_load_s`` (``parsl.load``) and
    ``<label>_first_result_s`` (``parsl.load`` until the first result). The DFK is
    cleaned up and its run_dir removed on the way out.
    """
    import parsl
    from parsl.config import Config

    label = executor.label
    tmp = tempfile.mkdtemp(prefix=f"rpbench-{label}-")
    t0 = time.perf_counter()
    parsl.load(Config(executors=[executor], run_dir=tmp))
    try:
        t1 = time.perf_counter()
        app = parsl.python_app(noop, executors=[label])
        app().result(timeout=timeout)
        t2 = time.perf_counter()
        yield app, {f"{label}_load_s": t1 - t0, f"{label}_first_result_s": t2 - t0}
    finally:
        parsl.dfk().cleanup()
        parsl.clear()
        shutil.rmtree(tmp, ignore_errors=True)
