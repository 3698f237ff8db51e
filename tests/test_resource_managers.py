"""Resource managers: node lists of Slurm, PBS and LSF allocations, GPUs per node."""

from __future__ import annotations

import os

import pytest

from agent.config import AgentConfig
from agent.resource_manager import (LSFResourceManager, LocalResourceManager,
                                    PBSResourceManager, SlurmResourceManager, detect_gpus,
                                    expand_hostlist, make_resource_manager)


def names(rm):
    return [(n.name, n.cores, n.gpus) for n in rm.nodes]


def test_slurm_host_lists_expand_ranges_lists_and_leading_zeros():
    assert expand_hostlist("n[1-3,7],gpu[08-10],login") == \
        ["n1", "n2", "n3", "n7", "gpu08", "gpu09", "gpu10", "login"]
    assert expand_hostlist("a[1-2]b[3-4]") == ["a1b3", "a1b4", "a2b3", "a2b4"]
    with pytest.raises(ValueError, match="unbalanced"):
        expand_hostlist("n[1-2")


def test_slurm_nodes_take_cpus_per_node_from_the_job():
    env = {"SLURM_JOB_NODELIST": "n[1-3]", "SLURM_JOB_CPUS_PER_NODE": "4(x2),2",
           "CUDA_VISIBLE_DEVICES": ""}
    rm = make_resource_manager(AgentConfig(resource_manager="SLURM", cores=10), env)
    assert isinstance(rm, SlurmResourceManager)
    assert names(rm) == [("n1", 4, 0), ("n2", 4, 0), ("n3", 2, 0)]
    assert rm.agent_node == "n1"


def test_slurm_cores_per_node_of_the_config_win_and_described_gpus_are_spread():
    env = {"SLURM_NODELIST": "c[1-2]", "SLURM_CPUS_ON_NODE": "48"}
    rm = SlurmResourceManager.from_config(AgentConfig(cores_per_node=16, gpus=3), env)
    assert names(rm) == [("c1", 16, 2), ("c2", 16, 2)]


def test_slurm_outside_a_job_says_so():
    with pytest.raises(ValueError, match="SLURM_NODELIST"):
        make_resource_manager(AgentConfig(resource_manager="slurm", cores=1), {})


def test_pbs_node_file_has_one_line_per_cpu(tmp_path):
    nodefile = tmp_path / "nodes"
    nodefile.write_text("a\na\nb\nb\na\nb\n")
    rm = make_resource_manager(AgentConfig(resource_manager="PBSPRO", cores=6, gpus_per_node=1),
                               {"PBS_NODEFILE": str(nodefile)})
    assert isinstance(rm, PBSResourceManager)
    assert names(rm) == [("a", 3, 1), ("b", 3, 1)]


def test_lsf_host_file_and_mcpu_hosts(tmp_path):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("batch1\n" + "c1\n" * 42 + "c2\n" * 42)
    rm = make_resource_manager(AgentConfig(resource_manager="LSF", gpus_per_node=6),
                               {"LSB_DJOB_HOSTFILE": str(hostfile)})
    assert isinstance(rm, LSFResourceManager)
    assert names(rm) == [("batch1", 1, 6), ("c1", 42, 6), ("c2", 42, 6)]
    rm = LSFResourceManager.from_config(AgentConfig(gpus_per_node=0),
                                        {"LSB_MCPU_HOSTS": "h1 4 h2 4"})
    assert names(rm) == [("h1", 4, 0), ("h2", 4, 0)]


def test_gpus_are_detected_from_cuda_visible_devices_when_not_declared():
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "0,1,3"}) == 3
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": ""}) == 0
    env = {"SLURM_NODELIST": "n1", "SLURM_CPUS_ON_NODE": "8", "CUDA_VISIBLE_DEVICES": "0,1"}
    assert names(SlurmResourceManager.from_config(AgentConfig(), env)) == [("n1", 8, 2)]
    # gpus_per_node 0 means none, whatever the node shows
    assert names(SlurmResourceManager.from_config(AgentConfig(gpus_per_node=0), env)) == [("n1", 8, 0)]


def test_local_resources_are_the_description_and_unknown_managers_are_named():
    rm = make_resource_manager(AgentConfig(cores=4, gpus=2, gpus_per_node=0), {})
    assert isinstance(rm, LocalResourceManager) and rm.cores == 4 and rm.gpus == 2
    rm = make_resource_manager(AgentConfig(resource_manager="FORK", cores=2, gpus_per_node=None),
                               {"CUDA_VISIBLE_DEVICES": "0"})
    assert rm.gpus == 1
    with pytest.raises(ValueError, match="unknown resource manager 'YARN'.*slurm"):
        make_resource_manager(AgentConfig(resource_manager="YARN", cores=1), {})


def test_this_machines_cores_are_those_the_process_may_run_on():
    from agent.resource_manager import detect_cores
    assert detect_cores() == len(os.sched_getaffinity(0)) >= 1
