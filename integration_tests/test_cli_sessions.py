"""The ``rp-executor`` command line against real sessions: each subcommand runs as a
subprocess (the installed console script) on sessions made here, a finished one, one
that runs in another process, and one whose client was SIGKILLed; and radical.analytics
reads the profiles of a real session.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import tarfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import rp_executor as rp
from rp_executor import states
from support import assert_no_session_processes, session_processes, wait_for

SCRIPT = Path(sys.executable).parent / "rp-executor"


def cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``rp-executor args`` in ``cwd`` and return what it did."""
    assert SCRIPT.is_file(), f"no console script at {SCRIPT}: pip install -e '.[test]'"
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)


@dataclass
class Finished:
    """A closed session made by :func:`finished`."""

    cwd: Path
    uid: str
    path: Path
    pilot: str
    states: dict[str, str]          # unit uid -> final state
    history: dict[str, dict]        # unit uid -> {state: time}, from the journal
    created: float


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Finished:
    """A closed session: one 2-core pilot, units that succeed, fail and take 2 cores."""
    cwd = tmp_path_factory.mktemp("cli")
    old = os.getcwd()
    os.chdir(cwd)
    try:
        session = rp.Session()
        try:
            pmgr = rp.PilotManager(session)
            pilot = pmgr.submit_pilots(rp.ComputePilotDescription(
                resource="local.localhost", cores=2, runtime=10))
            umgr = rp.UnitManager(session)
            umgr.add_pilots(pilot)
            cuds = [rp.ComputeUnitDescription(executable="/bin/sleep", arguments=["0.3"])
                    for _ in range(4)]
            cuds += [rp.ComputeUnitDescription(executable="/bin/false"),
                     rp.ComputeUnitDescription(executable="/no/such/program"),
                     rp.ComputeUnitDescription(executable="/bin/sleep", arguments=["0.3"],
                                               cpu_processes=2)]
            units = umgr.submit_units(cuds)
            umgr.wait_units(timeout=120)
            final = {u.uid: u.state for u in units}
        finally:
            session.close()
        history: dict[str, dict] = {}
        for kind, uid, state, ts in session.journal.transitions():
            if kind == "unit":
                history.setdefault(uid, {})[state] = ts
    finally:
        os.chdir(old)
    assert_no_session_processes(session.uid)
    return Finished(cwd, session.uid, Path(session.path), pilot.uid, final, history,
                    session.created)


def test_the_finished_session_is_as_the_tests_expect(finished):
    assert list(finished.states.values()) == [rp.DONE] * 4 + [rp.FAILED] * 2 + [rp.DONE]


def test_list_shows_each_session_with_its_status_pilots_and_units(finished):
    done = cli("list", cwd=finished.cwd)
    assert done.returncode == 0, done.stderr
    header, line = done.stdout.splitlines()
    assert header.split() == ["UID", "START", "STATUS", "PILOTS", "UNITS"]
    assert line.startswith(finished.uid)
    assert "closed" in line and "1 (CANCELED 1)" in line
    assert line.endswith("7 (DONE 5, FAILED 2)")
    assert cli("list", str(finished.cwd), cwd=Path("/")).stdout == done.stdout
    empty = cli("list", cwd=finished.path)   # a session directory is its own list
    assert finished.uid in empty.stdout


def test_show_tells_pilots_units_failed_reasons_and_the_agent_log(finished):
    done = cli("show", finished.uid, cwd=finished.cwd)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"session  {finished.uid}" in out and f"path     {finished.path}" in out
    assert "status   closed at" in out
    assert f"  {finished.pilot}  CANCELED" in out and "2 cores, 0 GPUs" in out
    assert "units (7)" in out
    assert "  DONE                         5" in out
    assert "failed units (2)" in out
    failed = [uid for uid, s in finished.states.items() if s == rp.FAILED]
    assert f"  {failed[0]}  exit code 1\n" in out
    assert f"  {failed[1]}  exit code 127: rp_executor: cannot execute " \
           "'/no/such/program'" in out
    log_part = out.split(f"log of {finished.pilot} (the last 10 lines of ", 1)[1]
    assert "agent.log)" in log_part and "rp_executor.agent" in log_part
    by_path = cli("show", str(finished.path), "--lines", "2", cwd=Path("/"))
    assert by_path.returncode == 0, by_path.stderr
    assert f"log of {finished.pilot} (the last 2 lines of " in by_path.stdout


