"""Globus staging against the emulator, through the real globus-sdk v4: units with
globus:// directives end to end, batching, every injected fault's outcome, pilot
staging, and Parsl's File staging (ThreadPoolExecutor and RPExecutor)."""

from __future__ import annotations

import os
import re
import time
import uuid

import pytest

import rp_executor as rp
from globus_emulator import GlobusEmulator
from support import assert_no_session_processes

CFG = {"globus_deadline": 3.0, "globus_timeout": 6.0, "globus_poll_interval": 0.05}


@pytest.fixture
def emu(monkeypatch):
    with GlobusEmulator() as e:
        for k, v in e.env().items():
            monkeypatch.setenv(k, v)
        yield e


@pytest.fixture
def remote(emu, tmp_path):
    """A collection standing for a data store elsewhere: (uuid, its directory)."""
    root = tmp_path / "remote"
    return emu.add_collection(root), root


@pytest.fixture
def ctx(emu, tmp_path):
    """A globus context: tokens in a 0600 file; the working directory (which holds
    the pilot sandboxes) is the collection 'cluster'."""
    cluster = emu.add_collection(tmp_path / "work")
    c = rp.Context("globus", {"client_id": "native-client", "token_file":
                              str(tmp_path / "tokens.json"),
                              "collections": {cluster: str(tmp_path / "work")}})
    c.write_tokens({"transfer.api.globus.org": emu.issue_tokens()})
    return c


@pytest.fixture
def gsession(tmp_path, monkeypatch, ctx):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    s = rp.Session(cfg=CFG)
    s.add_context(ctx)
    try:
        yield s
    finally:
        s.close()
    assert_no_session_processes(s.uid)


@pytest.fixture
def gumgr(gsession):
    pmgr = rp.PilotManager(gsession)
    pilot = pmgr.submit_pilots(rp.ComputePilotDescription(
        resource="local.localhost", cores=2, runtime=10))
    umgr = rp.UnitManager(gsession)
    umgr.add_pilots(pilot)
    return umgr


def _cud(remote_uuid, name="in.bin", out="out/result.bin", **kw):
    return rp.ComputeUnitDescription(
        executable="/bin/cp", arguments=["data.bin", "result.bin"],
        input_staging=[f"globus://{remote_uuid}/{name} > data.bin"],
        output_staging=[f"result.bin > globus://{remote_uuid}/{out}"], **kw)


def test_units_stage_through_globus_end_to_end_in_few_tasks(gumgr, emu, remote):
    rid, root = remote
    blobs = [os.urandom(10_000 + i) for i in range(6)]
    for i, b in enumerate(blobs):
        (root / f"in{i}.bin").write_bytes(b)
    units = gumgr.submit_units([_cud(rid, f"in{i}.bin", f"out/u{i}/result.bin")
                                for i in range(6)])
    states = gumgr.wait_units(timeout=60)
    assert states == [rp.DONE] * 6, [u.stderr for u in units]
    for i, b in enumerate(blobs):
        assert (root / f"out/u{i}/result.bin").read_bytes() == b
        history = [s for s, _ in units[i].state_history]
        assert rp.UMGR_STAGING_INPUT in history and rp.UMGR_STAGING_OUTPUT in history
    # the six inputs went as one task; outputs in at most one task per unit
    assert emu.count("POST /v0.10/transfer") <= 1 + 6
    first_task = next(iter(emu.tasks.values()))
    assert len(first_task["DATA"]) == 6


@pytest.mark.parametrize("route, status, code, headers", [
    ("POST /v0.10/transfer", 503, "ServiceUnavailable", {}),
    ("GET /v0.10/task/", 429, "RateLimited", {"Retry-After": "1"}),
    ("GET /v0.10/submission_id", 502, "BadGateway", {}),
])
def test_transient_faults_are_retried_and_the_unit_succeeds(gumgr, emu, remote, route,
                                                            status, code, headers):
    rid, root = remote
    (root / "in.bin").write_bytes(b"payload")
    emu.fail_next(route, status, code, "try again", times=2, headers=headers)
    u = gumgr.submit_units(_cud(rid))
    assert u.wait(timeout=60) == rp.DONE, u.stderr
    assert (root / "out/result.bin").read_bytes() == b"payload"
    assert emu.count(route) >= 3


