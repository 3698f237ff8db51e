"""Analytics from the journal (rp_executor/analytics): the model read beside a running
writer, the phases of units, states over time, utilization, throughput, the timeline's
packing, DataFrames and RADICAL-Pilot profiles. The journals are written here with the
session's own Journal class, with chosen timestamps, so the numbers can be checked."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from rp_executor import analytics, states
from rp_executor._core.journal import Journal
from rp_executor.analytics import metrics

T0 = 1_700_000_000.0

# the states of a unit's whole life, with the times (after T0) used below
LIFE = [("NEW,UMGR_SCHEDULING_PENDING", 0.0), ("UMGR_SCHEDULING,UMGR_STAGING_INPUT_PENDING", 1.0),
        ("UMGR_STAGING_INPUT", 1.5), ("AGENT_STAGING_INPUT_PENDING", 2.0),
        ("AGENT_STAGING_INPUT", 5.0), ("AGENT_SCHEDULING_PENDING,AGENT_SCHEDULING", 5.5),
        ("EXECUTING_PENDING,EXECUTING", 6.0),
        ("AGENT_STAGING_OUTPUT_PENDING,AGENT_STAGING_OUTPUT", 16.0),
        ("UMGR_STAGING_OUTPUT_PENDING,UMGR_STAGING_OUTPUT", 16.5), ("DONE", 17.0)]


class Writer:
    """A session journal written step by step, as a session writes it."""

    def __init__(self, directory: Path, uid: str = "rp.session.test.0000") -> None:
        self.dir = directory / uid
        self.dir.mkdir(parents=True)
        self.journal = Journal(self.dir / "session.sqlite")
        self.journal.add_session(uid, T0, {})
        self.journal.add_manager("pmgr.0000", "pmgr", T0)
        self.journal.add_manager("umgr.0000", "umgr", T0, "round_robin")

    def pilot(self, uid: str, cores: int, gpus: int = 0, active: float | None = None,
              ended: float | None = None, final: str = states.DONE) -> None:
        self.journal.add_pilots([(uid, "pmgr.0000", json.dumps(
            {"cores": cores, "gpus": gpus, "resource": "local.localhost"}))])
        self.journal.set_pilot_job(uid, "1234", str(self.dir / uid))
        self.pilot_states(uid, "NEW,PMGR_LAUNCHING_PENDING,PMGR_LAUNCHING", 0.0)
        if active is not None:
            self.journal.set_pilot_resources(uid, json.dumps({"cores": cores, "gpus": gpus}))
            self.pilot_states(uid, "PMGR_ACTIVE_PENDING,PMGR_ACTIVE", active)
        if ended is not None:
            self.pilot_states(uid, final, ended)

    def pilot_states(self, uid: str, names: str, at: float) -> None:
        self.journal.add_transitions([("pilot", uid, names, repr(T0 + at))])

    def units(self, uids: list[str], description: dict | None = None) -> None:
        self.journal.add_units([(uid, "umgr.0000", json.dumps(description or {}), None)
                                for uid in uids])

    def step(self, uid: str, names: str, *at: float) -> None:
        stamps = ",".join(repr(T0 + t) for t in at)
        self.journal.add_transitions([("unit", uid, names, stamps)])

    def life(self, uid: str, pilot: str, shift: float = 0.0,
             steps: list[tuple[str, float]] = LIFE) -> None:
        """A unit's life as in LIFE (or ``steps``), ``shift`` seconds later."""
        for names, at in steps:
            if names.startswith("UMGR_SCHEDULING,"):
                self.journal.bind_units(pilot, [uid])
            self.step(uid, names, at + shift)

    def ran(self, uid: str, pilot: str, start: float, stop: float,
            final: str = states.DONE) -> None:
        """A unit that executed from ``start`` to ``stop`` (its other states at once)."""
        self.journal.bind_units(pilot, [uid])
        self.step(uid, ",".join(states.UNIT_STATES[:10]), start)
        self.step(uid, "EXECUTING", start)
        self.step(uid, ",".join(states.UNIT_STATES[11:15]) + "," + final, stop)

    def close(self, at: float | None = None) -> Path:
        if at is not None:
            self.journal.close_session(self.dir.name, T0 + at)
        self.journal.close()
        return self.dir


