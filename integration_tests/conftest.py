"""Fixtures for end-to-end tests: real sessions, real local pilots, real processes.

Every session is made in a fresh temporary working directory (so its session
directory and the pilot sandboxes land there), is closed at teardown, and is then
checked for leftovers: no process of the session may survive it.
"""

from __future__ import annotations

import os

import pytest

import rp_executor as rp
from support import assert_no_session_processes


@pytest.fixture
def session(tmp_path, monkeypatch):
    """A session in a fresh working directory; closed, and checked for leftovers."""
    monkeypatch.chdir(tmp_path)
    s = rp.Session()
    try:
        yield s
    finally:
        s.close()
    assert_no_session_processes(s.uid)


@pytest.fixture
def pmgr(session):
    """A pilot manager of ``session``."""
    return rp.PilotManager(session)


@pytest.fixture
def pilot(pmgr):
    """An active local pilot with 2 cores and a runtime of 10 minutes."""
    p = pmgr.submit_pilots(rp.ComputePilotDescription(
        resource="local.localhost", cores=2, runtime=10))
    assert p.wait(rp.PMGR_ACTIVE, timeout=60) == rp.PMGR_ACTIVE, (p.state, p.log, p.stderr)
    return p


@pytest.fixture
def umgr(session, pilot):
    """A unit manager with ``pilot`` added."""
    m = rp.UnitManager(session)
    m.add_pilots(pilot)
    return m


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """One 2-core futures Client for a test module, its session in a fresh directory."""
    tmp = tmp_path_factory.mktemp("client")
    old = os.getcwd()
    os.chdir(tmp)
    c = rp.Client(cores=2, base_dir=tmp)
    try:
        yield c
    finally:
        c.close()
        os.chdir(old)
    assert_no_session_processes(c.session.uid)