def test_an_expired_token_is_refreshed_and_written_back(gumgr, emu, remote, ctx):
    rid, root = remote
    (root / "in.bin").write_bytes(b"payload")
    emu.expire_token(ctx.read_tokens()["transfer.api.globus.org"]["access_token"])
    u = gumgr.submit_units(_cud(rid))
    assert u.wait(timeout=60) == rp.DONE, u.stderr
    assert emu.count("AUTH POST /v2/oauth2/token") == 1
    fresh = ctx.read_tokens()["transfer.api.globus.org"]["access_token"]
    assert fresh in emu.valid_tokens
    assert os.stat(ctx.token_file).st_mode & 0o777 == 0o600


def _fails_with(umgr, cud, *words, within=30):
    start = time.monotonic()
    u = umgr.submit_units(cud)
    assert u.wait(timeout=within) == rp.FAILED, (u.state, u.stderr)
    for w in words:
        assert w in u.stderr, u.stderr
    return time.monotonic() - start, u


def test_consent_required_names_the_scope_to_consent_to(gumgr, emu, remote):
    rid, root = remote
    (root / "in.bin").write_bytes(b"x")
    emu.consent_required.add(rid)
    _, u = _fails_with(gumgr, _cud(rid), "input_staging[0]", "consent",
                       f"https://auth.globus.org/scopes/{rid}/data_access")
    assert rp.EXECUTING not in [s for s, _ in u.state_history]


def test_an_unknown_collection_fails_with_endpoint_not_found(gumgr, remote):
    _fails_with(gumgr, _cud(str(uuid.uuid4())), "404", "EndpointNotFound")


def test_a_permission_error_fails_with_the_globus_text(gumgr, emu, remote):
    rid, root = remote
    (root / "in.bin").write_bytes(b"x")
    emu.fail_next("POST /v0.10/transfer", 403, "EndpointPermissionDenied",
                  "Denied by endpoint")
    _fails_with(gumgr, _cud(rid), "403 EndpointPermissionDenied", "Denied by endpoint")


def test_a_missing_source_fails_at_the_deadline_with_the_events(gumgr, remote):
    rid, _ = remote
    took, _ = _fails_with(gumgr, _cud(rid, name="missing.bin"), "FILE_NOT_FOUND",
                          "EXPIRED", "/missing.bin")
    assert took < CFG["globus_deadline"] + 10


def test_a_slow_task_is_canceled_at_the_timeout(gumgr, emu, remote):
    rid, root = remote
    (root / "in.bin").write_bytes(b"x")
    emu.task_delay = 30
    took, _ = _fails_with(gumgr, _cud(rid), "did not finish within the timeout of 6 s",
                          "CANCELED")
    assert took < CFG["globus_timeout"] + 10


def test_a_failed_output_transfer_fails_the_unit(gumgr, emu, remote):
    rid, root = remote
    (root / "in.bin").write_bytes(b"x")
    emu.fail_next("POST /v0.10/transfer", 404, "ClientError.NotFound", "gone", times=1)
    # the first POST (input) fails: the unit never runs
    _fails_with(gumgr, _cud(rid), "input_staging[0]", "404 ClientError.NotFound")
    u = gumgr.submit_units(rp.ComputeUnitDescription(
        executable="/bin/true",
        output_staging=[f"never.bin > globus://{rid}/out/never.bin"]))
    assert u.wait(timeout=30) == rp.FAILED
    assert "output_staging[0]" in u.stderr and "FILE_NOT_FOUND" in u.stderr


def test_no_tokens_fail_at_once_without_prompting(gsession, gumgr, remote, ctx):
    rid, root = remote
    (root / "in.bin").write_bytes(b"x")
    os.unlink(ctx.token_file)
    took, _ = _fails_with(gumgr, _cud(rid), "no Globus tokens", "does not log in")
    assert took < 10


def test_a_service_account_gets_tokens_by_client_credentials(tmp_path, emu, remote):
    from rp_executor.staging.directives import GlobusPath
    from rp_executor.staging.globus import GlobusTransfer, Item
    rid, root = remote
    (root / "a.bin").write_bytes(b"abc")
    emu.clients["svc"] = "s3cret"
    t = GlobusTransfer("svc", "s3cret", poll_interval=0.05, deadline=5)
    assert t.transfer([Item(GlobusPath(rid, "/a.bin"), GlobusPath(rid, "/b/c.bin"), 1)]) \
        == {1: None}
    assert (root / "b/c.bin").read_bytes() == b"abc"


