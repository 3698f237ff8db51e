"""DaskCluster on local pilots, with real distributed: a Client over the pilots'
workers, dask.array, scatter, scale up and down, adapt, a pilot killed under work,
workers retiring before their pilot ends, workers beside the user's units.

Every cluster's session is checked for leftovers at the end: no worker, agent or
block of it may survive the cluster's (or the session's) close.
"""

from __future__ import annotations

import os
import signal
import stat
import time

import psutil
import pytest

import rp_executor as rp
from rp_executor._core.providers import local_processes
from support import assert_no_session_processes, wait_for

import distributed  # noqa: E402 - a core dependency: a missing install must fail, not skip
from distributed import Client

pytestmark = pytest.mark.timeout(240)

# tests start several clusters: no dashboard (bokeh is slow to import) unless asked
QUIET = {"dashboard_address": "127.0.0.1:0", "dashboard": False}


def _numpy():
    try:
        import numpy
    except ImportError:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail("numpy is needed for dask.array (install the test extras)")
        pytest.skip("numpy is not installed: dask.array needs it")
    return numpy


def inc(x):
    return x + 1


def slow_inc(x, delay=0.1):
    time.sleep(delay)
    return x + 1


def worker_names(client):
    return sorted(w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values())


def workers_of(client, pilot_job):
    """Addresses of the workers of job ``pilot_job`` (``dask.0000-1``)."""
    return [a for a, w in client.scheduler_info(n_workers=-1)["workers"].items()
            if w["name"].rsplit("-", 1)[0] == pilot_job]


