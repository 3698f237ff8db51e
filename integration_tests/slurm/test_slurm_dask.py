"""A DaskCluster on the test Slurm: two pilots as sbatch jobs, one on each fake node,
and one dask.array reduction whose chunks live on the workers of both.

The cluster (conftest.py) has two fake nodes n1, n2 with 4 CPUs each; each pilot
of 4 cores is one node, and runs 2 workers of 2 threads as srun steps.
"""

from __future__ import annotations

import os
import subprocess

import pytest

import rp_executor as rp

from distributed import Client, wait  # noqa: E402 - a core dependency: must fail, not skip

pytestmark = pytest.mark.timeout(300)


def test_two_sbatch_pilots_hold_one_dask_array_reduction(slurm_cluster, slurm_session):
    import dask.array as da
    import numpy  # noqa: F401 - the test extra; dask.array needs it (missing: fail)

    with rp.DaskCluster(resource="slurm.localhost", cores=4, processes=2, threads=2,
                        runtime=15, jobs=2, session=slurm_session,
                        scheduler_options={"dashboard_address": "127.0.0.1:0"}) \
            as cluster, Client(cluster) as client:
        client.wait_for_workers(4, timeout=120)
        pilots = cluster.pilots
        assert len(pilots) == 2 and all(p.state == rp.PMGR_ACTIVE for p in pilots)
        for p in pilots:   # sbatch jobs of Parsl's SlurmProvider
            out = subprocess.run(["squeue", "-h", "-j", p.job_id, "-o", "%T"],
                                 capture_output=True, text=True, timeout=30).stdout
            assert out.strip() == "RUNNING", (p.uid, p.job_id, out)
        nodes = client.run(os.getenv, "SLURMD_NODENAME")     # worker address -> node
        assert sorted(nodes.values()) == ["n1", "n1", "n2", "n2"], nodes
        jobs = client.run(os.getenv, "SLURM_JOB_ID")
        assert set(jobs.values()) == {p.job_id for p in pilots}

        x = da.ones((4000, 4000), chunks=(250, 250)).persist()
        wait(x, timeout=120)
        holders = {w for where in client.who_has(x).values() for w in where}
        assert {nodes[w] for w in holders} == {"n1", "n2"}   # chunks on both pilots
        assert client.compute((x * 3).sum()).result(timeout=120) == 3 * 4000 * 4000
        units = cluster.unit_manager.get_units()
        assert len(units) == 4 and {u.state for u in units} == {rp.EXECUTING}
    assert all(p.state == rp.CANCELED for p in pilots), [(p.uid, p.state) for p in pilots]
    assert {u.state for u in units} <= {rp.CANCELED, rp.DONE}
