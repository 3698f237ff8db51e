"""Python function units end to end: a real pilot, its warm worker pool, real results."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time

import pytest

import rp_executor as rp
from rp_executor._core.calls import RemoteTraceback


def add(a, b=0):
    return a + b


def fail_with_key_error(key):
    return {}[key]


def big(n_bytes):
    return b"x" * n_bytes


def chatty(name):
    print(f"hello {name}")
    print("warning: chatty", file=os.sys.stderr)
    return len(name)


def die(how):
    if how == "exit":
        os._exit(3)
    os.kill(os.getpid(), signal.SIGKILL)


def environment():
    start = time.time()
    time.sleep(0.2)
    return os.environ.get("OMP_NUM_THREADS"), os.environ.get("RP_UNIT_ID"), start, time.time()


def fn(function, *args, **kwargs):
    return rp.ComputeUnitDescription(function=function, args=list(args), kwargs=kwargs)


def test_return_values_come_back(umgr):
    units = umgr.submit_units([fn(add, i, b=10) for i in range(20)]
                              + [fn("os.path:join", "a", "b"), fn(lambda: {"k": [1, 2]})])
    umgr.wait_units(timeout=60)
    assert [u.state for u in units] == [rp.DONE] * 22
    assert [u.return_value for u in units[:20]] == [i + 10 for i in range(20)]
    assert units[20].return_value == os.path.join("a", "b")
    assert units[21].return_value == {"k": [1, 2]}
    assert all(u.exit_code == 0 and u.exception is None for u in units)


def test_an_exception_keeps_its_type_and_the_remote_traceback(umgr):
    unit = umgr.submit_units(fn(fail_with_key_error, "missing"))
    umgr.wait_units(unit.uid, timeout=60)
    assert unit.state == rp.FAILED
    assert unit.return_value is None
    exc = unit.exception
    assert type(exc) is KeyError and exc.args == ("missing",)
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert "fail_with_key_error" in exc.__cause__.tb and "KeyError" in exc.__cause__.tb


def test_a_crashing_worker_fails_only_its_unit_and_the_pool_recovers(umgr):
    units = umgr.submit_units([fn(die, "exit"), fn(die, "kill")]
                              + [fn(add, i, 1) for i in range(10)])
    umgr.wait_units(timeout=60)
    assert [u.state for u in units[:2]] == [rp.FAILED, rp.FAILED]
    assert "died (exit code 3)" in units[0].stderr, units[0].stderr
    assert "died (SIGKILL)" in units[1].stderr, units[1].stderr
    assert isinstance(units[1].exception, RuntimeError) and "SIGKILL" in str(units[1].exception)
    assert [u.return_value for u in units[2:]] == [i + 1 for i in range(10)]
    again = umgr.submit_units([fn(add, 1, 1), fn(add, 2, 2)])
    umgr.wait_units([u.uid for u in again], timeout=60)
    assert [u.return_value for u in again] == [2, 4]


def test_an_unpicklable_argument_is_refused_at_submit_naming_it(umgr):
    done = umgr.submit_units(fn(add, 1, 2))
    with pytest.raises(rp.BadParameter) as info:
        umgr.submit_units([fn(add, 1, 2), fn(add, 1, threading.Lock())])
    assert info.value.attribute == "args"
    assert "args[1]" in str(info.value) and "descriptions[1]" in str(info.value)
    with pytest.raises(rp.BadParameter) as info:
        umgr.submit_units(fn(add, 1, b=threading.Lock()))
    assert "kwargs['b']" in str(info.value)
    umgr.wait_units(timeout=60)
    assert len(umgr.list_units()) == 1      # nothing of the refused calls was submitted
    assert done.state == rp.DONE and done.return_value == 3


def test_a_50_mib_result_travels_as_a_file_in_the_unit_sandbox(umgr):
    size = 50 * 1024 * 1024
    unit = umgr.submit_units(fn(big, size))
    umgr.wait_units(unit.uid, timeout=120)
    assert unit.state == rp.DONE, unit.stderr
    path = os.path.join(unit.unit_sandbox, "result.pkl")
    assert os.path.getsize(path) > size
    value = unit.return_value
    assert len(value) == size and value[:3] == b"xxx"
    with open(path, "rb") as fh:
        assert pickle.load(fh) == value


def test_printing_functions_are_captured_like_executables(umgr):
    unit = umgr.submit_units(fn(chatty, "world"))
    umgr.wait_units(unit.uid, timeout=60)
    assert unit.return_value == 5
    assert unit.stdout == "hello world\n"
    assert unit.stderr == "warning: chatty\n"
    with open(os.path.join(unit.unit_sandbox, "STDOUT")) as fh:
        assert fh.read() == "hello world\n"


def test_functions_with_several_threads_get_their_cores(umgr):
    units = umgr.submit_units([
        rp.ComputeUnitDescription(function=environment, cpu_threads=2) for _ in range(3)])
    umgr.wait_units(timeout=60)
    values = [u.return_value for u in units]
    assert [v[0] for v in values] == ["2", "2", "2"]
    assert [v[1] for v in values] == [u.uid for u in units]
    # each unit takes both cores: they ran one after the other (by their own clocks)
    spans = sorted(v[2:] for v in values)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans


def test_function_units_pass_every_state_and_are_journaled(session, umgr):
    seen = []
    umgr.register_callback(lambda unit, state: seen.append((unit.uid, state)))
    unit = umgr.submit_units(fn(add, 2, 3))
    umgr.wait_units(unit.uid, timeout=60)
    session._callbacks.flush(10)
    assert [s for uid, s in seen if uid == unit.uid] == list(rp.UNIT_STATES[:16])
    session.journal.flush()
    assert [(s, t) for _, _, s, t in session.journal.transitions(unit.uid)] == \
        unit.state_history


@pytest.mark.timeout(120)
def test_functions_from_the_clients_directory_import_in_the_workers(tmp_path):
    # python -c, a REPL or a notebook puts '' (its directory) on sys.path: the module
    # next to the user's script must import in the pilot's workers as well, wherever
    # the pilot's sandbox is
    import subprocess
    import sys
    work, elsewhere = tmp_path / "project", tmp_path / "sandboxes"
    work.mkdir()
    (work / "my_science.py").write_text("def triple(x):\n    return 3 * x\n")
    script = (
        "import rp_executor as rp, my_science\n"
        f"s = rp.Session(base_dir={str(tmp_path)!r})\n"
        "try:\n"
        "    p = rp.PilotManager(s).submit_pilots(rp.ComputePilotDescription(\n"
        f"        resource='local.localhost', cores=1, runtime=5, sandbox={str(elsewhere)!r}))\n"
        "    um = rp.UnitManager(s); um.add_pilots(p)\n"
        "    u = um.submit_units(rp.ComputeUnitDescription(function=my_science.triple, args=[14]))\n"
        "    u.wait(timeout=60)\n"
        "    print(u.state, u.return_value, u.stderr)\n"
        "finally:\n"
        "    s.close()\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", script], cwd=work, env=env,
                         capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == ["DONE", "42"], out.stdout
