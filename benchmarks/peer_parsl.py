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
import shutil
import tempfile
import time
from typing import Any, Iterator

from concurrent.futures import Future

from parsl.executors.base import ParslExecutor

from benchmarks.payloads import noop
from benchmarks.timing import app_throughput

PILOT_CORES = 2


@contextlib.contextmanager
def loaded(timeout: float) -> Iterator[tuple[Any, dict[str, float]]]:
    """Load a fresh RPExecutor config; yield ``(noop_app, timings)`` after its first result.

    ``timings`` holds ``rpex_first_result_s`` (``parsl.load`` until the first result).
    """
    import parsl
    from parsl.config import Config
    from parsl.launchers import SimpleLauncher
    from parsl.providers import LocalProvider

    from rp_executor import RPExecutor

    tmp = tempfile.mkdtemp(prefix="rpbench-rpex-")
    config = Config(
        executors=[RPExecutor(
            label="rpex", cores_per_block=PILOT_CORES,
            provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1,
                                   launcher=SimpleLauncher()))],
        run_dir=tmp)
    t0 = time.perf_counter()
    parsl.load(config)
    try:
        app = parsl.python_app(noop, executors=["rpex"])
        app().result(timeout=timeout)
        t1 = time.perf_counter()
        yield app, {"rpex_first_result_s": t1 - t0}
    finally:
        parsl.dfk().cleanup()
        parsl.clear()
        shutil.rmtree(tmp, ignore_errors=True)


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
    import parsl
    from parsl.config import Config

    tmp = tempfile.mkdtemp(prefix="rpbench-inline-")
    t0 = time.perf_counter()
    parsl.load(Config(executors=[InlineExecutor()], run_dir=tmp))
    try:
        app = parsl.python_app(noop, executors=["inline"])
        app().result(timeout=timeout)
        return app_throughput(app, "inline", n, timeout, time.perf_counter() - t0)
    finally:
        parsl.dfk().cleanup()
        parsl.clear()
        shutil.rmtree(tmp, ignore_errors=True)
