"""Pilots on a real Slurm: sbatch through Parsl's SlurmProvider, srun and mpirun
launches, MPI across fake nodes, scancel, two pilots with backfilling, GPU slots.

The cluster (conftest.py) has two fake nodes n1, n2 with 4 CPUs each; a pilot of
4 cores is one node, of 8 cores both.
"""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

import rp_executor as rp

pytestmark = pytest.mark.timeout(240)

# two fake nodes share one host: Open MPI's shared-memory transport between them
# crashes, TCP works (shared/reference/slurm.md, pitfall 19)
MPI_ENV = {"OMPI_MCA_btl": "self,tcp"}


def start_pilot(session, cores, resource="slurm.localhost", **kw):
    pmgr = rp.PilotManager(session)
    pilot = pmgr.submit_pilots(rp.ComputePilotDescription(
        resource=resource, cores=cores, runtime=15, **kw))
    return pilot


def active(pilot, timeout=90):
    state = pilot.wait(rp.PMGR_ACTIVE, timeout=timeout)
    assert state == rp.PMGR_ACTIVE, (state, pilot.log, pilot.stderr)
    return pilot


def shell(cmd, **kw):
    # arguments are shell text (RP's semantics): quote the script as one word
    return rp.ComputeUnitDescription(executable="/bin/bash",
                                     arguments=["-c", shlex.quote(cmd)], **kw)


def job_state(job_id):
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True,
                         text=True, timeout=30).stdout
    return next((w.split("=", 1)[1] for w in out.split() if w.startswith("JobState=")), None)


def intervals(unit):
    """(start, end) of a unit's execution, both stamped by the agent: it frees a
    unit's slots and places the next units in one loop iteration, with one time."""
    times = dict(unit.state_history)
    return times[rp.EXECUTING], times[rp.AGENT_STAGING_OUTPUT_PENDING]


def test_sbatch_pilot_runs_serial_mpi_and_mpi4py_units(slurm_cluster, slurm_session):
    pilot = active(start_pilot(slurm_session, cores=4))
    assert job_state(pilot.job_id) == "RUNNING"
    assert [n["name"] for n in pilot.resource_details["nodes"]] == ["n1"]
    umgr = rp.UnitManager(slurm_session)
    umgr.add_pilots(pilot)
    serial = umgr.submit_units([shell(f"echo serial {i} on $SLURMD_NODENAME job $SLURM_JOB_ID")
                                for i in range(4)])
    mpi = umgr.submit_units(rp.ComputeUnitDescription(
        executable=slurm_cluster.hello, cpu_processes=2, cpu_process_type=rp.MPI,
        environment=MPI_ENV))
    py = umgr.submit_units(rp.ComputeUnitDescription(
        executable=sys.executable, arguments=[slurm_cluster.hello_py], cpu_processes=2,
        cpu_process_type=rp.MPI, environment=MPI_ENV))
    units = [*serial, mpi, py]
    assert umgr.wait_units(timeout=120) == [rp.DONE] * 6, [(u.uid, u.stderr) for u in units]
    for i, u in enumerate(serial):
        assert u.stdout.strip() == f"serial {i} on n1 job {pilot.job_id}"
    assert sorted(mpi.stdout.split("\n")[:2]) == ["rank 0 of 2 sum=3 node=n1",
                                                  "rank 1 of 2 sum=3 node=n1"], mpi.stdout
    assert sorted(py.stdout.strip().splitlines()) == ["mpi4py rank 0 of 2 sum=3 node=n1",
                                                      "mpi4py rank 1 of 2 sum=3 node=n1"]


def test_mpi_unit_runs_through_mpirun(slurm_cluster, slurm_session):
    pilot = active(start_pilot(slurm_session, cores=4, resource="slurm.mpirun"))
    umgr = rp.UnitManager(slurm_session)
    umgr.add_pilots(pilot)
    mpi = umgr.submit_units(rp.ComputeUnitDescription(
        executable=slurm_cluster.hello, cpu_processes=2, cpu_process_type=rp.MPI,
        environment=MPI_ENV))
    py = umgr.submit_units(rp.ComputeUnitDescription(
        executable=sys.executable, arguments=[slurm_cluster.hello_py], cpu_processes=2,
        cpu_process_type=rp.MPI, environment=MPI_ENV, cpu_threads=2))
    assert umgr.wait_units(timeout=120) == [rp.DONE] * 2, (mpi.stderr, py.stderr)
    assert sorted(mpi.stdout.strip().splitlines()) == ["rank 0 of 2 sum=3 node=n1",
                                                       "rank 1 of 2 sum=3 node=n1"]
    # 2 ranks x 2 threads: the pilot's 4 cores hold one such unit, on n1
    assert "mpi4py rank 1 of 2 sum=3" in py.stdout


def test_two_node_pilot_places_units_on_both_nodes_and_mpi_spans_them(slurm_cluster,
                                                                      slurm_session):
    pilot = active(start_pilot(slurm_session, cores=8))
    assert [n["name"] for n in pilot.resource_details["nodes"]] == ["n1", "n2"]
    assert pilot.resource_details["cores"] == 8
    umgr = rp.UnitManager(slurm_session)
    umgr.add_pilots(pilot)
    serial = umgr.submit_units([shell("sleep 1; echo $SLURMD_NODENAME $OMP_NUM_THREADS",
                                      cpu_threads=2) for _ in range(4)])
    assert umgr.wait_units(timeout=120) == [rp.DONE] * 4, [u.stderr for u in serial]
    # 2 cores each: two units fill n1, the next two go to n2, all at the same time
    assert sorted(u.stdout.strip() for u in serial) == ["n1 2", "n1 2", "n2 2", "n2 2"]
    mpi = umgr.submit_units(rp.ComputeUnitDescription(
        executable=slurm_cluster.hello, cpu_processes=6, cpu_process_type=rp.MPI,
        environment=MPI_ENV))
    assert mpi.wait(timeout=120) == rp.DONE, mpi.stderr
    lines = sorted(mpi.stdout.strip().splitlines())
    assert len(lines) == 6 and all("of 6 sum=21" in line for line in lines), mpi.stdout
    assert sum("node=n1" in line for line in lines) == 4, lines
    assert sum("node=n2" in line for line in lines) == 2, lines


