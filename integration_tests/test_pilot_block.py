"""A pilot is a Parsl LocalProvider block running the agent; its secret stays secret."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import psutil
import pytest

import rp_executor as rp
from rp_executor._core import wire
from support import agent_process, alive, assert_no_session_processes, echo, wait_for


@pytest.mark.timeout(60)
def test_pilot_is_a_local_provider_block_that_cancel_removes(session, pilot, umgr):
    assert pilot.job_id is not None
    block_pid = int(pilot.job_id)  # LocalProvider's job id is its block's pid
    assert alive(block_pid)
    agent = agent_process(pilot)
    block = psutil.Process(block_pid)
    assert agent.pid in {p.pid for p in block.children(recursive=True)}
    # the block's script, written by LocalProvider into the pilot sandbox, runs the agent
    scripts = list(Path(pilot.pilot_sandbox).glob(f"rp.{session.uid}.{pilot.uid}.*.sh"))
    assert len(scripts) == 1, scripts
    assert "-m rp_executor.agent" in scripts[0].read_text()

    assert umgr.submit_units(echo("in a block")).wait(timeout=30) == rp.DONE

    pilot.cancel()
    assert pilot.state == rp.CANCELED
    wait_for(lambda: not alive(block_pid) and not alive(agent.pid), 5,
             "the block and its agent to end")
    assert_no_session_processes(session.uid, pilot.uid)


@pytest.mark.timeout(60)
def test_agent_config_is_0600_and_its_secret_never_on_a_command_line(session, pmgr,
                                                                     monkeypatch):
    written = []
    real_write_secret = wire.write_secret

    def observe(path, data):  # the real function, observed: the file as it is created
        real_write_secret(path, data)
        written.append((Path(path), data, stat.S_IMODE(os.stat(path).st_mode)))

    monkeypatch.setattr(wire, "write_secret", observe)
    pilot = pmgr.submit_pilots(rp.ComputePilotDescription(
        resource="local.localhost", cores=1, runtime=10))
    assert pilot.wait(rp.PMGR_ACTIVE, timeout=60) == rp.PMGR_ACTIVE

    # the agent's config in the pilot sandbox, and the pilot's key pair in the
    # session directory (for a client that reattaches), both 0600
    assert sorted(p.parent for p, _, _ in written) == \
        sorted([Path(pilot.pilot_sandbox), Path(session.path)])
    assert all(mode == 0o600 for _, _, mode in written)
    path, data, mode = next(w for w in written if w[0].parent == Path(pilot.pilot_sandbox))
    secret = data["secret"]
    assert secret and data["pilot_id"] == pilot.uid
    assert not path.exists(), "the agent removes its config file once read"
    for left in Path(pilot.pilot_sandbox).rglob("*"):  # the block's script, its output
        if left.is_file():
            assert secret not in left.read_text(errors="replace"), left

    agent = agent_process(pilot)
    assert str(path) in agent.cmdline()
    for proc in [agent, *agent.parents()]:
        try:
            cmdline = " ".join(proc.cmdline())
            env = proc.environ()
        except psutil.Error:
            continue
        assert secret not in cmdline, proc
        assert all(secret not in v for v in env.values()), proc
