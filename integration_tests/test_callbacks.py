"""State callbacks: every state once, in order, off the I/O thread, robust to errors."""

from __future__ import annotations

import threading

import pytest

import rp_executor as rp
from rp_executor.states import UNIT_STATES
from support import echo, wait_for

UNIT_PATH_TO_DONE = list(UNIT_STATES[:16])  # NEW ... UMGR_STAGING_OUTPUT, DONE
PILOT_PATH = [rp.NEW, rp.PMGR_LAUNCHING_PENDING, rp.PMGR_LAUNCHING, rp.PMGR_ACTIVE_PENDING,
              rp.PMGR_ACTIVE]


def test_unit_path_is_new_to_done():
    assert UNIT_PATH_TO_DONE[0] == rp.NEW
    assert UNIT_PATH_TO_DONE[-2:] == [rp.UMGR_STAGING_OUTPUT, rp.DONE]


@pytest.mark.timeout(60)
def test_unit_callbacks_see_every_state_once_in_order(session, umgr):
    seen_by_umgr: dict[str, list[str]] = {}
    seen_by_unit: dict[str, list[str]] = {}
    threads: set[str] = set()
    gate = threading.Event()
    lock = threading.Lock()

    def boom(unit, state):
        raise RuntimeError(f"a callback that fails on {unit.uid} {state}")

    def hold(unit, state):
        # the first call holds the callback thread until the unit callbacks below are
        # registered, so that they are in place before the units' first states are
        # delivered (callbacks run in order: everything queued later waits here)
        gate.wait(10)

    def on_umgr(unit, state):
        with lock:
            seen_by_umgr.setdefault(unit.uid, []).append(state)
            threads.add(threading.current_thread().name)

    def on_unit(unit, state, data):
        with lock:
            seen_by_unit.setdefault(unit.uid, []).append(state)
            threads.add(threading.current_thread().name)
        assert data == "cb-data"
        raise ValueError("unit callbacks may fail too")

    umgr.register_callback(hold)
    umgr.submit_units(echo("gate"))
    umgr.register_callback(boom)
    umgr.register_callback(on_umgr)
    units = umgr.submit_units([echo("cb", str(i)) for i in range(8)])
    for u in units:
        u.register_callback(on_unit, cb_data="cb-data")
    gate.set()
    assert umgr.wait_units(timeout=30) == [rp.DONE] * 9

    def all_done():
        with lock:
            return all(seen_by_umgr.get(u.uid, [None])[-1] == rp.DONE and
                       seen_by_unit.get(u.uid, [None])[-1] == rp.DONE for u in units)
    wait_for(all_done, 10, "the DONE callbacks")

    for u in units:
        assert seen_by_umgr[u.uid] == UNIT_PATH_TO_DONE, u.uid
        assert seen_by_unit[u.uid] == UNIT_PATH_TO_DONE, u.uid
        history = u.state_history
        assert [s for s, _ in history] == UNIT_PATH_TO_DONE
        stamps = [t for _, t in history]
        assert stamps == sorted(stamps), history
    assert threads and "rp-wire" not in threads and threading.main_thread().name not in threads


@pytest.mark.timeout(60)
def test_pilot_callbacks_see_every_state_once_in_order(session, pmgr):
    seen: list[tuple[str, str]] = []
    threads: set[str] = set()

    def boom(pilot, state):
        raise RuntimeError("a pilot callback that fails")

    def on_pilot(pilot, state):
        seen.append((pilot.uid, state))
        threads.add(threading.current_thread().name)

    pmgr.register_callback(boom)
    pmgr.register_callback(on_pilot)
    pilot = pmgr.submit_pilots(rp.ComputePilotDescription(
        resource="local.localhost", cores=1, runtime=10))
    assert pilot.wait(rp.PMGR_ACTIVE, timeout=60) == rp.PMGR_ACTIVE
    pilot.cancel()
    assert pilot.state == rp.CANCELED
    wait_for(lambda: len(seen) == len(PILOT_PATH) + 1, 10, "the final pilot callback")

    assert seen == [(pilot.uid, s) for s in PILOT_PATH + [rp.CANCELED]]
    history = pilot.state_history
    assert [s for s, _ in history] == PILOT_PATH + [rp.CANCELED]
    stamps = [t for _, t in history]
    assert stamps == sorted(stamps), history
    assert threads and "rp-wire" not in threads and threading.main_thread().name not in threads


@pytest.mark.timeout(120)
def test_every_callback_of_a_state_reached_before_close_has_run_when_close_returns(
        tmp_path, monkeypatch):
    import time
    monkeypatch.chdir(tmp_path)
    session = rp.Session()
    done: list[str] = []

    def slow(unit, state):
        time.sleep(0.0005)   # a callback that takes its time, as users' do
        if state == rp.DONE:
            done.append(unit.uid)

    try:
        pilot = rp.PilotManager(session).submit_pilots(rp.ComputePilotDescription(
            resource="local.localhost", cores=2, runtime=10))
        umgr = rp.UnitManager(session)
        umgr.add_pilots(pilot)
        umgr.register_callback(slow)
        units = umgr.submit_units([rp.ComputeUnitDescription(function=len, args=[[i]])
                                   for i in range(2000)])
        assert set(umgr.wait_units(timeout=90)) == {rp.DONE}
    finally:
        session.close()
    assert sorted(done) == sorted(u.uid for u in units)


def test_the_session_directory_and_journal_are_the_owners_only(tmp_path, monkeypatch):
    import os
    import stat
    monkeypatch.chdir(tmp_path)
    with rp.Session() as session:
        assert stat.S_IMODE(os.stat(session.path).st_mode) == 0o700
        journal = os.path.join(session.path, "session.sqlite")
        assert stat.S_IMODE(os.stat(journal).st_mode) == 0o600
