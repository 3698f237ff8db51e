"""RPExecutor on a real Slurm: the block is an ``sbatch`` job of Parsl's SlurmProvider,
as in the Config of docs/parsl.rst, and the apps run inside that job."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

import parsl
from parsl.config import Config
from parsl.launchers import SimpleLauncher
from parsl.providers import SlurmProvider

from rp_executor import RPExecutor

pytestmark = pytest.mark.timeout(240)


def squeue_jobs() -> list[str]:
    return subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                          timeout=30).stdout.split()


def test_rpexecutor_blocks_are_sbatch_jobs_and_apps_run_inside_them(slurm_cluster,
                                                                    tmp_path):
    executor = RPExecutor(
        label="rp_slurm", resource="slurm.localhost", working_dir=str(tmp_path / "run"),
        provider=SlurmProvider(
            partition="debug", nodes_per_block=1, cores_per_node=slurm_cluster.cpus_per_node,
            walltime="00:10:00", launcher=SimpleLauncher(),
            init_blocks=1, min_blocks=0, max_blocks=1))
    parsl.load(Config(executors=[executor], run_dir=str(tmp_path / "runinfo"),
                      strategy_period=0.5))
    job = None
    try:
        # functions the nodes can import (a Slurm pilot gets no copy of the client's
        # sys.path: its nodes may not see the client's files)
        where = parsl.python_app(os.getenv, executors=["rp_slurm"])
        square = parsl.python_app(pow, executors=["rp_slurm"])

        @parsl.bash_app(executors=["rp_slurm"])
        def job_id_to(stdout=None):
            return 'echo "$SLURM_JOB_ID"'

        jobs = {where("SLURM_JOB_ID", "").result(timeout=120) for _ in range(3)}
        assert len(jobs) == 1 and jobs != {""}, jobs
        job = jobs.pop()
        assert job in squeue_jobs()
        assert [square(i, 2).result(timeout=60) for i in range(6)] == [0, 1, 4, 9, 16, 25]
        out = tmp_path / "job.out"
        assert job_id_to(stdout=str(out)).result(timeout=60) == 0
        assert out.read_text().strip() == job
        # the block Parsl knows is this job
        assert [s.state.name for s in executor.status().values()] == ["RUNNING"]
    finally:
        parsl.dfk().cleanup()
        parsl.clear()
    # shutdown cancels the pilot: its job leaves the queue
    assert job and _gone_soon(job)


def _gone_soon(job: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if job not in squeue_jobs():
            return True
        time.sleep(0.5)
    return False
