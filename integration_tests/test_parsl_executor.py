"""RPExecutor end to end: Parsl apps on real local pilots, blocks scaled and killed."""

from __future__ import annotations

import signal
import time

import pytest

import parsl  # noqa: E402 - a core dependency: a missing install must fail, not skip

from parsl.app.app import bash_app, join_app, python_app  # noqa: E402
from parsl.app.errors import AppTimeout, BashExitFailure  # noqa: E402
from parsl.config import Config  # noqa: E402
from parsl.executors.errors import BadStateException, InvalidResourceSpecification  # noqa: E402
from parsl.jobs.states import JobState  # noqa: E402
from parsl.launchers import SimpleLauncher  # noqa: E402
from parsl.providers import LocalProvider  # noqa: E402

import rp_executor as rp  # noqa: E402
from rp_executor.exceptions import UnitFailed  # noqa: E402
import psutil  # noqa: E402

from support import agent_process, assert_no_session_processes, session_processes, wait_for  # noqa: E402


def _load(tmp_path, init=1, min_blocks=0, max_blocks=1, cores=2, prefetch=256,
          working_dir=None, **config):
    ex = rp.RPExecutor(label="rp", cores_per_block=cores, prefetch_per_core=prefetch,
                       working_dir=working_dir,
                       provider=LocalProvider(
        init_blocks=init, min_blocks=min_blocks, max_blocks=max_blocks,
        launcher=SimpleLauncher()))
    cfg = Config(executors=[ex], run_dir=str(tmp_path / "runinfo"),
                 strategy_period=config.pop("strategy_period", 0.2), **config)
    parsl.load(cfg)
    return ex


@pytest.fixture
def loaded(tmp_path, monkeypatch):
    """A loader of one RPExecutor config; cleaned up, then checked for leftovers."""
    monkeypatch.chdir(tmp_path)
    made = []

    def load(**kwargs):
        ex = _load(tmp_path, **kwargs)
        made.append(ex)
        return ex

    yield load
    if made:
        parsl.dfk().cleanup()
        parsl.clear()
        for ex in made:
            assert ex._session.closed
            assert_no_session_processes(ex._session.uid)


@python_app
def add(a, b):
    return a + b


@python_app
def fail_with(cls, text):
    raise cls(text)


@python_app
def nap(seconds):
    import time
    time.sleep(seconds)
    return seconds


@python_app
def spec_nap(seconds, parsl_resource_specification=None):
    import time
    end = time.monotonic() + seconds
    while time.monotonic() < end:   # short sleeps: Parsl's walltime interrupts between them
        time.sleep(0.05)
    return seconds


@bash_app
def shout(word, stdout=None, stderr=None):
    return f"echo {word}; echo {word}-on-stderr >&2"


@bash_app
def exit_with(code):
    return f"exit {code}"


@bash_app
def sleeper(seconds, walltime=None):
    return f"sleep {seconds}"


@bash_app
def env_of(name, stdout=None, parsl_resource_specification=None):
    return f"echo ${name}"


@join_app
def add_then_double(a, b):
    return add(add(a, b), add(a, b))


@pytest.mark.timeout(120)
def test_python_bash_and_join_apps_run_on_a_pilot(loaded, tmp_path):
    loaded()
    assert add(add(1, 2), 3).result(timeout=60) == 6
    with pytest.raises(KeyError, match="nope"):
        fail_with(KeyError, "nope").result(timeout=30)
    assert add_then_double(1, 2).result(timeout=30) == 6
    out, err = tmp_path / "o" / "out.txt", tmp_path / "e" / "err.txt"
    assert shout("hello", stdout=str(out), stderr=str(err)).result(timeout=30) == 0
    assert out.read_text() == "hello\n"
    text = err.read_text()
    assert "hello-on-stderr" in text and "--> executable follows <--" in text