def test_canceling_a_unit_during_its_globus_staging(gumgr, emu, remote):
    rid, root = remote
    (root / "in.bin").write_bytes(b"x")
    emu.task_delay = 3
    u = gumgr.submit_units(_cud(rid))
    assert u.wait(rp.UMGR_STAGING_INPUT, timeout=30) == rp.UMGR_STAGING_INPUT
    start = time.monotonic()
    gumgr.cancel_units(u.uid)
    assert u.state == rp.CANCELED and time.monotonic() - start < 2


def test_pilot_stage_in_from_globus(gsession, remote):
    rid, root = remote
    (root / "shared.bin").write_bytes(b"shared")
    pmgr = rp.PilotManager(gsession)
    p = pmgr.submit_pilots(rp.ComputePilotDescription(
        resource="local.localhost", cores=1, runtime=5,
        input_staging=f"globus://{rid}/shared.bin"))
    assert p.wait(rp.PMGR_ACTIVE, timeout=60) == rp.PMGR_ACTIVE, (p.state, p.log, p.stderr)
    with open(os.path.join(p.pilot_sandbox, "staging_area", "shared.bin"), "rb") as f:
        assert f.read() == b"shared"
    p.stage_out(f"pilot:///shared.bin > globus://{rid}/back/shared.bin")
    assert (root / "back/shared.bin").read_bytes() == b"shared"


# Parsl --------------------------------------------------------------------------------

def _parsl_workflow(executor_factory, tmp_path, emu, remote, ctx):
    import parsl
    from parsl.config import Config
    from parsl.data_provider.files import File
    from parsl.dataflow.errors import DependencyError

    from rp_executor.staging.local import StagingError
    from rp_executor.staging.parsl import GlobusStaging
    rid, root = remote
    (root / "numbers.txt").write_text("\n".join(str(i) for i in range(10)))
    work = tmp_path / "work" / "parsl"
    staging = GlobusStaging(context=ctx, poll_interval=0.05, deadline=5, timeout=10)
    executor = executor_factory(str(work), staging)
    cfg = Config(executors=[executor], run_dir=str(tmp_path / "runinfo"))

    @parsl.python_app
    def total(inputs=(), outputs=()):
        with open(inputs[0].filepath) as f:
            s = sum(int(x) for x in f)
        with open(outputs[0].filepath, "w") as f:
            f.write(str(s))
        return s

    with parsl.load(cfg):
        fut = total(inputs=[File(f"globus://{rid}/numbers.txt")],
                    outputs=[File(f"globus://{rid}/results/sum.txt")])
        assert fut.result(timeout=120) == 45
        fut.outputs[0].result(timeout=120)
        missing = total(inputs=[File(f"globus://{rid}/nope.txt")],
                        outputs=[File(f"globus://{rid}/results/nope.txt")])
        # the app never runs: its stage-in failed, and Parsl fails it as dependent
        with pytest.raises(DependencyError) as info:
            missing.result(timeout=120)
    assert (root / "results/sum.txt").read_text() == "45"
    assert not (root / "results/nope.txt").exists()
    [(cause, _)] = info.value.dependent_exceptions_tids
    assert info.value.__cause__ is cause and type(cause) is StagingError
    assert re.fullmatch(
        rf"globus://{rid}/nope\.txt > globus://[0-9a-f-]+/parsl/nope\.txt: Globus task "
        rf"[0-9a-f-]+ ended FAILED; .*; event FILE_NOT_FOUND: file not found \(Error "
        rf"\(transfer\) Endpoint: {rid} Server: emulator File: /nope\.txt Command: RETR "
        rf"Message: No such file or directory\)", str(cause)), str(cause)


def test_parsl_thread_pool_workflow_with_globus_files(tmp_path, emu, remote, ctx,
                                                      monkeypatch):
    from parsl.executors.threads import ThreadPoolExecutor
    monkeypatch.chdir(tmp_path)
    _parsl_workflow(lambda wd, st: ThreadPoolExecutor(label="threads", working_dir=wd,
                                                      storage_access=[st]),
                    tmp_path, emu, remote, ctx)


def test_parsl_rpexecutor_workflow_with_globus_files(tmp_path, emu, remote, ctx,
                                                     monkeypatch):
    RPExecutor = rp.RPExecutor
    monkeypatch.chdir(tmp_path)
    _parsl_workflow(lambda wd, st: RPExecutor(label="rp", working_dir=wd,
                                              storage_access=[st], cores_per_block=2),
                    tmp_path, emu, remote, ctx)