def test_scancel_fails_the_pilot_and_reroutes_what_can_be_rerouted(slurm_cluster,
                                                                   slurm_session):
    doomed = active(start_pilot(slurm_session, cores=4))
    umgr = rp.UnitManager(slurm_session)
    umgr.add_pilots(doomed)
    running = umgr.submit_units(shell("sleep 120", cpu_processes=2))
    restartable = umgr.submit_units(shell("sleep 120 & wait; echo again",
                                          cpu_processes=2, restartable=True))
    queued = umgr.submit_units(shell("echo rerouted to $SLURMD_NODENAME", cpu_processes=2))
    umgr.wait_units([running.uid, restartable.uid], state=rp.EXECUTING, timeout=60)
    assert queued.state == rp.AGENT_SCHEDULING_PENDING   # no room: waits in the agent

    spare = active(start_pilot(slurm_session, cores=4))
    umgr.add_pilots(spare)
    subprocess.run(["scancel", doomed.job_id], check=True, timeout=30)
    assert doomed.wait(timeout=60) == rp.FAILED, doomed.log
    assert running.wait(timeout=30) == rp.FAILED
    assert doomed.uid in running.stderr, running.stderr
    assert restartable.wait(timeout=30) == rp.FAILED
    # the never-started unit moved to the spare pilot; the restartable one ran again there
    assert queued.wait(timeout=60) == rp.DONE, queued.stderr
    assert queued.pilot == spare.uid
    assert queued.stdout.strip() == "rerouted to n2"
    copies = [u for u in umgr.get_units() if u not in (running, restartable, queued)]
    assert len(copies) == 1 and copies[0].pilot == spare.uid
    umgr.cancel_units(copies[0].uid)   # it would sleep 120 s
    assert copies[0].state == rp.CANCELED


def test_backfilling_binds_units_to_whichever_pilot_has_room(slurm_cluster, slurm_session):
    umgr = rp.UnitManager(slurm_session, scheduler=rp.SCHEDULER_BACKFILLING)
    first = start_pilot(slurm_session, cores=4)
    umgr.add_pilots(first)
    early = umgr.submit_units(shell("sleep 0.5; echo $SLURMD_NODENAME"))
    assert early.pilot is None       # late binding: no pilot is active yet
    active(first)
    assert early.wait(timeout=60) == rp.DONE and early.pilot == first.uid

    second = active(start_pilot(slurm_session, cores=4))
    umgr.add_pilots(second)
    units = umgr.submit_units([shell("sleep 3; echo $SLURMD_NODENAME") for _ in range(10)])
    bound = [u.pilot for u in units]
    # 4 free cores on each pilot: 8 units are bound at once, 4 and 4; 2 wait here
    assert bound.count(first.uid) == 4 and bound.count(second.uid) == 4, bound
    assert bound.count(None) == 2 and all(u.state == rp.UMGR_SCHEDULING_PENDING
                                          for u in units if u.pilot is None)
    assert umgr.wait_units([u.uid for u in units], timeout=120) == [rp.DONE] * 10, \
        [u.stderr for u in units]
    late = [u for u, p in zip(units, bound) if p is None]
    first_end = min(intervals(u)[1] for u, p in zip(units, bound) if p is not None)
    for u in late:   # bound when a unit ended and freed a core
        assert dict(u.state_history)[rp.AGENT_STAGING_INPUT_PENDING] >= first_end - 0.01
    for pilot, node in ((first, "n1"), (second, "n2")):
        mine = [u for u in units if u.pilot == pilot.uid]
        assert all(u.stdout.strip() == node for u in mine)
        spans = [intervals(u) for u in mine]
        for t, _ in spans:   # never more units running on a pilot than it has cores
            assert sum(s <= t < e for s, e in spans) <= 4


def test_gpu_slots_are_assigned_without_overlap(slurm_cluster, slurm_session):
    pilot = active(start_pilot(slurm_session, cores=4, gpus=4))
    assert pilot.resource_details["gpus"] == 4
    umgr = rp.UnitManager(slurm_session)
    umgr.add_pilots(pilot)
    units = umgr.submit_units(
        [shell("echo $CUDA_VISIBLE_DEVICES; sleep 1", gpu_processes=1) for _ in range(4)]
        + [shell("echo $CUDA_VISIBLE_DEVICES; sleep 1", gpu_processes=2) for _ in range(2)])
    assert umgr.wait_units(timeout=120) == [rp.DONE] * 6, [u.stderr for u in units]
    gpus = {u.uid: set(u.stdout.strip().split(",")) for u in units}
    for u, n in zip(units, [1, 1, 1, 1, 2, 2]):
        assert len(gpus[u.uid]) == n and gpus[u.uid] <= {"0", "1", "2", "3"}, gpus
    for a in units:
        for b in units:
            sa, sb = intervals(a), intervals(b)
            if a is not b and sa[0] < sb[1] and sb[0] < sa[1]:
                assert not gpus[a.uid] & gpus[b.uid], (a.uid, b.uid, gpus)