@pytest.mark.timeout(120)
def test_std_streams_staged_into_a_zip_archive_both_land(loaded, tmp_path):
    # Parsl's own test of this reads the archive after the stdout future only, while
    # the stderr stage-out may still be appending (Parsl/parsl#3467); here both
    # futures are awaited first, so the archive is complete when it is read
    import zipfile

    from parsl.data_provider.files import File

    loaded(working_dir=str(tmp_path / "work"))   # zip staging needs one
    archive = tmp_path / "std.zip"
    fut = shout("zipped", stdout=File(f"zip:{archive}/a/out.txt"),
                stderr=File(f"zip:{archive}/a/err.txt"))
    assert fut.result(timeout=60) == 0
    fut.stdout.result(timeout=30)
    fut.stderr.result(timeout=30)
    with zipfile.ZipFile(archive) as z:
        assert z.read("a/out.txt") == b"zipped\n"
        assert z.read("a/err.txt").endswith(b"zipped-on-stderr\n")


@pytest.mark.timeout(120)
def test_bash_redirection_modes_append_truncate_and_relative_paths(loaded, tmp_path):
    loaded()
    shout("one", stdout="rel.out").result(timeout=60)          # a path appends
    shout("two", stdout="rel.out").result(timeout=30)
    assert (tmp_path / "rel.out").read_text() == "one\ntwo\n"  # relative to the client's cwd
    shout("three", stdout=("rel.out", "w")).result(timeout=30)  # 'w' truncates
    assert (tmp_path / "rel.out").read_text() == "three\n"
    both = tmp_path / "both.txt"
    shout("x", stdout=str(both), stderr=str(both)).result(timeout=30)
    assert "x\n" in both.read_text() and "x-on-stderr" in both.read_text()


@pytest.mark.timeout(120)
def test_bash_exit_codes_become_bash_exit_failure(loaded):
    loaded()
    with pytest.raises(BashExitFailure) as info:
        exit_with(3).result(timeout=60)
    assert info.value.exitcode == 3
    assert exit_with(0).result(timeout=30) == 0


@pytest.mark.timeout(120)
def test_bash_walltime_becomes_app_timeout_and_kills_the_command(loaded):
    ex = loaded()
    add(0, 0).result(timeout=60)  # the pilot is up
    t0 = time.monotonic()
    with pytest.raises(AppTimeout):
        sleeper(30, walltime=0.5).result(timeout=30)
    assert time.monotonic() - t0 < 10
    wait_for(lambda: not [p for p in session_processes(ex._session.uid)
                          if p.name() == "sleep"], 5, "the timed-out command to be killed")
    assert sleeper(0, walltime=5).result(timeout=30) == 0


@pytest.mark.timeout(120)
def test_resource_specifications_reach_the_unit_and_bad_keys_are_named(loaded, tmp_path):
    ex = loaded()
    out = tmp_path / "cores.txt"
    env_of("PARSL_CORES", stdout=str(out),
           parsl_resource_specification={"cores": 2, "priority": 1}).result(timeout=60)
    assert out.read_text().strip() == "2"
    unit = [u for u in ex._umgr.get_units() if u.description["cpu_threads"] == 2]
    assert len(unit) == 1 and unit[0].state == rp.DONE
    with pytest.raises(InvalidResourceSpecification) as info:
        spec_nap(0, parsl_resource_specification={"cores": 1, "memory": 100}).result(timeout=30)
    assert "'memory'" in str(info.value) and "allowed keys: cores, gpus" in str(info.value)
    with pytest.raises(AppTimeout):
        spec_nap(20, parsl_resource_specification={"walltime": 0.5}).result(timeout=30)
    # a unit that can never fit the pilot fails with the scheduler's reason
    with pytest.raises(Exception, match="cores"):
        spec_nap(0, parsl_resource_specification={"cores": 64}).result(timeout=30)


