"""A Parsl Config with one RPExecutor on a local pilot, for Parsl's test suite and parsl-perf.

``pytest --pyargs parsl.tests --config rp_executor/parsl/config.py`` and
``parsl-perf --config rp_executor/parsl/config.py`` load this module and call
:func:`fresh_config` (or read ``config``).
"""

from __future__ import annotations

import os

from parsl.config import Config
from parsl.launchers import SimpleLauncher
from parsl.providers import LocalProvider

from rp_executor.agent.resource_manager import detect_cores
from rp_executor.parsl.executor import RPExecutor

#: Cores of the one local pilot (``RPEX_CORES`` overrides, also beyond this machine's;
#: default: the cores this process may run on).
CORES = int(os.environ.get("RPEX_CORES") or detect_cores())


def fresh_config() -> Config:
    """One RPExecutor, one local pilot of :data:`CORES` cores, strategy 'simple'.

    ``strategy_period`` is short so that the first block is launched soon after the
    DataFlowKernel starts (the strategy launches it on its first pass).
    """
    return Config(
        executors=[RPExecutor(
            label="RPExecutor", cores_per_block=CORES, oversubscribe=True,
            provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1,
                                   launcher=SimpleLauncher()))],
        strategy="simple", strategy_period=0.5, max_idletime=60.0)


config = fresh_config()
