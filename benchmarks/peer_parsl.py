"""Parsl through RPExecutor: the same no-op apps as :mod:`benchmarks.peer_htex`, one pilot.

One LocalProvider block (a 2-core pilot), strategy 'simple' with Parsl's default
period, as a user would write it; compared with HTEX's two workers in the same run.

:func:`inline_fn_tput` measures what the DataFlowKernel costs by itself: the same
apps through an executor that does no work of its own (it calls the no-op inside
``submit``, on the DFK's launch thread, and returns a finished future). Every
executor pays the DFK's per-task cost in the DFK's process (one GIL) on top of its
own; one that runs the apps elsewhere can end slightly above this figure.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future
from typing import Any, Iterator

from parsl.executors.base import ParslExecutor

from benchmarks.timing import app_throughput, parsl_loaded

PILOT_CORES = 2


@contextlib.contextmanager
def loaded(timeout: float) -> Iterator[tuple[Any, dict[str, float]]]:
    """Load a fresh RPExecutor config; yield ``(noop_app, timings)`` after its first result.

    ``timings`` holds ``rpex_load_s`` and ``rpex_first_result_s`` (``parsl.load``
    until the first result); see :func:`benchmarks.timing.parsl_loaded`.
    """
    from parsl.launchers import SimpleLauncher
    from parsl.providers import LocalProvider

    from rp_executor import RPExecutor

    executor = RPExecutor(
        label="rpex", cores_per_block=PILOT_CORES,
        provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1,
                               launcher=SimpleLauncher()))
    with parsl_loaded(executor, timeout) as loaded_app:
        yield loaded_app


def fn_tput(n: int, timeout: float) -> dict[str, float]:
    """Throughput of ``n`` no-op apps through Parsl and RPExecutor, submit all, then
    collect all results (as :func:`benchmarks.peer_htex.fn_tput`)."""
    with loaded(timeout) as (app, timings):
        return app_throughput(app, "rpex", n, timeout, timings["rpex_first_result_s"])


class InlineExecutor(ParslExecutor):
    """A Parsl executor that runs each app inside ``submit`` and returns its finished
    future: no thread, process or message of its own (the DFK by itself)."""

    def __init__(self, label: str = "inline") -> None:
        super().__init__()
        self.label = label

    def start(self) -> None:
        """Nothing to start."""

    def submit(self, func: Any, resource_specification: dict, *args: Any,
               **kwargs: Any) -> Future:
        """Run ``func(*args, **kwargs)`` now; return a future holding its outcome."""
        fut: Future = Future()
        try:
            fut.set_result(func(*args, **kwargs))
        except Exception as exc:
            fut.set_exception(exc)
        return fut

    def shutdown(self) -> None:
        """Nothing to stop."""


def inline_fn_tput(n: int, timeout: float) -> dict[str, float]:
    """Throughput of ``n`` no-op apps through :class:`InlineExecutor`, as
    :func:`fn_tput` measures it: the DFK's own rate in this run."""
    with parsl_loaded(InlineExecutor(), timeout) as (app, timings):
        return app_throughput(app, "inline", n, timeout, timings["inline_first_result_s"])
