"""The rules of a DaskCluster's workers, without processes: how a pilot's cores are
split, how long a worker lives, what its unit runs, where its TLS files are."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from rp_executor.dask import tls
from rp_executor.dask.cluster import _check_fields
from rp_executor.dask.pilots import client_path
from rp_executor.dask.workers import (Layout, WorkerTemplate, default_margin, job_of,
                                      jobs_for, layout, lifetime, worker_arguments,
                                      worker_description, worth_starting)
from rp_executor.exceptions import BadParameter


def test_layout_splits_cores_as_distributed_does_unless_told():
    assert layout(2) == Layout(2, 1)
    assert layout(4) == Layout(4, 1)
    assert layout(32) == Layout(8, 4)
    assert layout(8, processes=2) == Layout(2, 4)
    assert layout(8, threads=2) == Layout(4, 2)
    assert layout(8, processes=2, threads=2).cores == 4      # fewer than the pilot's


def test_layout_shares_gpus_and_memory_evenly():
    shape = layout(4, processes=2, gpus=4, memory="4GB")
    assert (shape.gpus, shape.memory) == (2, 2_000_000_000)
    assert layout(2, memory=1000).memory == 500
    assert layout(2).memory is None                          # dask's "auto"


@pytest.mark.parametrize("kwargs, field", [
    ({"cores": 2, "processes": 2, "threads": 2}, "processes"),
    ({"cores": 2, "processes": 0}, "processes"),
    ({"cores": 2, "threads": 1.5}, "threads"),
    ({"cores": 0}, "cores"),
    ({"cores": 4, "processes": 4, "gpus": 2}, "gpus"),
    ({"cores": 2, "memory": "lots"}, "memory"),
])
def test_layout_refuses_what_does_not_fit_naming_the_field(kwargs, field):
    with pytest.raises(BadParameter) as err:
        layout(**kwargs)
    assert err.value.attribute == field
    assert "DaskCluster" in str(err.value)


def test_workers_retire_a_margin_before_the_pilot_ends_staggered():
    assert default_margin(60) == 30            # at least 30 s
    assert default_margin(3600) == 300         # at most 5 minutes
    assert default_margin(1200) == 120         # a tenth between
    life, stagger = lifetime(3600, 300)
    assert stagger == 60 and life + stagger == 3600 - 300   # the latest leaves in time
    assert lifetime(20, 30) == (1.0, 0.0)      # no time left: retire at once
    assert worth_starting(3600, 300) and not worth_starting(40, 30)


def test_jobs_for_workers_and_the_job_of_a_worker():
    assert [jobs_for(n, 2) for n in (0, 1, 2, 3)] == [0, 1, 1, 2]
    assert job_of("dask.0003-12-1") == "dask.0003-12"

    class State:
        name = "dask.0000-0-0"
    assert job_of(State()) == "dask.0000-0"


def test_a_worker_unit_runs_dask_worker_with_its_files_by_path():
    template = WorkerTemplate(python="/opt/py", tls={"ca_file": "/s/ca.pem",
                                                      "cert": "/s/worker.pem",
                                                      "key": "/s/worker.key"},
                              extra_args=["--interface", "ib0"],
                              environment={"A": "1"}, pre_exec=["module load x"])
    shape = Layout(2, 3, gpus=1, memory=10**9)
    d = worker_description(template, "tls://10.0.0.1:8786", "dask.0000-0-1", shape,
                           "pilot.0007", (3300.0, 60.0))
    args = d.arguments
    assert d.executable == "/opt/py" and args[:3] == ["-m", "distributed.cli.dask_worker",
                                                      "tls://10.0.0.1:8786"]
    assert args[args.index("--name") + 1] == "dask.0000-0-1"
    assert args[args.index("--nthreads") + 1] == "3"
    assert args[args.index("--memory-limit") + 1] == "1000000000"
    assert args[args.index("--lifetime") + 1] == "3300s"
    assert args[args.index("--lifetime-stagger") + 1] == "60s"
    assert args[args.index("--resources") + 1] == "GPU=1"
    assert args[args.index("--tls-key") + 1] == "/s/worker.key"
    assert "--no-nanny" in args and args[-2:] == ["--interface", "ib0"]
    assert (d.cpu_processes, d.cpu_threads, d.gpu_processes) == (1, 3, 1)
    assert (d.pilot, d.name, d.environment, d.pre_exec) == \
        ("pilot.0007", "dask.0000-0-1", {"A": "1"}, ["module load x"])
    d.validate()
    plain = worker_arguments(WorkerTemplate(python="p", nanny=True), "tcp://h:1", "w",
                             Layout(1, 1), None)
    assert "--nanny" in plain and "--lifetime" not in plain and "--tls-ca-file" not in plain
    assert plain[plain.index("--memory-limit") + 1] == "auto"


def test_temporary_credentials_go_to_owner_only_files_for_the_workers(tmp_path):
    security = tls.security_of(True)
    assert security.require_encryption
    assert "BEGIN" in security.tls_worker_key          # in memory for the client side
    paths = tls.worker_files(security, tmp_path / "dask" / "c")
    assert sorted(os.path.basename(p) for p in paths.values()) == \
        ["ca.pem", "worker.key", "worker.pem"]
    assert stat.S_IMODE(os.stat(tmp_path / "dask" / "c").st_mode) == 0o700
    for path in paths.values():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert open(paths["key"]).read() == security.tls_worker_key
    # a Security made of files keeps its files
    from distributed.security import Security
    files = Security(tls_ca_file=paths["ca_file"], tls_worker_cert=paths["cert"],
                     tls_worker_key=paths["key"], require_encryption=True)
    assert tls.worker_files(tls.security_of(files), tmp_path / "unused") == paths
    assert not (tmp_path / "unused").exists()
    tls.remove_files(tmp_path / "dask" / "c")
    assert not (tmp_path / "dask" / "c").exists()
    assert tls.security_of(False) is None


def test_security_must_be_a_flag_or_a_complete_security():
    from distributed.security import Security
    with pytest.raises(BadParameter, match="security must be"):
        tls.security_of("yes")
    with pytest.raises(BadParameter, match="worker key"):
        tls.security_of(Security(tls_ca_file="ca.pem", tls_worker_cert="w.pem"))


def test_workers_here_import_what_the_client_can_but_not_the_interpreters_own(
        tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", ["", str(tmp_path), *sys.path])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    entries = client_path().split(os.pathsep)
    assert entries[0] == os.path.realpath(tmp_path) and entries[-1] == "/somewhere"
    assert entries.count(os.path.realpath(tmp_path)) == 1
    assert not any(e.startswith(os.path.realpath(sys.prefix) + os.sep) for e in entries)


def test_the_cluster_takes_other_pilot_fields_and_names_the_allowed_ones():
    _check_fields({"queue": "debug", "project": "p", "oversubscribe": True})
    for bad in ("queu", "cores", "memory", "_config"):
        with pytest.raises(BadParameter, match="queue") as err:
            _check_fields({bad: 1})
        assert err.value.attribute == bad


def test_session_close_callbacks_run_first_newest_first_and_once(tmp_path):
    import rp_executor as rp
    calls = []
    session = rp.Session(base_dir=tmp_path)

    def boom():
        calls.append("boom")
        raise RuntimeError("logged, not raised")

    session.register_close_callback(lambda: calls.append(("first", session.closed)))
    session.register_close_callback(boom)
    gone = lambda: calls.append("gone")  # noqa: E731
    session.register_close_callback(gone)
    session.unregister_close_callback(gone)
    with pytest.raises(BadParameter):
        session.unregister_close_callback(gone)
    with pytest.raises(BadParameter):
        session.register_close_callback("not callable")
    session.close()
    session.close()
    assert calls == ["boom", ("first", True)]
