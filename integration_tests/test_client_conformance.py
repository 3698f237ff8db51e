"""CPython 3.11's concurrent.futures conformance tests, run against client.executor.

The tests come from Debian's ``libpython3.11-testsuite`` package at test time (never
from this repository). The session fixture installs the package when it is missing
(as root, with apt-get); under ``CI=true`` a missing package fails the test, elsewhere
it skips with the reason. The suite runs in its own interpreter
(``cpython_cf_suite.py``, where the excluded tests are listed with their reasons).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cpython_cf_suite import EXCLUDED
from support import assert_no_session_processes

PACKAGE = "libpython3.11-testsuite"
TEST_FILE = Path("/usr/lib/python3.11/test/test_concurrent_futures.py")
RUNNER = Path(__file__).with_name("cpython_cf_suite.py")


def _install() -> str | None:
    """Install :data:`PACKAGE`; None on success, else why it could not be."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    if os.geteuid() != 0:
        return "installing needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", PACKAGE]
    proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:   # a clean machine has no package lists yet
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True,
                       env=env, timeout=600)
        proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        return f"`{' '.join(install)}` failed: {proc.stderr.strip()[-500:]}"
    return None


@pytest.fixture(scope="session")
def cpython_cf_tests() -> Path:
    """The path of CPython 3.11's test_concurrent_futures.py, installed if missing."""
    if not TEST_FILE.exists():
        why = _install()
        if not TEST_FILE.exists():
            message = (f"{TEST_FILE} is missing and {PACKAGE} could not be installed: "
                       f"{why or 'the package did not provide the file'}")
            if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
                pytest.fail(message)
            pytest.skip(message)
    return TEST_FILE


def test_cpython_concurrent_futures_mixins_pass_on_client_executor(cpython_cf_tests,
                                                                    tmp_path):
    proc = subprocess.run([sys.executable, str(RUNNER), str(cpython_cf_tests),
                           str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=280)
    output = proc.stdout + proc.stderr
    session = re.search(r"^SESSION (\S+)$", proc.stdout, re.M)
    assert session, output
    assert_no_session_processes(session.group(1))
    assert proc.returncode == 0, output
    summary = re.search(r"^RESULT ran=(\d+) failures=0 errors=0 skipped=(\d+)$",
                        proc.stdout, re.M)
    assert summary, output
    # every mixin test ran, except the listed exclusions
    assert int(summary.group(2)) == len(EXCLUDED), output
    assert int(summary.group(1)) >= 25, output