@pytest.mark.timeout(120)
def test_blocks_scale_out_with_load_and_in_when_idle(loaded):
    ex = loaded(init=0, min_blocks=0, max_blocks=2, cores=1, prefetch=0, max_idletime=1.0)
    futures = [nap(2) for _ in range(2)]
    wait_for(lambda: len(ex._pilots) == 2, 30, "two blocks for two tasks on 1-core pilots")
    assert [f.result(timeout=60) for f in futures] == [2, 2]
    pilots = {u.pilot for u in ex._umgr.get_units()}
    assert len(pilots) == 2, "each block ran a task"
    # idle for max_idletime: the strategy scales in to min_blocks = 0
    wait_for(lambda: all(p.state == rp.CANCELED for p in ex._pilots.values()), 30,
             "idle pilots to be canceled")
    wait_for(lambda: all(s.state == JobState.SCALED_IN for s in ex.status_facade.values()),
             10, "blocks to show SCALED_IN")
    for p in ex._pilots.values():
        assert_no_session_processes(ex._session.uid, p.uid)


@pytest.mark.timeout(120)
def test_block_killed_from_outside_is_seen_and_the_error_handler_fails_tasks(loaded):
    ex = loaded(init=1, min_blocks=1, max_blocks=1)
    add(1, 1).result(timeout=60)
    (pilot,) = ex._pilots.values()
    running = sleeper(60)
    wait_for(lambda: any(u.state == rp.EXECUTING for u in ex._umgr.get_units()), 30,
             "the task to run")
    # the block dies as under a batch system's kill: its shell and the agent, at once
    for proc in (agent_process(pilot), psutil.Process(int(pilot.job_id))):
        proc.send_signal(signal.SIGKILL)
    # the pilot manager sees the block gone and fails its unit, naming the pilot; or
    # Parsl's error handler got there first and failed every task of the executor
    with pytest.raises((UnitFailed, BadStateException), match=pilot.uid):
        running.result(timeout=60)
    # Parsl's poller sees the block FAILED; simple_error_handler puts the executor in
    # bad state (its one block failed)
    wait_for(lambda: ex.bad_state_is_set, 30, "the block error handler to act")
    assert pilot.uid in str(ex.executor_exception)
    (status,) = ex.status_facade.values()
    assert status.state == JobState.FAILED
    with pytest.raises(Exception, match=pilot.uid):
        add(2, 2).result(timeout=30)   # no more tasks on a broken executor


@pytest.mark.timeout(180)
def test_monitoring_hub_records_the_apps_run_on_pilots(tmp_path, monkeypatch):
    import sqlite3

    from parsl.monitoring import MonitoringHub

    monkeypatch.chdir(tmp_path)
    db = tmp_path / "monitoring.db"
    ex = _load(tmp_path, monitoring=MonitoringHub(logging_endpoint=f"sqlite:///{db}",
                                                  resource_monitoring_enabled=False))
    try:
        assert [add(i, 1).result(timeout=60) for i in range(3)] == [1, 2, 3]
    finally:
        parsl.dfk().cleanup()
        parsl.clear()
    assert_no_session_processes(ex._session.uid)
    with sqlite3.connect(db) as conn:
        tasks = conn.execute("SELECT task_func_name FROM task").fetchall()
        tries = conn.execute("SELECT task_executor FROM try "
                             "WHERE task_try_time_returned IS NOT NULL").fetchall()
    assert tasks == [("add",)] * 3
    assert tries == [("rp",)] * 3


def test_apps_from_the_clients_own_modules_run_on_local_blocks(loaded, tmp_path, monkeypatch):
    # a module the client imports from its own path, not installed anywhere: the
    # function travels by reference, so the workers need the client's sys.path
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "clientonly.py").write_text("def triple(x):\n    return 3 * x\n")
    monkeypatch.syspath_prepend(str(mods))
    import clientonly

    loaded()
    assert python_app(clientonly.triple)(3).result(timeout=60) == 9
