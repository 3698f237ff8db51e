"""The README's demo workflow runs as a user would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support import assert_no_session_processes

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.timeout(120)
def test_the_getting_started_demo_runs_and_reports_its_result(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "getting_started.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "32 units DONE, 1 FAILED" in out
    assert "cannot execute '/bin/no-such-program'" in out
    estimate = float(out.split("pi ~ ")[1].split()[0])
    assert abs(estimate - 3.14159) < 0.01
    sessions = [p for p in tmp_path.iterdir() if p.name.startswith("rp.session.")]
    assert len(sessions) == 1 and (sessions[0] / "session.sqlite").is_file()
    assert_no_session_processes(sessions[0].name)