def test_a_units_phases_add_up_to_its_life(tmp_path):
    w = Writer(tmp_path)
    w.pilot("pilot.0000", 2, active=5.0, ended=20.0)
    w.units(["unit.000000", "unit.000001"])
    w.life("unit.000000", "pilot.0000")
    w.step("unit.000001", "NEW,UMGR_SCHEDULING_PENDING", 0.0)
    w.step("unit.000001", "CANCELED", 3.0)
    model = analytics.load(w.close(at=21.0))

    first, canceled = analytics.unit_durations(model)
    assert first.uid == "unit.000000" and first.pilot == "pilot.0000" and first.state == "DONE"
    assert first.waiting_for_pilot == pytest.approx(1.0 + 3.0)   # scheduling, then the agent
    assert first.staging_in == pytest.approx(0.5 + 0.5 + 0.5)
    assert first.waiting_for_cores == pytest.approx(0.5)
    assert first.executing == pytest.approx(10.0)
    assert first.staging_out == pytest.approx(1.0)
    assert first.total == pytest.approx(17.0)
    phases = [getattr(first, p) for p in analytics.PHASES]
    assert sum(phases) == pytest.approx(first.total)
    # a unit canceled while it waited: the phases it never entered are None
    assert (canceled.state, canceled.pilot) == ("CANCELED", None)
    assert canceled.waiting_for_pilot == pytest.approx(3.0)
    assert canceled.executing is None and canceled.staging_out is None
    assert canceled.total == pytest.approx(3.0)


def test_a_unit_that_runs_is_counted_up_to_the_read(tmp_path):
    w = Writer(tmp_path)
    w.pilot("pilot.0000", 1, active=1.0)
    w.units(["unit.000000"])
    w.life("unit.000000", "pilot.0000", steps=LIFE[:7])     # executing since T0 + 6
    w.journal.flush()
    model = analytics.load(w.dir)
    try:
        (d,) = analytics.unit_durations(model)
        assert d.state == "EXECUTING"
        assert d.executing == pytest.approx(model.read_at - (T0 + 6.0))
        assert d.total == pytest.approx(model.read_at - T0)
        assert d.staging_out is None
        assert model.closed is None and model.status == "client gone"   # no client.json
    finally:
        w.close()


def test_states_over_time_count_every_unit_once(tmp_path):
    w = Writer(tmp_path)
    w.pilot("pilot.0000", 4, active=5.0, ended=30.0)
    w.units([f"unit.{i:06d}" for i in range(3)])
    for i in range(3):
        w.life(f"unit.{i:06d}", "pilot.0000", shift=float(i))
    model = analytics.load(w.close(at=30.0))

    rows = analytics.state_counts(model, interval=0.5)
    assert rows[0]["time"] == T0 and rows[-1]["time"] >= T0 + 30.0
    for row in rows:
        assert set(row) == {"time", *states.UNIT_STATES}
        assert sum(row[s] for s in states.UNIT_STATES) == sum(
            1 for i in range(3) if row["time"] >= T0 + i)
    at = {round(row["time"] - T0, 3): row for row in rows}
    assert at[7.0]["EXECUTING"] == 2 and at[7.0]["AGENT_SCHEDULING_PENDING"] == 0
    assert at[7.0]["AGENT_STAGING_INPUT"] == 1 and at[7.0]["AGENT_SCHEDULING"] == 0
    assert at[7.5]["AGENT_SCHEDULING"] == 1 and at[7.5]["AGENT_STAGING_INPUT"] == 0
    assert at[17.5]["DONE"] == 1 and at[17.5]["EXECUTING"] == 1
    assert at[25.0]["DONE"] == 3
    phases = analytics.phase_counts(model, interval=0.5)
    assert {k: v for k, v in phases[16].items() if k != "time"} == {
        "waiting_for_pilot": 0, "staging_in": 0, "waiting_for_cores": 0, "executing": 3,
        "staging_out": 0, "ended": 0}


def test_utilization_is_what_units_used_against_what_the_pilot_held(tmp_path):
    w = Writer(tmp_path)
    w.pilot("pilot.0000", 2, gpus=1, active=10.0, ended=30.0)
    w.pilot("pilot.0001", 4)                 # never became active: held nothing
    w.units(["unit.000000", "unit.000002"])
    w.units(["unit.000001"], {"cpu_processes": 2, "gpu_processes": 1})
    w.ran("unit.000000", "pilot.0000", 10.0, 20.0)
    w.ran("unit.000001", "pilot.0000", 20.0, 25.0)
    w.ran("unit.000002", "pilot.0000", 28.0, 40.0, final=states.FAILED)  # past the pilot
    model = analytics.load(w.close(at=41.0))

    assert list(model.cores) == [1, 1, 2] and list(model.gpus) == [0, 0, 1]
    used, idle = analytics.utilization(model)
    assert (used.pilot, used.cores, used.gpus, used.units) == ("pilot.0000", 2, 1, 3)
    assert (used.held_from, used.held_until) == (T0 + 10.0, T0 + 30.0)
    assert used.core_seconds_held == pytest.approx(40.0)
    assert used.core_seconds_used == pytest.approx(10.0 + 2 * 5.0 + 2.0)
    assert used.core_utilization == pytest.approx(22.0 / 40.0)
    assert used.gpu_utilization == pytest.approx(5.0 / 20.0)
    assert idle.held_from is None and idle.core_utilization is None and idle.units == 0

    over = [r for r in analytics.utilization_over_time(model, interval=1.0)
            if r["pilot"] == "pilot.0000"]
    at = {round(r["time"] - T0): r for r in over}
    assert (at[5]["cores_held"], at[5]["cores_used"]) == (0, 0)
    assert (at[12]["cores_held"], at[12]["cores_used"]) == (2, 1)
    assert (at[22]["cores_used"], at[22]["gpus_used"], at[22]["gpus_held"]) == (2, 1, 1)
    assert at[35]["cores_held"] == 0


