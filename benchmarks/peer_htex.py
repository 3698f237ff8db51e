"""Parsl's HighThroughputExecutor on one LocalProvider block of two workers.

The configuration is the one a user would write, Parsl's defaults otherwise
(CurveZMQ encryption on, strategy 'simple' with its 5 s period): the point is what
HTEX costs out of the box.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from typing import Any, Iterator

from benchmarks.payloads import noop
from benchmarks.timing import app_throughput, round_trips


@contextlib.contextmanager
def loaded(timeout: float) -> Iterator[tuple[Any, dict[str, float]]]:
    """Load a fresh HTEX config; yield ``(noop_app, timings)`` after its first result.

    ``timings`` holds ``htex_load_s`` (``parsl.load``) and ``htex_first_result_s``
    (``parsl.load`` until the first no-op app's result). The DFK is cleaned up and
    its run_dir removed on the way out.
    """
    import parsl
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    tmp = tempfile.mkdtemp(prefix="rpbench-htex-")
    config = Config(
        executors=[HighThroughputExecutor(
            label="htex", max_workers_per_node=2,
            provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1))],
        run_dir=tmp)
    t0 = time.perf_counter()
    parsl.load(config)
    try:
        t1 = time.perf_counter()
        app = parsl.python_app(noop, executors=["htex"])
        app().result(timeout=timeout)
        t2 = time.perf_counter()
        yield app, {"htex_load_s": t1 - t0, "htex_first_result_s": t2 - t0}
    finally:
        parsl.dfk().cleanup()
        parsl.clear()
        shutil.rmtree(tmp, ignore_errors=True)


def startup(n: int, timeout: float) -> dict[str, float]:
    """Time ``parsl.load`` -> first no-op result (``n`` is ignored)."""
    with loaded(timeout) as (_app, timings):
        return dict(timings)


def fn_tput(n: int, timeout: float) -> dict[str, float]:
    """Throughput of ``n`` no-op apps, all submitted, then all results collected."""
    with loaded(timeout) as (app, timings):
        return app_throughput(app, "htex", n, timeout, timings["htex_first_result_s"])


def latency(n: int, timeout: float) -> dict[str, float]:
    """Median and p90 of ``n`` sequential single app round trips."""
    with loaded(timeout) as (app, _timings):
        return round_trips("htex", n, lambda i: app(i).result(timeout=timeout))
