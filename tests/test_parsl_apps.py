"""RPExecutor's pure parts: bash apps unwrapped and scripted, resource specifications,
pilot states as block states. No pilots; the bash scripts run in a plain bash."""

from __future__ import annotations

import subprocess

import pytest
from parsl.app.errors import AppTimeout, BadStdStreamFile, BashExitFailure, MissingOutputs
from parsl.data_provider.files import File
from parsl.executors.errors import InvalidResourceSpecification
from parsl.jobs.states import JobState

from rp_executor.parsl import apps as pa  # noqa: E402
from rp_executor.parsl.blocks import job_status, runtime_minutes  # noqa: E402
from rp_executor.parsl.executor import _BACKLOG_S, _GATHER_S, gathers  # noqa: E402


def _bash_app_function(fn):
    from parsl.app.bash import BashApp
    return BashApp(fn).wrapped_remote_function


def _python_app_function(fn):
    from parsl.app.python import PythonApp
    return PythonApp(fn).func


def greet(name, stdout=None):
    return f"echo hello {name}"


def test_bash_app_is_unwrapped_to_its_command_and_python_app_is_not():
    call = pa.unwrap_bash(_bash_app_function(greet))
    assert call is not None and call.func is greet and call.name == "greet"
    assert pa.format_command(call, ("ann",), {}) == "echo hello ann"
    assert pa.unwrap_bash(_python_app_function(greet)) is None


def test_wrapped_bash_app_cannot_be_unwrapped_and_falls_back():
    import functools
    inner = _bash_app_function(greet)

    @functools.wraps(inner)
    def monitored(*a, **k):  # as monitor_wrapper: something that must run remotely
        return inner(*a, **k)

    assert pa.unwrap_bash(monitored) is None


def test_bad_command_formats_raise_parsl_errors():
    from parsl.app.errors import BashAppNoReturn
    call = pa.BashCall(lambda: None, "nothing")
    with pytest.raises(ValueError, match="Expected a str"):
        pa.format_command(call, (), {})
    call = pa.BashCall(lambda: None.x, "broken")
    with pytest.raises(BashAppNoReturn):
        pa.format_command(call, (), {})


def _run(script, cwd):
    proc = subprocess.run(["/bin/bash", "-c", script], cwd=cwd, capture_output=True,
                          text=True, timeout=30)
    return proc.returncode, proc.stderr


def test_script_redirects_appends_and_truncates(tmp_path):
    out = tmp_path / "d" / "out.txt"
    script = pa.bash_script("echo one", pa.std_redirect("stdout", str(out)), None, None, [])
    assert _run(script, tmp_path) == (0, "")
    _run(script, tmp_path)
    assert out.read_text() == "one\none\n"
    script = pa.bash_script("echo two; echo oops >&2", pa.std_redirect("stdout", (str(out), "w")),
                            pa.std_redirect("stderr", (str(out), "w")), None, [])
    assert _run(script, tmp_path)[0] == 0
    text = out.read_text()
    assert "one" not in text and "two\n" in text and "oops" in text
    assert "--> executable follows <--\necho two; echo oops >&2\n--> end executable <--" in text


def test_script_outcomes_become_parsl_exceptions(tmp_path):
    rc, err = _run(pa.bash_script("exit 7", None, None, None, []), tmp_path)
    assert isinstance(pa.bash_outcome("app", rc, err, None, []), BashExitFailure)
    rc, err = _run(pa.bash_script("sleep 5", None, None, 0.2, []), tmp_path)
    assert rc == 124 and isinstance(pa.bash_outcome("app", rc, err, 0.2, []), AppTimeout)
    rc, err = _run(pa.bash_script("exit 124", None, None, None, []), tmp_path)
    assert isinstance(pa.bash_outcome("app", rc, err, None, []), BashExitFailure)  # not a timeout
    missing = File(str(tmp_path / "never"))
    rc, err = _run(pa.bash_script("true", None, None, None, [missing.filepath]), tmp_path)
    error = pa.bash_outcome("app", rc, err, None, [missing])
    assert isinstance(error, MissingOutputs) and error.outputs == [missing]
    rc, err = _run(pa.bash_script("true", ("/proc/nope/x", ">"), None, None, []), tmp_path)
    assert isinstance(pa.bash_outcome("app", rc, err, None, []), BadStdStreamFile)
    assert pa.bash_outcome("app", 0, "", None, []) is None


def test_script_runs_in_the_given_directory_or_says_why_not(tmp_path):
    rc, _ = _run(pa.bash_script("echo x > here.txt", None, None, None, [], cwd=str(tmp_path)),
                 "/")
    assert rc == 0 and (tmp_path / "here.txt").exists()
    rc, err = _run(pa.bash_script("true", None, None, None, [], cwd="/no/such/dir"), tmp_path)
    assert rc == 0 and "cannot cd to" in err