def test_throughput_counts_units_where_they_ended(tmp_path):
    w = Writer(tmp_path)
    w.pilot("pilot.0000", 8, active=1.0, ended=10.0)
    uids = [f"unit.{i:06d}" for i in range(6)]
    w.units(uids)
    for k, uid in enumerate(uids):
        w.ran(uid, "pilot.0000", 1.0, 2.5 + k, final=states.FAILED if k == 5 else states.DONE)
    model = analytics.load(w.close(at=10.0))
    rows = analytics.throughput(model, interval=2.0)
    assert [r["done"] for r in rows] == [0, 2, 2, 1, 0]
    assert [r["failed"] for r in rows] == [0, 0, 0, 1, 0]
    assert [r["ended"] for r in rows] == [0, 2, 4, 6, 6]
    assert rows[1]["rate"] == pytest.approx(1.0)


def test_the_timeline_packs_units_on_rows_that_never_overlap(tmp_path):
    rng = random.Random(7)
    w = Writer(tmp_path)
    w.pilot("pilot.0000", 4, active=0.0, ended=100.0)
    uids = [f"unit.{i:06d}" for i in range(60)]
    w.units(uids[:40])
    w.units(uids[40:], {"cpu_processes": 2})
    # at most 4 cores busy at a time: a unit starts when the earliest row frees
    free = [0.0] * 4
    for k, uid in enumerate(uids):
        need = 2 if k >= 40 else 1
        free.sort()
        start = free[need - 1] + rng.random()
        stop = start + rng.uniform(0.5, 3.0)
        for j in range(need):
            free[j] = stop
        w.ran(uid, "pilot.0000", start, stop)
    model = analytics.load(w.close(at=200.0))
    bars = analytics.timeline(model)
    assert len(bars) == 60
    assert all(len(b.cores) == (2 if b.uid >= "unit.000040" else 1) for b in bars)
    assert max(row for b in bars for row in b.cores) < 4    # within the pilot's cores
    for row in range(4):
        spans = sorted((b.start, b.stop) for b in bars if row in b.cores)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), row


def test_the_model_reads_beside_a_running_writer_and_refreshes(tmp_path):
    w = Writer(tmp_path)
    w.pilot("pilot.0000", 2, active=1.0)
    w.units(["unit.000000"])
    w.life("unit.000000", "pilot.0000", steps=LIFE[:3])
    w.journal.flush()
    assert (w.dir / "session.sqlite-wal").exists()      # the writer is open
    model = analytics.load(w.dir)
    assert model.state_counts()["UMGR_STAGING_INPUT"] == 1
    assert model.refresh() is False                      # nothing new
    w.units(["unit.000001"])
    w.life("unit.000000", "pilot.0000", steps=LIFE[3:])
    w.journal.flush()
    assert model.refresh() is True
    counts = {s: n for s, n in model.state_counts().items() if n}
    assert counts == {"NEW": 1, "DONE": 1}              # a unit without states is NEW
    assert model.history(0) == [(s, T0 + at) for names, at in LIFE for s in names.split(",")]
    w.journal.close_session(w.dir.name, T0 + 50)
    w.journal.flush()
    model.refresh()
    assert model.closed == T0 + 50 and model.status == "closed"
    w.close()


def test_reading_a_closed_journal_leaves_no_files_behind(tmp_path):
    w = Writer(tmp_path)
    w.pilot("pilot.0000", 1, active=1.0, ended=2.0)
    path = w.close(at=3.0)
    before = sorted(p.name for p in path.iterdir())
    mtime = (path / "session.sqlite").stat().st_mtime_ns
    analytics.load(path)
    assert sorted(p.name for p in path.iterdir()) == before == ["session.sqlite"]
    assert (path / "session.sqlite").stat().st_mtime_ns == mtime


