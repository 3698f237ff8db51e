"""Parsl's HighThroughputExecutor on one LocalProvider block of two workers.

The configuration is the one a user would write, Parsl's defaults otherwise
(CurveZMQ encryption on, strategy 'simple' with its 5 s period): the point is what
HTEX costs out of the box.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from benchmarks.timing import app_throughput, parsl_loaded, round_trips


@contextlib.contextmanager
def loaded(timeout: float) -> Iterator[tuple[Any, dict[str, float]]]:
    """Load a fresh HTEX config; yield ``(noop_app, timings)`` after its first result.

    ``timings`` holds ``htex_load_s`` (``parsl.load``) and ``htex_first_result_s``
    (``parsl.load`` until the first no-op app's result); see
    :func:`benchmarks.timing.parsl_loaded`.
    """
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    executor = HighThroughputExecutor(
        label="htex", max_workers_per_node=2,
        provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1))
    with parsl_loaded(executor, timeout) as loaded_app:
        yield loaded_app


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
