"""Launch methods: the command lines of fork, mpirun (Open MPI, MPICH) and srun."""

from __future__ import annotations

import os

import pytest

from agent.config import AgentConfig
from agent.launch_methods import (Fork, LaunchError, LaunchMethods, MPIRun, Srun,
                                  make_launch_method)
from agent.scheduler import NodeSlot, Slots

ARGV = ["./app", "x"]
MPI = {"cpu_process_type": "MPI", "cpu_processes": 6}
TWO_NODES = Slots([NodeSlot("n1", (0, 1, 2, 3), ()), NodeSlot("n2", (0, 1), (1,))])


def test_fork_leaves_the_command_alone_and_is_skipped_by_the_executor(tmp_path):
    assert Fork().command(ARGV, {}, TWO_NODES, {}, tmp_path) == ARGV
    methods = LaunchMethods.from_config(AgentConfig(task_launch_method="FORK",
                                                    mpi_launch_method="POPEN"))
    assert methods.trivial and methods.for_unit(MPI) is None


def test_per_unit_choice_between_task_and_mpi_methods():
    methods = LaunchMethods.from_config(AgentConfig(task_launch_method="fork",
                                                    mpi_launch_method="srun"))
    assert methods.for_unit({}) is None
    assert isinstance(methods.for_unit(MPI), Srun)
    with pytest.raises(ValueError, match="unknown launch method 'APRUN'"):
        make_launch_method("APRUN")


def test_srun_mpi_unit_spans_nodes_through_a_host_file(tmp_path):
    env = {"RP_UNIT_ID": "unit.000001"}
    cmd = Srun({"mpi": "pmix"}).command(ARGV, MPI, TWO_NODES, env, tmp_path)
    assert cmd[:4] == ["srun", "--overlap", "--export=ALL", "--kill-on-bad-exit=1"]
    assert {"--ntasks=6", "--cpus-per-task=1", "--nodes=2", "--distribution=arbitrary",
            "--mpi=pmix"} <= set(cmd)
    assert cmd[-2:] == ARGV
    assert (tmp_path / "unit.000001.hosts").read_text().split() == ["n1"] * 4 + ["n2"] * 2
    assert env["SLURM_HOSTFILE"] == str(tmp_path / "unit.000001.hosts")


def test_srun_plain_unit_is_one_task_with_all_its_cores_on_its_node(tmp_path):
    slots = Slots([NodeSlot("n2", (2, 3), ())])
    cmd = Srun().command(ARGV, {"cpu_threads": 2}, slots, {}, tmp_path)
    assert {"--ntasks=1", "--cpus-per-task=2", "--nodes=1", "--nodelist=n2"} <= set(cmd)


def test_mpirun_open_mpi_places_ranks_per_node_and_exports_the_environment(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setattr("shutil.which", lambda exe, path=None: f"/usr/bin/{exe}")
    descr = {**MPI, "cpu_processes": 3, "cpu_threads": 2, "environment": {"A": "1"}}
    env = {"A": "1", "OMP_NUM_THREADS": "2", "SLURM_JOB_ID": "7"}
    cmd = MPIRun({"flavor": "openmpi"}).command(ARGV, descr, TWO_NODES, env, tmp_path)
    assert cmd[:5] == ["mpirun", "-np", "3", "--host", "n1:2,n2:1"]
    assert "--oversubscribe" in cmd and ["-x", "A"] == cmd[cmd.index("A") - 1:cmd.index("A") + 1]
    assert ("--allow-run-as-root" in cmd) == (os.geteuid() == 0)
    assert env["SLURM_OVERLAP"] == "1" and cmd[-2:] == ARGV


def test_mpiexec_of_mpich_uses_hosts(tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda exe, path=None: f"/usr/bin/{exe}")
    method = make_launch_method("MPIEXEC", {"flavor": "mpich"})
    cmd = method.command(ARGV, MPI, TWO_NODES, {}, tmp_path)
    assert cmd == ["mpiexec", "-np", "6", "-hosts", "n1:4,n2:2", *ARGV]


def test_mpirun_missing_fails_the_unit_with_the_reason(tmp_path):
    method = MPIRun({"executable": "no-such-mpirun", "flavor": "openmpi"})
    with pytest.raises(LaunchError, match="'no-such-mpirun' is not on the PATH"):
        method.command(ARGV, MPI, TWO_NODES, {"PATH": "/nonexistent"}, tmp_path)