def test_a_session_that_is_not_there_is_a_clear_error(finished):
    done = cli("show", "rp.session.no.such", cwd=finished.cwd)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("rp-executor show: error: no session "
                                  "'rp.session.no.such'")
    assert finished.uid in done.stderr          # the sessions that are there


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_export_writes_a_row_per_unit_with_its_state_times(finished, fmt):
    target = finished.cwd / f"units.{fmt}"
    done = cli("export", finished.uid, "--format", fmt, "-o", str(target), cwd=finished.cwd)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote 7 unit(s) to {target}\n"
    text = target.read_text()
    if fmt == "json":
        rows = json.loads(text)
    else:
        rows = [{k: (v or None) for k, v in row.items()}
                for row in csv.DictReader(io.StringIO(text))]
    assert [row["uid"] for row in rows] == list(finished.states)
    for row in rows:
        uid = row["uid"]
        assert row["state"] == finished.states[uid]
        assert row["pilot"] == finished.pilot
        assert int(row["cores"]) == (2 if uid == "unit.000006" else 1)
        for state in states.UNIT_STATES:
            ts = finished.history[uid].get(state)
            assert (float(row[state]) if row[state] is not None else None) == ts, \
                (uid, state)
    assert [int(row["exit_code"]) for row in rows] == [0, 0, 0, 0, 1, 127, 0]
    # to standard output when no file is named
    out = cli("export", finished.uid, "--format", "csv", cwd=finished.cwd)
    assert out.stdout.splitlines()[0].startswith("uid,umgr,pilot,state,exit_code")
    assert len(out.stdout.splitlines()) == 8


@pytest.mark.parametrize("kind", ["timeline", "concurrency", "utilization"])
def test_plot_writes_a_png_with_content(finished, kind):
    from matplotlib.image import imread
    target = finished.cwd / f"{kind}.png"
    done = cli("plot", finished.uid, "--kind", kind, "-o", str(target), cwd=finished.cwd)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote {target}\n"
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000, len(data)
    pixels = imread(target)
    assert pixels.shape[:2] == (450, 1000)
    colours = {tuple(int(255 * c) for c in px[:3]) for row in pixels[::3] for px in row[::3]}
    assert len(colours) > 20, len(colours)        # not blank: text, axes, bars
    if kind == "timeline":     # units that succeeded and failed, in their colours
        assert (0x2c, 0xa0, 0x2c) in colours and (0xd6, 0x27, 0x28) in colours
    if kind == "concurrency":  # the executing phase's colour
        assert (0x1f, 0x77, 0xb4) in colours


def test_plot_names_its_file_after_the_session_by_default(finished):
    done = cli("plot", finished.uid, cwd=finished.cwd)
    assert done.returncode == 0, done.stderr
    assert (finished.cwd / f"{finished.uid}.timeline.png").is_file()


def test_bundle_packs_the_journal_and_logs_and_no_secrets(finished):
    target = finished.cwd / "report.tar.gz"
    done = cli("bundle", finished.uid, "-o", str(target), cwd=finished.cwd)
    assert done.returncode == 0, done.stderr
    assert f"wrote {target}" in done.stdout and "look before you share" in done.stdout
    assert target.stat().st_mode & 0o077 == 0
    with tarfile.open(target) as tar:
        names = tar.getnames()
        root = finished.uid
        assert f"{root}/session.sqlite" in names and f"{root}/show.txt" in names
        assert f"{root}/client.json" in names
        assert f"{root}/pilots/{finished.pilot}/agent.log" in names
        assert any(n.endswith(".sh.out") for n in names), names
        assert not [n for n in names if n.endswith(".key") or "cfg" in n], names
        tar.extractall(finished.cwd / "unpacked", filter="data")
    show = (finished.cwd / "unpacked" / root / "show.txt").read_text()
    assert f"session  {finished.uid}" in show and "failed units (2)" in show
    import sqlite3
    db = sqlite3.connect(finished.cwd / "unpacked" / root / "session.sqlite")
    assert db.execute("SELECT count(*) FROM units").fetchone() == (7,)
    db.close()


