"""Parsl through RPExecutor: the same no-op apps as :mod:`benchmarks.peer_htex`, one pilot.

One LocalProvider block (a 2-core pilot), strategy 'simple' with Parsl's default
period, as a user would write it; compared with HTEX's two workers in the same run.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from typing import Any, Iterator

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