def test_std_stream_modes_other_than_write_or_append_are_refused():
    with pytest.raises(BadStdStreamFile, match="'r'"):
        pa.std_redirect("stdout", ("x", "r"))
    assert pa.std_redirect("stdout", None) is None
    assert pa.std_redirect("stdout", File("f.txt")) == ("f.txt", ">")


def test_resource_spec_maps_to_unit_fields():
    assert pa.parse_resource_spec({}).fields() == {}
    res = pa.parse_resource_spec({"cores": 4, "gpus": 1, "priority": 2, "walltime": 3})
    assert res.fields() == {"cpu_threads": 4, "gpu_processes": 1}
    assert res.priority == 2 and res.walltime == 3.0
    assert res.environment == {"PARSL_CORES": "4", "PARSL_GPUS": "1"}
    mpi = pa.parse_resource_spec({"mpi": True, "ranks": 4, "ranks_per_node": 2, "cores": 2})
    assert mpi.fields() == {"cpu_process_type": "MPI", "cpu_processes": 4, "cpu_threads": 2}
    assert pa.parse_resource_spec({"mpi": True}).fields() == {"cpu_process_type": "MPI"}


@pytest.mark.parametrize("spec, key", [
    ({"memory": 1}, "memory"),
    ({"cores": 0}, "cores"),
    ({"cores": "2"}, "cores"),
    ({"mpi": "yes"}, "mpi"),
    ({"mpi": False, "ranks": 2}, "mpi"),
    ({"ranks": 3, "ranks_per_node": 2}, "ranks_per_node"),
    ({"priority": "high"}, "priority"),
    ({"walltime": 0}, "walltime"),
])
def test_bad_resource_specs_name_the_key(spec, key):
    with pytest.raises(InvalidResourceSpecification) as info:
        pa.parse_resource_spec(spec)
    assert key in info.value.invalid_keys
    assert key in str(info.value)


def test_unknown_key_error_lists_the_allowed_keys():
    with pytest.raises(InvalidResourceSpecification) as info:
        pa.parse_resource_spec({"cores": 1, "disk": 5, "memory": 1})
    assert info.value.invalid_keys == {"disk", "memory"}
    assert "allowed keys: " + ", ".join(pa.RESOURCE_KEYS) in str(info.value)


class _Pilot:
    def __init__(self, state, history=(), log=(), stderr=None):
        self.uid, self.job_id, self.state, self.log, self.stderr = "pilot.0001", "42", state, \
            list(log), stderr
        self.state_history = [(s, 0.0) for s in history]


def test_pilot_states_become_block_states():
    import rp_executor as rp
    assert job_status(_Pilot(rp.PMGR_LAUNCHING)).state == JobState.PENDING
    assert job_status(_Pilot(rp.PMGR_ACTIVE)).state == JobState.RUNNING
    assert job_status(_Pilot(rp.DONE)).state == JobState.COMPLETED
    assert job_status(_Pilot(rp.CANCELED)).state == JobState.CANCELLED
    died = job_status(_Pilot(rp.FAILED, [rp.PMGR_ACTIVE, rp.FAILED], stderr="killed"))
    assert died.state == JobState.FAILED and "pilot.0001" in died.message
    assert "killed" in died.message
    never = job_status(_Pilot(rp.FAILED, [rp.PMGR_LAUNCHING, rp.FAILED]))
    assert never.state == JobState.MISSING


def test_pilot_runtime_follows_the_provider_walltime():
    class P:
        walltime = "01:30:01"
    assert runtime_minutes(P()) == 91
    assert runtime_minutes(object()) == 7 * 24 * 60


def test_the_submitter_gathers_tasks_only_while_the_pilots_are_busy():
    # a chain of dependent apps: one task out, idle cores -> it goes at once
    assert gathers(waiting=1, outstanding=1, cores=2) == 0
    assert gathers(waiting=2, outstanding=2, cores=2) == 0
    # a burst: more tasks out than cores -> wait a moment for more
    assert gathers(waiting=1, outstanding=3, cores=2) == _GATHER_S
    # a backlog of more than 4 units per core -> wait longer: batches grow
    assert gathers(waiting=1, outstanding=8, cores=2) == _GATHER_S
    assert gathers(waiting=1, outstanding=9, cores=2) == _BACKLOG_S > _GATHER_S
    # no pilot yet: every task waits anyway
    assert gathers(waiting=1, outstanding=1, cores=0) == _BACKLOG_S
    # a batch that is already large goes at once
    assert gathers(waiting=64, outstanding=5000, cores=2) == 0
