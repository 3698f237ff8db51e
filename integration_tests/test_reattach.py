"""A client that dies is not the end of its pilots: a new one reattaches, or the agents
end by themselves after ``reconnect_grace``; every unit ends exactly once.

The dying client is a real process (``client_script``) that SIGKILLs itself at a
chosen point; the test process reattaches with ``rp.Session(uid=...)``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import rp_executor as rp
from rp_executor.exceptions import IncorrectState
from support import assert_no_session_processes, session_processes, wait_for

FIGURES: dict[str, float] = {}

# A client that submits a mix of units to one 2-core pilot, then SIGKILLs itself at
# the point named by its first argument. It prints the session uid first.
CLIENT = textwrap.dedent('''
    import os, signal, sys, threading, time
    import rp_executor as rp

    point, grace = sys.argv[1], float(sys.argv[2])

    def square(x):
        import time
        time.sleep(1.5)
        return x * x

    def die():
        session.journal.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    session = rp.Session(cfg={"reconnect_grace": grace, "heartbeat_timeout": 5.0})
    print(session.uid, flush=True)
    pmgr = rp.PilotManager(session)
    umgr = rp.UnitManager(session)
    pilot = pmgr.submit_pilots(rp.ComputePilotDescription(
        resource="local.localhost", cores=2, runtime=10))
    umgr.add_pilots(pilot)
    if point == "before_start":
        pilot.wait(rp.PMGR_ACTIVE_PENDING, timeout=60)
    cuds = [rp.ComputeUnitDescription(executable="/bin/echo", arguments=["quick"])]
    for i in range(3):
        cuds.append(rp.ComputeUnitDescription(executable="/bin/sh",
                                              arguments=["-c", f"sleep 2; echo out{i}"]))
    for i in range(2):
        cuds.append(rp.ComputeUnitDescription(function=square, args=[i + 3]))
    if point == "staging":
        with open("big.dat", "wb") as fh:
            fh.write(os.urandom(1 << 20))
        cuds.append(rp.ComputeUnitDescription(
            executable="/bin/sh", arguments=["-c", "sleep 1; wc -c < big.dat"],
            input_staging=["big.dat"], output_staging=[{"source": "big.dat",
                                                        "target": "back.dat"}]))
    cuds.append(rp.ComputeUnitDescription(executable="/bin/sh",
                                          arguments=["-c", "sleep %s; echo long" % sys.argv[3]]))
    units = umgr.submit_units(cuds)
    if point == "before_start":
        die()
    if point == "staging":
        units[-2].wait(rp.AGENT_STAGING_INPUT, timeout=60)
        die()
    units[0].wait(timeout=60)
    if point == "mid_run":
        die()
    if point == "closing":
        threading.Timer(0.2, die).start()
        session.close()
        time.sleep(30)   # the timer fires during close
    raise SystemExit("not reached")
''')


def _run_client(tmp_path: Path, point: str, grace: float, long: float = 6) -> str:
    """Run the dying client in ``tmp_path``; returns the uid of its session."""
    script = tmp_path / "dying_client.py"
    script.write_text(CLIENT)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(script), point, str(grace), str(long)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr)
    FIGURES[f"client run until SIGKILL ({point})"] = time.monotonic() - started
    return proc.stdout.split()[0]


def _final_states_in_journal(session: rp.Session) -> dict[str, list[str]]:
    finals: dict[str, list[str]] = {}
    for kind, uid, state, _ in session.journal.transitions():
        if kind == "unit" and state in rp.FINAL_STATES:
            finals.setdefault(uid, []).append(state)
    return finals


def _no_duplicate_states(session: rp.Session, uid: str) -> None:
    states = [s for _, _, s, _ in session.journal.transitions(uid)]
    assert len(states) == len(set(states)), (uid, states)


@pytest.fixture
def cleanup():
    """Sessions the test made or reattached: closed and swept at the end."""
    made: list[tuple[rp.Session | None, str]] = []
    yield made
    for session, uid in made:
        if session is not None:
            session.close()
        left = session_processes(uid)
        for proc in left:
            proc.kill()
        assert not left, f"processes of {uid} were left"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("point", ["mid_run", "before_start", "staging", "closing"])
def test_a_new_client_reattaches_and_every_unit_ends_once(tmp_path, monkeypatch, cleanup,
                                                          point):
    monkeypatch.chdir(tmp_path)
    uid = _run_client(tmp_path, point, grace=60)
    cleanup.append((None, uid))
    killed = time.monotonic()
    if point == "mid_run":
        time.sleep(3)   # units end while no client is attached

    started = time.monotonic()
    session = rp.Session(uid=uid)
    cleanup[-1] = (session, uid)
    pmgrs, umgrs = session.get_pilot_managers(), session.get_unit_managers()
    assert len(pmgrs) == 1 and len(umgrs) == 1
    umgr = umgrs[0]
    units = umgr.get_units()
    FIGURES[f"reattach: Session(uid) to every unit visible ({point})"] = \
        time.monotonic() - started
    expected = 8 if point == "staging" else 7
    assert [u.uid for u in units] == [f"unit.{i:06d}" for i in range(expected)]
    (pilot,) = pmgrs[0].get_pilots()
    assert pilot.state_history[0][0] == rp.NEW
    for u in units:
        assert u.state_history[0][0] == rp.NEW, u.state_history
    at_reattach = {u.uid: u.state for u in units}

    seen: list[tuple[str, str]] = []
    umgr.register_callback(lambda unit, state: seen.append((unit.uid, state)))
    states = umgr.wait_units(timeout=90)
    FIGURES[f"client SIGKILL to every unit final ({point})"] = time.monotonic() - killed
    if point == "closing":
        # the dying close had canceled the pilot or was about to: units end either
        # way, once; those that ran to the end are DONE with their output
        assert all(s in rp.FINAL_STATES for s in states), states
    elif point == "before_start":
        # nothing had reached the agent: every unit is sent again from the journal,
        # function units too (it keeps their pickled function and arguments)
        assert states == [rp.DONE] * expected, [(u.uid, u.state, u.stderr) for u in units]
        for u in units[4:6]:
            d = u.description
            assert d["function"].__name__ == "square" and d["args"] == [int(u.uid[-1]) - 1], d
    else:
        assert states == [rp.DONE] * expected, [(u.uid, u.state, u.stderr) for u in units]
    for u in units:
        if u.state != rp.DONE:
            assert u.stderr, u.uid
            continue
        name = u.description.get("executable")
        if u.uid == "unit.000000":
            assert u.stdout == "quick\n"
        elif u.uid in ("unit.000001", "unit.000002", "unit.000003"):
            assert u.stdout == f"out{int(u.uid[-1]) - 1}\n", (u.uid, u.stdout)
        elif u.uid in ("unit.000004", "unit.000005"):
            assert u.return_value == (int(u.uid[-1]) - 1) ** 2, (u.uid, u.return_value)
        elif u.uid == units[-1].uid:
            assert u.stdout == "long\n"
        else:
            assert name == "/bin/sh" and u.stdout.strip() == str(1 << 20)
            assert (tmp_path / "back.dat").stat().st_size == 1 << 20
    session.close()   # every callback of a state reached before has run now
    assert_no_session_processes(uid, within=10)
    # callbacks fire for what happens after the reattach, once per state
    for u in units:
        mine = [s for who, s in seen if who == u.uid]
        assert len(mine) == len(set(mine)), (u.uid, mine)
        if at_reattach[u.uid] in rp.FINAL_STATES:
            assert mine == [], (u.uid, mine)
        else:
            assert mine and mine[-1] == u.state, (u.uid, at_reattach[u.uid], mine)
    finals = _final_states_in_journal(session)
    assert {uid: s for uid, s in finals.items()} == {u.uid: [u.state] for u in units}
    for u in units:
        _no_duplicate_states(session, u.uid)


BUSY_CLIENT = textwrap.dedent('''
    import os, signal, sys, time
    import rp_executor as rp

    n = int(sys.argv[1])
    session = rp.Session(cfg={"reconnect_grace": 60})
    print(session.uid, flush=True)
    pmgr, umgr = rp.PilotManager(session), rp.UnitManager(session)
    umgr.add_pilots(pmgr.submit_pilots(rp.ComputePilotDescription(
        resource="local.localhost", cores=2, runtime=10)))
    units = umgr.submit_units([rp.ComputeUnitDescription(executable="/bin/true")
                               for _ in range(n)])
    while sum(u.is_final for u in units) < n // 4:
        time.sleep(0.05)
    session.journal.flush()
    os.kill(os.getpid(), signal.SIGKILL)
''')


@pytest.mark.timeout(180)
def test_a_client_reattaching_while_an_agent_reports_gets_every_report_once(
        tmp_path, monkeypatch, cleanup):
    # the agent keeps reporting while the new client rebuilds the session: nothing
    # may be applied to a half-built session, and nothing may be lost or doubled
    monkeypatch.chdir(tmp_path)
    (tmp_path / "busy_client.py").write_text(BUSY_CLIENT)
    n = 20000
    proc = subprocess.run([sys.executable, "busy_client.py", str(n)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)
    uid = proc.stdout.split()[0]
    cleanup.append((None, uid))
    session = rp.Session(uid=uid)
    cleanup[-1] = (session, uid)
    umgr = session.get_unit_managers()[0]
    units = umgr.get_units()
    assert len(units) == n
    assert umgr.wait_units(timeout=120) == [rp.DONE] * n
    session.close()
    finals = _final_states_in_journal(session)
    assert finals == {u.uid: [rp.DONE] for u in units}


@pytest.mark.timeout(120)
def test_past_the_grace_agents_end_and_a_late_client_finds_every_unit_final(
        tmp_path, monkeypatch, cleanup):
    monkeypatch.chdir(tmp_path)
    grace = 3.0
    uid = _run_client(tmp_path, "mid_run", grace=grace, long=300)
    cleanup.append((None, uid))
    killed = time.monotonic()
    wait_for(lambda: not session_processes(uid), grace + 15 + 30,
             "every process of the session to end after the grace")
    gone = time.monotonic() - killed
    FIGURES["client SIGKILL to no process left (reconnect_grace 3 s)"] = gone

    session = rp.Session(uid=uid)
    cleanup[-1] = (session, uid)
    umgr = session.get_unit_managers()[0]
    units = umgr.get_units()
    (pilot,) = session.get_pilot_managers()[0].get_pilots()
    assert umgr.wait_units(timeout=30) and all(u.is_final for u in units), \
        [(u.uid, u.state) for u in units]
    assert pilot.state == rp.FAILED, (pilot.state, pilot.log)
    assert any("reconnect_grace" in line for line in pilot.log), pilot.log
    lost = units[-1]
    assert lost.state == rp.FAILED
    assert "client lost for longer than reconnect_grace" in lost.stderr, lost.stderr
    for u in units:
        assert u.state in (rp.DONE, rp.FAILED), (u.uid, u.state)
        if u.state == rp.FAILED:
            assert "client lost for longer than reconnect_grace" in u.stderr, \
                (u.uid, u.stderr)
    session.close()
    finals = _final_states_in_journal(session)
    assert finals == {u.uid: [u.state] for u in units}


@pytest.mark.timeout(120)
def test_agents_follow_a_client_that_could_not_take_the_old_port(tmp_path, monkeypatch,
                                                                 cleanup):
    monkeypatch.chdir(tmp_path)
    uid = _run_client(tmp_path, "mid_run", grace=60)
    cleanup.append((None, uid))
    old = json.loads((tmp_path / uid / "client.json").read_text())["endpoint"]
    port = int(old.rsplit(":", 1)[1])
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    try:
        session = rp.Session(uid=uid)
        cleanup[-1] = (session, uid)
        new = json.loads((tmp_path / uid / "client.json").read_text())["endpoint"]
        assert new != old
        umgr = session.get_unit_managers()[0]
        assert umgr.wait_units(timeout=90) == [rp.DONE] * 7, \
            [(u.uid, u.state, u.stderr) for u in umgr.get_units()]
    finally:
        blocker.close()


def test_a_session_whose_client_runs_cannot_be_reattached(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import rp_executor as rp, sys; s = rp.Session(); "
                               "print(s.uid, flush=True); sys.stdin.read(); s.close()"],
        cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        uid = proc.stdout.readline().strip()
        with pytest.raises(IncorrectState, match=f"still open in process {proc.pid}"):
            rp.Session(uid=uid)
    finally:
        proc.communicate("", timeout=30)
    assert proc.returncode == 0


def test_session_files_are_private(tmp_path, monkeypatch, cleanup):
    monkeypatch.chdir(tmp_path)
    session = rp.Session()
    cleanup.append((session, session.uid))
    directory = Path(session.path)
    assert directory.stat().st_mode & 0o777 == 0o700
    for name in ("session.sqlite", "client.key", "client.json"):
        assert (directory / name).stat().st_mode & 0o777 == 0o600, name
    assert "secret" in json.loads((directory / "client.key").read_text())


def teardown_module(module):
    if FIGURES:
        lines = [f"{value:8.2f} s  {name}" for name, value in FIGURES.items()]
        report = Path(os.environ.get("RP_FIGURES_DIR", "build")) / "reattach_times.txt"
        try:
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text("\n".join(lines) + "\n")
        except OSError:
            pass
        print("\n" + "\n".join(lines))