def test_units_hold_each_state_time_and_frames_match_the_records(tmp_path):
    pd = pytest.importorskip("pandas")
    w = Writer(tmp_path)
    w.pilot("pilot.0000", 2, active=5.0, ended=20.0)
    w.units(["unit.000000"])
    w.life("unit.000000", "pilot.0000")
    w.journal.set_unit_results([("pilot.0000", 0, "", "", None, None, None, None,
                                 "unit.000000")])
    model = analytics.load(w.close(at=21.0))
    (row,) = list(analytics.units(model))
    assert tuple(row) == metrics.UNIT_FIELDS + metrics.UNIT_TIMES
    assert row["exit_code"] == 0 and row["umgr"] == "umgr.0000" and row["cores"] == 1
    assert row["EXECUTING"] == T0 + 6.0 and row["DONE"] == T0 + 17.0
    assert row["FAILED"] is None and row["CANCELED"] is None

    frame = analytics.unit_durations_frame(model)
    assert isinstance(frame, pd.DataFrame)
    assert frame.to_dict("records") == metrics.as_dicts(analytics.unit_durations(model))
    assert analytics.utilization_frame(model).loc[0, "core_utilization"] == pytest.approx(
        analytics.utilization(model)[0].core_utilization)
    assert list(analytics.state_counts_frame(model).columns) == ["time",
                                                                 *states.UNIT_STATES]
    assert len(analytics.throughput_frame(model, samples=10)) == 10
    assert len(analytics.units_frame(model)) == 1
    assert list(analytics.timeline_frame(model)["uid"]) == ["unit.000000"]


def test_profiles_are_what_radical_utils_reads(tmp_path):
    ru = pytest.importorskip("radical.utils")
    w = Writer(tmp_path)
    w.pilot("pilot.0000", 2, active=5.0, ended=20.0)
    w.units(["unit.000000", "unit.000001"])
    w.life("unit.000000", "pilot.0000")
    w.life("unit.000001", "pilot.0000", shift=0.25)
    model = analytics.load(w.close(at=21.0))
    written = analytics.write_profiles(model, tmp_path / "profiles")
    assert [Path(p).name for p in written] == ["pmgr.0000.prof", "umgr.0000.prof"]
    lines = Path(written[1]).read_text().splitlines()
    assert lines[0] == "#time,event,comp,thread,uid,state,msg"
    assert lines[1].split(",")[1:4] == ["sync_abs", "umgr.0000", "MainThread"]
    assert lines[2] == f"{T0:.7f},advance,umgr.0000,MainThread,unit.000000,NEW,"

    profiles = ru.read_profiles(written, sid=model.uid)
    events, _ = ru.combine_profiles(profiles)
    got = {}
    for event in events:
        if event[ru.EVENT] == "advance":
            got.setdefault(event[ru.UID], []).append((event[ru.STATE], event[ru.TIME]))
    # combined profiles are timed from the first sync_abs: the session's creation
    assert got["unit.000001"] == [(s, pytest.approx(t - T0, abs=1e-6))
                                  for s, t in model.history(1)]
    assert [s for s, _ in got["pilot.0000"]] == [s for s, _ in model.pilots[
        "pilot.0000"].history]


def test_a_session_is_found_by_uid_or_path(tmp_path, monkeypatch):
    path = Writer(tmp_path).close()
    monkeypatch.chdir(tmp_path)
    assert analytics.find_session(path.name) == path
    assert analytics.find_session(str(path)) == path
    assert analytics.session_dirs(tmp_path) == [path]
    assert analytics.session_dirs(path) == [path]
    with pytest.raises(analytics.SessionNotFound, match=f"sessions under .*: {path.name}"):
        analytics.find_session("rp.session.nope")
    summary = analytics.summarize(path)
    assert (summary.uid, summary.created, summary.pilots, summary.units) == (
        path.name, T0, {}, {})


def test_a_large_session_is_read_in_seconds(tmp_path):
    """50,000 units as the session batches them; the model keeps them as columns."""
    w = Writer(tmp_path)
    w.pilot("pilot.0000", 1000, active=1.0)
    n = 50_000
    for b in range(0, n, 1000):
        uids = [f"unit.{i:06d}" for i in range(b, b + 1000)]
        w.units(uids)
        w.journal.add_transitions([("unit", u, "NEW,UMGR_SCHEDULING_PENDING", repr(T0 + 1))
                                   for u in uids])
        w.journal.bind_units("pilot.0000", uids)
        w.journal.add_transitions([("unit", u, ",".join(states.UNIT_STATES[2:11]),
                                    repr(T0 + 2)) for u in uids])
        w.journal.add_transitions([("unit", u, ",".join(states.UNIT_STATES[11:16]),
                                    repr(T0 + 3 + b / 1e4)) for u in uids])
    path = w.close(at=10.0)
    started = time.perf_counter()
    model = analytics.load(path)
    loaded = time.perf_counter() - started
    assert model.state_counts()["DONE"] == n
    assert analytics.utilization(model)[0].units == n
    assert analytics.state_counts(model)[-1]["DONE"] == n
    # about 0.8 s here; the bound leaves room for a loaded machine
    assert loaded < 20, loaded