def test_close_leaves_a_closed_session_alone(finished):
    done = cli("close", finished.uid, cwd=finished.cwd)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"session {finished.uid} is closed already")


def test_fetched_profiles_are_what_radical_analytics_reads(session, pmgr, pilot, umgr):
    pytest.importorskip("radical.analytics")
    units = umgr.submit_units([rp.ComputeUnitDescription(executable="/bin/sleep",
                                                         arguments=["0.2"])
                               for _ in range(3)] +
                              [rp.ComputeUnitDescription(executable="/bin/false")])
    umgr.wait_units(timeout=60)
    session.close()
    written = session.fetch_profiles()
    assert sorted(Path(p).name for p in written) == [f"{pmgr.uid}.prof", f"{umgr.uid}.prof"]
    # in a process of its own: radical.analytics keeps state between sessions
    code = textwrap.dedent("""
        import json, sys
        import radical.analytics as ra
        s = ra.Session(sys.argv[1], 'radical')
        out = {"etypes": {e: sorted(x.uid for x in s.get(etype=e)) for e in s.list('etype')},
               "states": {x.uid: {st: ev[0] for st, ev in x.states.items()}
                          for x in s.get(etype=['unit', 'pilot'])},
               "executing": {x.uid: x.duration(state=['EXECUTING',
                                                      'AGENT_STAGING_OUTPUT_PENDING'])
                             for x in s.get(etype='unit')},
               "lifetime": {x.uid: x.duration(state=['NEW', ['DONE', 'FAILED', 'CANCELED']])
                            for x in s.get(etype=['unit', 'pilot'])}}
        print(json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", code, session.path], capture_output=True,
                          text=True, timeout=120, cwd=session.path)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.splitlines()[-1])
    assert got["etypes"]["unit"] == sorted(u.uid for u in units)
    assert got["etypes"]["pilot"] == [pilot.uid]
    journal: dict[str, dict] = {}
    for _, uid, state, ts in session.journal.transitions():
        journal.setdefault(uid, {})[state] = ts - session.created
    for uid in [u.uid for u in units] + [pilot.uid]:
        assert list(got["states"][uid]) == list(journal[uid]), uid
        for state, ts in journal[uid].items():
            assert got["states"][uid][state] == pytest.approx(ts, abs=1e-6), (uid, state)
        first, last = list(journal[uid].values())[0], list(journal[uid].values())[-1]
        assert got["lifetime"][uid] == pytest.approx(last - first, abs=1e-6)
    from rp_executor import analytics
    ours = {d.uid: d for d in analytics.unit_durations(analytics.load(session.path))}
    for uid, seconds in got["executing"].items():
        assert seconds == pytest.approx(ours[uid].executing, abs=1e-6)


# ----------------------------------------------------------------- running sessions

# A client that runs 6 one-second units on a 2-core pilot, then waits for the file
# named by its argument before it closes its session. It prints the session uid first.
RUNNING = textwrap.dedent("""
    import os, sys, time
    import rp_executor as rp
    release = sys.argv[1]
    with rp.Session() as session:
        print(session.uid, flush=True)
        pmgr = rp.PilotManager(session)
        umgr = rp.UnitManager(session)
        pilot = pmgr.submit_pilots(rp.ComputePilotDescription(
            resource="local.localhost", cores=2, runtime=10))
        umgr.add_pilots(pilot)
        umgr.submit_units([rp.ComputeUnitDescription(executable="/bin/sleep",
                                                     arguments=["1"]) for _ in range(6)])
        umgr.wait_units(timeout=120)
        deadline = time.monotonic() + 120
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.1)
""")


class Pty:
    """A process whose standard output is a terminal; what it writes is collected."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        master, slave = pty.openpty()
        self.proc = subprocess.Popen(args, cwd=cwd, stdout=slave, stderr=subprocess.PIPE,
                                     text=True)
        os.close(slave)
        self.master = master
        self.output = ""

    def read(self, timeout: float = 0.2) -> str:
        if select.select([self.master], [], [], timeout)[0]:
            try:
                self.output += os.read(self.master, 65536).decode("utf-8", "replace")
            except OSError:      # the process ended and closed the terminal
                pass
        return self.output

    def close(self) -> None:
        os.close(self.master)