@pytest.fixture
def session(tmp_path, monkeypatch):
    """A session in a fresh directory; closed, and checked for leftovers."""
    monkeypatch.chdir(tmp_path)
    s = rp.Session()
    try:
        yield s
    finally:
        s.close()
    assert_no_session_processes(s.uid)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One cluster of one 2-core pilot (2 workers of 1 thread) and a client, for the
    tests that only use it; it owns its session, which is checked at the end."""
    tmp = tmp_path_factory.mktemp("dask")
    old = os.getcwd()
    os.chdir(tmp)
    try:
        cluster = rp.DaskCluster(cores=2, processes=2, threads=1, runtime=10)
        client = Client(cluster)
        try:
            client.wait_for_workers(2, timeout=60)
            yield cluster, client
        finally:
            client.close()
            cluster.close()
    finally:
        os.chdir(old)
    assert_no_session_processes(cluster.session.uid)


def test_client_submits_maps_gathers_and_scatters_over_tls_on_the_pilots_workers(shared):
    cluster, client = shared
    assert cluster.scheduler_address.startswith("tls://")
    assert worker_names(client) == [f"{cluster.name}-0-0", f"{cluster.name}-0-1"]
    assert client.submit(inc, 1).result(timeout=30) == 2
    assert client.gather(client.map(inc, range(100))) == list(range(1, 101))
    data = client.scatter(list(range(1000)))
    assert client.submit(sum, data).result(timeout=30) == sum(range(1000))
    both = client.scatter([10, 20], broadcast=True)
    assert client.gather(client.map(inc, both)) == [11, 21]
    assert cluster.get_client() is client
    # the workers are units of the pilot, in the journal, running
    units = cluster.unit_manager.get_units()
    assert sorted(u.name for u in units) == worker_names(client)
    assert {u.state for u in units} == {rp.EXECUTING}
    assert {u.pilot for u in units} == {cluster.pilots[0].uid}
    journal = cluster.session.journal
    journal.flush()
    seen = {uid for kind, uid, state, _ in journal.transitions()
            if kind == "unit" and state == rp.EXECUTING}
    assert {u.uid for u in units} <= seen


def test_worker_credentials_are_files_only_the_owner_reads(shared):
    cluster, _client = shared
    tls_dir = os.path.join(cluster.session.path, "dask", cluster.name)
    names = sorted(os.listdir(tls_dir))
    assert names == ["ca.pem", "worker.key", "worker.pem"]
    assert stat.S_IMODE(os.stat(tls_dir).st_mode) == 0o700
    for name in names:
        assert stat.S_IMODE(os.stat(os.path.join(tls_dir, name)).st_mode) == 0o600
    unit = cluster.unit_manager.get_units()[0]
    args = unit.description["arguments"]
    assert args[args.index("--tls-key") + 1] == os.path.join(tls_dir, "worker.key")
    assert not any("BEGIN" in str(a) for a in args)   # paths, never key material


def test_a_dask_array_reduction_gives_numpys_result(shared):
    np = _numpy()
    import dask.array as da
    _cluster, client = shared
    data = np.arange(1_000_000, dtype="float64").reshape(1000, 1000)
    x = da.from_array(data, chunks=(125, 125))
    assert client.compute((x * 2).sum()).result(timeout=120) == (data * 2).sum()
    y = da.random.RandomState(42).random_sample((2000, 2000), chunks=(250, 250))
    assert client.compute(y.mean(axis=0)).result(timeout=120) == \
        pytest.approx(y.mean(axis=0).compute(scheduler="sync"))


def test_the_dashboard_is_served(tmp_path, monkeypatch):
    import urllib.request
    monkeypatch.chdir(tmp_path)
    with rp.DaskCluster(cores=1, jobs=0, scheduler_options={"dashboard_address": "127.0.0.1:0"}) \
            as cluster:
        link = cluster.dashboard_link
        assert link.startswith("http://127.0.0.1:") and link.endswith("/status"), link
        with urllib.request.urlopen(link, timeout=30) as reply:
            assert reply.status == 200
        assert cluster.pilots == []   # jobs=0 starts no pilot
        session = cluster.session
    assert session.closed                # the cluster made it, and closed it
    assert not os.path.exists(os.path.join(session.path, "dask", cluster.name))
    assert_no_session_processes(session.uid)


def test_scale_adds_and_removes_pilots_and_moves_data_off_retired_workers(session):
    with rp.DaskCluster(cores=1, runtime=10, session=session,
                        scheduler_options=QUIET) as cluster, Client(cluster) as client:
        client.wait_for_workers(1, timeout=60)
        first = cluster.pilots[0]
        cluster.scale(jobs=2)
        client.wait_for_workers(2, timeout=60)
        assert len({p.uid for p in cluster.pilots}) == 2
        second = next(p for p in cluster.pilots if p is not first)
        assert second.state == rp.PMGR_ACTIVE
        # data only the second pilot's worker holds: scattered, so not recomputable
        young = workers_of(client, f"{cluster.name}-1")
        data = client.scatter(list(range(500)), workers=young)
        cluster.scale(jobs=1)            # the youngest job goes; its data moves first
        assert second.wait(timeout=60) == rp.CANCELED, second.log
        wait_for(lambda: len(client.scheduler_info()["workers"]) == 1, 30, "one worker")
        assert client.gather(data) == list(range(500))
        assert first.state == rp.PMGR_ACTIVE
        assert {u.state for u in cluster.unit_manager.get_units()
                if u.pilot == second.uid} <= {rp.DONE, rp.CANCELED}
        cluster.scale(2)                 # workers: one process per pilot, two pilots
        client.wait_for_workers(2, timeout=60)
        assert len(cluster.worker_spec) == 2
        cluster.scale(0)
        wait_for(lambda: not cluster.pilots and not client.scheduler_info()["workers"],
                 60, "no pilot left")
        owned = session.get_pilot_managers()[0].get_pilots()
        assert len(owned) == 3 and all(p.state == rp.CANCELED for p in owned), \
            [(p.uid, p.state) for p in owned]


def test_adapt_starts_pilots_for_work_and_ends_them_when_idle(session):
    with rp.DaskCluster(cores=1, runtime=10, jobs=0, session=session,
                        scheduler_options=QUIET) as cluster, Client(cluster) as client:
        adaptive = cluster.adapt(minimum_jobs=0, maximum_jobs=2, interval="200ms",
                                 wait_count=5)
        assert isinstance(adaptive, distributed.deploy.Adaptive)
        futures = client.map(slow_inc, range(40), delay=0.25)
        assert client.gather(futures, errors="raise") == list(range(1, 41))
        pmgr = session.get_pilot_managers()[0]
        assert 1 <= len(pmgr.get_pilots()) <= 2
        del futures
        wait_for(lambda: not cluster.worker_spec and
                 all(p.is_final for p in pmgr.get_pilots()), 90, "adapt to end the pilots")
        assert all(p.state == rp.CANCELED for p in pmgr.get_pilots())


def test_a_pilot_killed_under_work_is_recomputed_on_the_remaining_workers(session):
    with rp.DaskCluster(cores=1, runtime=10, jobs=2, session=session,
                        scheduler_options=QUIET) as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        doomed = next(j for j in cluster.workers.values()
                      if j.name.endswith("-1")).pilot
        parts = client.map(slow_inc, range(60), delay=0.1)
        total = client.submit(sum, parts)
        doomed_worker = workers_of(client, f"{cluster.name}-1")[0]

        def held_by_doomed():
            return [k for k, where in client.who_has(parts).items()
                    if tuple(where) == (doomed_worker,)]
        # results only the doomed worker holds: they must be computed again
        wait_for(lambda: len(held_by_doomed()) >= 3, 60, "results on the doomed worker")
        victims = local_processes(session.uid, doomed.uid, doomed.pilot_sandbox)
        assert len(victims) >= 2              # the agent and the worker, at least
        for proc in victims:                  # the pilot dies at once, all of it
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        assert total.result(timeout=120) == sum(range(1, 61))
        assert doomed.wait(timeout=60) == rp.FAILED, doomed.log
        lost = [u for u in cluster.unit_manager.get_units() if u.pilot == doomed.uid]
        assert [u.state for u in lost] == [rp.FAILED]
        wait_for(lambda: len(cluster.worker_spec) == 1, 30, "the dead job to be dropped")
        assert worker_names(client) == [f"{cluster.name}-0-0"]


def test_workers_retire_before_their_pilot_ends_and_their_data_moves(session):
    pmgr = rp.PilotManager(session)
    short, long_ = pmgr.submit_pilots([
        rp.ComputePilotDescription(resource="local.localhost", cores=1, runtime=1),
        rp.ComputePilotDescription(resource="local.localhost", cores=1, runtime=10)])
    for p in (short, long_):
        assert p.wait(rp.PMGR_ACTIVE, timeout=60) == rp.PMGR_ACTIVE, p.log
    # 60 s of runtime, retiring 30 s before the end: a lifetime of about 20 +- 6 s
    with rp.DaskCluster(pilots=[short, long_], session=session, lifetime_margin=30,
                        scheduler_options=QUIET) as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        unit = next(u for u in cluster.unit_manager.get_units() if u.pilot == short.uid)
        args = unit.description["arguments"]
        assert float(args[args.index("--lifetime") + 1].rstrip("s")) <= 24
        assert args[args.index("--lifetime-stagger") + 1] == "6s"
        on_short = [a for a, w in client.scheduler_info()["workers"].items()
                    if w["name"] == unit.name]
        data = client.scatter(list(range(100)), workers=on_short)
        assert unit.wait(timeout=60) == rp.DONE, unit.stderr     # retired by itself
        assert "worker-lifetime-reached" in unit.stderr
        assert short.state == rp.PMGR_ACTIVE       # the user's pilot goes on
        assert client.gather(data) == list(range(100))   # moved, not lost
        assert list(client.who_has(data).values())[0] != tuple(on_short)
        # a pilot this close to its end takes no new workers
        cluster.scale(jobs=2)
        time.sleep(1)
        assert [j.pilot for j in cluster.workers.values()] == [long_]
    assert long_.state == rp.PMGR_ACTIVE and short.state in (rp.PMGR_ACTIVE, rp.DONE)


def test_workers_take_their_cores_of_a_users_pilot_beside_its_units(session):
    pmgr = rp.PilotManager(session)
    pilot = pmgr.submit_pilots(rp.ComputePilotDescription(
        resource="local.localhost", cores=2, runtime=10))
    umgr = rp.UnitManager(session)
    umgr.add_pilots(pilot)
    with rp.DaskCluster(pilots=[pilot], processes=1, threads=1,
                        scheduler_options=QUIET) as cluster, Client(cluster) as client:
        assert cluster.session is session
        client.wait_for_workers(1, timeout=60)
        # one core for the worker, one for the user's units, one after the other
        units = umgr.submit_units([rp.ComputeUnitDescription(
            executable="/bin/sh", arguments=["-c", "echo $RP_PILOT_ID"])
            for _ in range(3)])
        assert umgr.wait_units(timeout=60) == [rp.DONE] * 3
        assert {u.stdout.strip() for u in units} == {pilot.uid}
        assert client.submit(inc, 41).result(timeout=30) == 42
        worker = cluster.unit_manager.get_units()[0]
    assert worker.state in (rp.CANCELED, rp.DONE)
    assert pilot.state == rp.PMGR_ACTIVE          # never the user's pilot
    # by default the workers take all of a pilot's cores
    with rp.DaskCluster(pilots=[pilot], scheduler_options=QUIET) as cluster:
        assert [len(s["group"]) for s in cluster.worker_spec.values()] == [2]
    assert pilot.state == rp.PMGR_ACTIVE


def test_workers_under_a_nanny_come_back_after_a_restart(session):
    with rp.DaskCluster(cores=1, nanny=True, session=session,
                        scheduler_options=QUIET) as cluster, Client(cluster) as client:
        client.wait_for_workers(1, timeout=60)
        assert "--nanny" in cluster.unit_manager.get_units()[0].description["arguments"]
        assert client.submit(inc, 1).result(timeout=30) == 2
        client.restart(timeout=60)      # the nanny starts its worker again, same unit
        assert worker_names(client) == [f"{cluster.name}-0-0"]
        assert client.submit(inc, 2).result(timeout=30) == 3
        assert [u.state for u in cluster.unit_manager.get_units()] == [rp.EXECUTING]


def test_closing_the_session_closes_the_cluster(session):
    cluster = rp.DaskCluster(cores=1, session=session, scheduler_options=QUIET)
    client = Client(cluster)
    client.wait_for_workers(1, timeout=60)
    pilot = cluster.pilots[0]
    session.close()
    assert cluster.status == distributed.core.Status.closed
    assert pilot.state == rp.CANCELED
    client.close()
    assert_no_session_processes(session.uid)


def test_bad_arguments_are_refused_and_leave_nothing_running(session):
    with pytest.raises(rp.BadParameter, match="queu"):
        rp.DaskCluster(cores=1, session=session, queu="debug")
    with pytest.raises(rp.BadParameter, match="processes × threads"):
        rp.DaskCluster(cores=2, processes=2, threads=2, session=session)
    with pytest.raises(rp.BadParameter, match="oversubscribe"):
        rp.DaskCluster(cores=1000, session=session, scheduler_options=QUIET)
    with pytest.raises(rp.BadParameter, match="security"):
        rp.DaskCluster(cores=1, session=session, security="yes")
    assert not session.closed
    assert all(p.is_final for m in session.get_pilot_managers() for p in m.get_pilots())
