"""Pilot descriptions become batch jobs: the scripts Parsl's providers write for the
shipped resource configs, built without submitting (``execute_wait`` is replaced)."""

from __future__ import annotations

from pathlib import Path

import pytest

import rp_executor as rp
from rp_executor._core import providers
from rp_executor.resource_config import ResourceRegistry

REGISTRY = ResourceRegistry(user_dirs=[])


def submitted(label, tmp_path, reply, registry=REGISTRY, **descr):
    """The provider for ``descr`` on ``label``, the submit command and the script."""
    pd = rp.ComputePilotDescription(resource=label, runtime=90, **descr)
    provider = providers.make_provider(registry.get(label), pd, tmp_path)
    calls = []

    def execute_wait(cmd, timeout=None):
        calls.append(cmd)
        return 0, reply, ""
    # LSFProvider calls super().execute_wait: replace it where it is defined too
    from parsl.providers.cluster_provider import ClusterProvider
    saved = ClusterProvider.execute_wait
    ClusterProvider.execute_wait = lambda self, cmd, timeout=None: execute_wait(cmd)
    provider.execute_wait = execute_wait
    try:
        job_id = provider.submit("exec python -m rp_executor.agent cfg.json", 1,
                                 "rp.pilot.0000")
    finally:
        ClusterProvider.execute_wait = saved
    script = next(p for p in Path(tmp_path).iterdir() if p.name.startswith("rp.pilot.0000")
                  and p.read_text().startswith("#!"))
    return provider, job_id, calls[-1], script.read_text()


def test_pbspro_script_asks_for_whole_nodes_queue_account_and_walltime(tmp_path):
    provider, job_id, cmd, script = submitted(
        "pbspro.template", tmp_path, "1234.pbs\n", cores=300, gpus=0, queue="debug",
        project="ABC123")
    assert job_id == "1234.pbs"
    assert cmd.startswith("qsub  -q debug -A ABC123 ")
    assert "#PBS -l walltime=01:30:00" in script
    assert "#PBS -l select=3:ncpus=128" in script     # 300 cores / 128 per node
    assert script.rstrip().endswith("exec python -m rp_executor.agent cfg.json")


def test_lsf_script_asks_for_nodes_by_cores_and_gpus(tmp_path):
    provider, job_id, cmd, script = submitted(
        "lsf.template", tmp_path, "Job <42> is submitted to queue <batch>.\n",
        cores=42, gpus=12, project="BIO007")
    assert job_id == "42" and cmd.startswith("bsub ")
    assert "#BSUB -W 90" in script
    assert "#BSUB -P BIO007" in script and "#BSUB -q batch" in script
    assert "#BSUB -nnodes 2" in script                 # 12 GPUs / 6 per node
    assert "exec python -m rp_executor.agent cfg.json" in script


def test_slurm_script_maps_queue_project_runtime_and_nodes(tmp_path):
    registry = ResourceRegistry(user_dirs=[])
    registry.add(registry.get_config("slurm.localhost").merged({"cores_per_node": 4}))
    provider, job_id, cmd, script = submitted(
        "slurm.localhost", tmp_path, "Submitted batch job 77\n", registry, cores=8,
        queue="debug", project="proj")
    assert job_id == "77" and cmd.startswith("sbatch ")
    for line in ("#SBATCH --nodes=2", "#SBATCH --time=90", "#SBATCH --partition=debug",
                 "#SBATCH --account=proj", "#SBATCH --exclusive"):
        assert line in script, script


def test_a_provider_handed_in_is_used_as_it_is(tmp_path):
    from parsl.providers import LocalProvider
    mine = LocalProvider(init_blocks=0)
    pd = rp.ComputePilotDescription(resource="slurm.localhost", cores=8, runtime=5,
                                    provider=mine)
    assert providers.make_provider(REGISTRY.get("slurm.localhost"), pd, tmp_path) is mine


@pytest.mark.parametrize("cores,gpus,cpn,gpn,nodes", [
    (1, 0, None, None, 1), (48, 0, 16, 0, 3), (4, 8, 16, 4, 2), (17, 0, 16, 0, 2)])
def test_nodes_for_cores_and_gpus(cores, gpus, cpn, gpn, nodes):
    assert providers.nodes_for(cores, gpus, cpn, gpn) == nodes


def test_walltime_from_minutes():
    assert providers.walltime(5) == "00:05:00" and providers.walltime(600) == "10:00:00"