def test_watch_follows_a_running_session_until_it_closes(tmp_path):
    release = tmp_path / "release"
    client = subprocess.Popen([sys.executable, "-c", RUNNING, str(release)], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watcher = terminal = None
    try:
        uid = client.stdout.readline().strip()
        assert uid.startswith("rp.session."), client.stderr.read()
        wait_for(lambda: (tmp_path / uid / "session.sqlite").is_file(), 30, "the journal")
        watcher = subprocess.Popen([str(SCRIPT), "watch", uid], cwd=tmp_path,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        terminal = Pty([str(SCRIPT), "watch", uid], cwd=tmp_path)
        # on a terminal it rewrites its three lines in place: up three lines, clear each
        wait_for(lambda: "EXECUTING 2" in terminal.read() and "\x1b[3F" in terminal.output,
                 60, f"watch to rewrite a running unit's count:\n{terminal.output!r}")
        assert "\x1b[2K" in terminal.output and "open" in terminal.output

        # the client runs: close refuses, and says why
        refused = cli("close", uid, cwd=tmp_path)
        assert refused.returncode == 1
        assert f"session {uid} is still open: its client, process {client.pid}" in \
            refused.stderr

        terminal.proc.send_signal(signal.SIGINT)      # Ctrl-C ends watching
        assert terminal.proc.wait(timeout=30) == 0
        assert "Traceback" not in terminal.proc.stderr.read()

        wait_for(lambda: _all_done(tmp_path / uid), 120, "the units to end")
        release.touch()
        out, err = watcher.communicate(timeout=60)   # ends by itself with the session
        assert watcher.returncode == 0, err
        lines = out.splitlines()
        assert any("EXECUTING" in line for line in lines), out
        assert "units 6: DONE 6" in lines[-2] and " closed " in lines[-2], out
        assert lines[-1].startswith(f"session {uid} closed at "), out
        assert client.wait(timeout=60) == 0, client.stderr.read()
    finally:
        for proc in (client, watcher, terminal.proc if terminal else None):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        if terminal is not None:
            terminal.close()
    assert_no_session_processes(uid)


def _all_done(path: Path) -> bool:
    from rp_executor import analytics
    return analytics.load(path).state_counts()["DONE"] == 6


# A client with a pilot and a long unit, which SIGKILLs itself once the unit runs.
KILLED = textwrap.dedent("""
    import os, signal
    import rp_executor as rp
    session = rp.Session(cfg={"reconnect_grace": 60.0})
    pmgr = rp.PilotManager(session)
    umgr = rp.UnitManager(session)
    pilot = pmgr.submit_pilots(rp.ComputePilotDescription(
        resource="local.localhost", cores=1, runtime=10))
    umgr.add_pilots(pilot)
    unit = umgr.submit_units(rp.ComputeUnitDescription(executable="/bin/sleep",
                                                       arguments=["300"]))
    unit.wait(rp.EXECUTING, timeout=60)
    session.journal.flush()
    print(session.uid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_close_ends_the_pilots_of_a_session_whose_client_was_killed(tmp_path):
    client = subprocess.run([sys.executable, "-c", KILLED], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert client.returncode == -signal.SIGKILL, client.stderr
    uid = client.stdout.strip()
    try:
        assert session_processes(uid), "the agent and its unit outlive the client"
        listed = cli("list", cwd=tmp_path)
        assert "client gone" in listed.stdout and "1 (PMGR_ACTIVE 1)" in listed.stdout

        done = cli("close", uid, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"closed {uid}; pilots: pilot.0000 CANCELED;"), \
            done.stdout
        assert_no_session_processes(uid, within=15)
        after = cli("list", cwd=tmp_path)
        assert " closed " in after.stdout and "1 (CANCELED 1)" in after.stdout
        assert "FAILED 1" in after.stdout       # lost with its pilot
    finally:
        for proc in session_processes(uid):
            proc.kill()
