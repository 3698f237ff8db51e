"""Ending a local pilot's processes: which processes are the pilot's, and the
SIGTERM → SIGCONT → SIGKILL escalation that ends them, stopped ones included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from rp_executor._core import providers

SESSION, PILOT = "rp.session.test.sweep.0000", "pilot.0007"


@pytest.fixture
def spawn():
    """Start processes (own session each, as units are); kill what is left after."""
    started: list[subprocess.Popen] = []

    def start(args: list[str], env: dict | None = None, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(args, env={**os.environ, **(env or {})},
                                start_new_session=True, **kw)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def pilot_env(sandbox: str) -> dict[str, str]:
    return {"RP_SESSION_ID": SESSION, "RP_PILOT_ID": PILOT, "RP_PILOT_SANDBOX": sandbox}


def started_shell(spawn, trap: str, mark) -> psutil.Process:
    """A shell that set ``trap`` (it says so in ``mark``), so that a signal sent now
    meets the trap, not a shell still starting."""
    proc = spawn(["/bin/sh", "-c", f"{trap}; echo up > {mark}; while :; do sleep 0.05; done"])
    deadline = time.monotonic() + 10
    while not (mark.exists() and mark.read_text() == "up\n"):
        assert time.monotonic() < deadline, "the shell did not start"
        time.sleep(0.02)
    return proc


def wait_children(proc: subprocess.Popen, n: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 10
    while len(kids := psutil.Process(proc.pid).children()) < n:
        assert time.monotonic() < deadline, f"{proc.args} did not start {n} children"
        time.sleep(0.02)
    return kids


def test_a_stopped_process_gets_its_sigterm_and_needs_no_sigkill(spawn, tmp_path):
    mark = tmp_path / "got-term"
    proc = started_shell(spawn, f"trap 'echo term > {mark}; exit 0' TERM", tmp_path / "up")
    target = psutil.Process(proc.pid)
    target.suspend()
    assert providers.end_processes([target], grace=10) == 0
    assert proc.wait(5) == 0 and mark.read_text() == "term\n"


def test_a_stopped_process_that_ignores_sigterm_gets_sigkill(spawn, tmp_path):
    proc = started_shell(spawn, "trap '' TERM", tmp_path / "up")
    target = psutil.Process(proc.pid)
    target.suspend()
    assert providers.end_processes([target], grace=0.5) == 1
    assert proc.wait(5) == -signal.SIGKILL


def test_the_pilots_processes_are_found_by_environment_command_line_and_tree(spawn, tmp_path):
    sandbox = str(tmp_path / SESSION / PILOT)
    os.makedirs(sandbox)
    unit = spawn(["/bin/sh", "-c", "env -i /bin/sleep 60 & exec /bin/sleep 61"],
                 env=pilot_env(sandbox))
    script = os.path.join(sandbox, f"rp.{SESSION}.{PILOT}.123.4.sh")
    block = spawn(["/bin/bash", "-c", f"sleep 62; exit 0 # {script}"])
    agent = spawn([sys.executable, "-c", "import time; time.sleep(63)", "-m",
                   "rp_executor.agent", os.path.join(sandbox, "agent.cfg.json")])
    other_sandbox = spawn(["/bin/sleep", "64"], env=pilot_env(sandbox + "x"))
    other_pilot = spawn(["/bin/sleep", "65"],
                        env={**pilot_env(sandbox), "RP_PILOT_ID": "pilot.0008"})
    open(script + ".err", "w").close()
    reader = spawn(["tail", "-f", script + ".err"])   # looks at the block, is not of it
    escaped = wait_children(unit, 1)[0]   # sh forked `env -i sleep 60`, then exec'd
    found = {p.pid for p in providers.local_processes(SESSION, PILOT, sandbox)}
    assert {unit.pid, block.pid, agent.pid, escaped.pid} <= found
    assert reader.poll() is None
    assert not found & {other_sandbox.pid, other_pilot.pid, reader.pid}


def test_sweeping_ends_the_pilots_processes_and_nothing_else(spawn, tmp_path):
    sandbox = str(tmp_path / SESSION / PILOT)
    os.makedirs(sandbox)
    unit = spawn(["/bin/sh", "-c", "trap '' TERM; sleep 60"], env=pilot_env(sandbox))
    worker = spawn(["/bin/sleep", "61"], env=pilot_env(sandbox))
    other = spawn(["/bin/sleep", "62"], env=pilot_env(sandbox + "x"))
    wait_children(unit, 1)
    psutil.Process(unit.pid).suspend()
    assert providers.sweep_local_processes(SESSION, PILOT, sandbox, grace=0.5) == 3
    assert unit.wait(5) == -signal.SIGKILL and worker.wait(5) == -signal.SIGTERM
    assert other.poll() is None
