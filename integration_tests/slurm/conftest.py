"""A real single-host Slurm for the tests in this folder, started from nothing.

``slurm_cluster`` (session scope) runs ``start_slurm.sh``: it apt-installs munge,
Slurm 22.05 and Open MPI when they are missing, starts munged, slurmctld and one
slurmd per fake node (n1, n2: 4 CPUs each, all on this host), and waits until the
nodes are idle; at the end of the test session ``stop_slurm.sh --purge`` stops every
daemon it started (by pid file) and removes its state. In CI (``CI=true``) a cluster
that cannot be started fails the tests; elsewhere they are skipped, with the reason,
when not root or without apt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import rp_executor as rp
from rp_executor.resource_config import ResourceConfig

HERE = Path(__file__).parent
STATE_DIR = "/tmp/rp-executor-slurm"
NODES = ("n1", "n2")
CPUS = 4
START_TIMEOUT = 900       # seconds; about 10 s with the packages, ~1 min installing them
STOP_TIMEOUT = 120

HELLO_C = r"""
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
  int r, n, v, s = 0; MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &r); MPI_Comm_size(MPI_COMM_WORLD, &n); v = r + 1;
  MPI_Allreduce(&v, &s, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  const char *node = getenv("SLURMD_NODENAME");
  printf("rank %d of %d sum=%d node=%s\n", r, n, s, node ? node : "?");
  MPI_Finalize(); return 0; }
"""

HELLO_PY = """\
import os
from mpi4py import MPI
comm = MPI.COMM_WORLD
total = comm.allreduce(comm.rank + 1)
print(f"mpi4py rank {comm.rank} of {comm.size} sum={total} "
      f"node={os.environ.get('SLURMD_NODENAME')}", flush=True)
"""


@dataclass
class SlurmCluster:
    """What the tests need to know about the running cluster."""

    nodes: tuple[str, ...]
    cpus_per_node: int
    hello: str            # a compiled 2+-rank MPI hello (C, Open MPI)
    hello_py: str         # the same with mpi4py
    start_seconds: float


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "the Slurm daemons must run as root"
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        return "neither apt-get nor an installed Slurm is available"
    return None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Slurm integration tests cannot run in CI: {reason}")
    pytest.skip(f"no Slurm for the integration tests: {reason}")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """Start Slurm (and install it if needed); stop it when the session ends."""
    reason = _why_not()
    if reason:
        _unavailable(reason)
    env = {**os.environ, "SLURM_CI_DIR": STATE_DIR, "SLURM_NODES": str(len(NODES)),
           "SLURM_CPUS": str(CPUS)}
    start = time.monotonic()
    try:
        proc = subprocess.run(["bash", str(HERE / "start_slurm.sh")], env=env,
                              capture_output=True, text=True, timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        _stop(env)
        _unavailable(f"start_slurm.sh did not finish within {START_TIMEOUT} s: "
                     f"{(exc.stdout or '')[-2000:]}")
    took = time.monotonic() - start
    if proc.returncode != 0:
        _stop(env)
        _unavailable(f"start_slurm.sh failed (exit {proc.returncode}):\n"
                     f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    try:
        import mpi4py  # noqa: F401  (the project's test extra installs it)
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "mpi4py"],
                       check=True, timeout=600)
    work = tmp_path_factory.mktemp("mpi")
    (work / "hello.c").write_text(HELLO_C)
    subprocess.run(["mpicc", "-o", str(work / "hello"), str(work / "hello.c")], check=True,
                   timeout=120)
    (work / "hello_mpi4py.py").write_text(HELLO_PY)
    try:
        yield SlurmCluster(NODES, CPUS, str(work / "hello"), str(work / "hello_mpi4py.py"),
                           took)
    finally:
        _stop(env)


def _stop(env: dict) -> None:
    subprocess.run(["bash", str(HERE / "stop_slurm.sh"), "--purge"], env=env,
                   capture_output=True, text=True, timeout=STOP_TIMEOUT, check=False)


@pytest.fixture
def slurm_session(slurm_cluster, tmp_path, monkeypatch):
    """A session whose ``slurm.localhost`` knows the cluster's node size.

    The agents connect back to ``bind_host`` (127.0.0.1 works: the fake nodes are
    this host). Every pilot is canceled, and its job gone, at the end.
    """
    monkeypatch.chdir(tmp_path)
    session = rp.Session(cfg={"bind_host": os.environ.get("RP_TEST_BIND_HOST", "127.0.0.1")})
    base = session._resources.get_config("slurm.localhost")
    session.add_resource_config(base.merged({"cores_per_node": slurm_cluster.cpus_per_node}))
    session.add_resource_config(ResourceConfig("slurm.mpirun", {
        **base.merged({"cores_per_node": slurm_cluster.cpus_per_node}).as_dict(),
        "mpi_launch_method": "MPIRUN"}))
    try:
        yield session
    finally:
        jobs = [p.job_id for p in session._pilots.values() if p.job_id]
        session.close()
        _wait_jobs_gone(jobs, 30)


def _wait_jobs_gone(jobs: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while jobs and time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                             timeout=30).stdout.split()
        left = [j for j in jobs if j in out]
        if not left:
            return
        time.sleep(0.2)
    if jobs:
        out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                             timeout=30).stdout.split()
        left = [j for j in jobs if j in out]
        if left:
            subprocess.run(["scancel", *left], timeout=30, check=False)
            pytest.fail(f"Slurm jobs {left} of the session outlived it (canceled now)")
