"""The agent's configuration: written 0600 by the client, read back as it was."""

from __future__ import annotations

import json
import os

import pytest

from rp_executor.agent.config import AgentConfig


def test_the_config_is_written_0600_and_read_back_equal(tmp_path):
    cfg = AgentConfig(session_id="rp.session.x", pilot_id="pilot.0003", secret="s3cret",
                      cores=8, gpus=2, resource_manager="slurm",
                      launch_options={"SRUN": {"args": ["--exact"]}},
                      python_path=["/home/me/lib"])
    path = tmp_path / "agent.cfg.json"
    cfg.write(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert AgentConfig.read(path) == cfg
    assert "s3cret" not in repr(cfg)


def test_a_config_readable_by_others_or_with_unknown_fields_is_refused(tmp_path):
    path = tmp_path / "agent.cfg.json"
    AgentConfig().write(path)
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="must be 0600"):
        AgentConfig.read(path)
    os.chmod(path, 0o600)
    path.write_text(json.dumps({"pilot_id": "p", "cores_per_socket": 4}))
    with pytest.raises(ValueError, match="unknown agent config field.*cores_per_socket"):
        AgentConfig.read(path)


@pytest.mark.parametrize("manager, batch", [("local", False), ("FORK", False),
                                            ("slurm", True), ("PBSPRO", True)])
def test_a_pilot_is_a_batch_job_unless_it_forks_locally(manager, batch):
    assert AgentConfig(resource_manager=manager).batch_job is batch
