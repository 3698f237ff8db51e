"""The session journal: batched writes on its writer thread, read back from a real
SQLite file."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import zlib

import pytest

from rp_executor import states
from rp_executor._core.journal import Journal, entries_of, to_json
from rp_executor.exceptions import DatabaseError

UNIT_WAY = [s for s in states.UNIT_STATES if s not in (states.FAILED, states.CANCELED)]


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "session.sqlite")
    try:
        yield j
    finally:
        j.close()


def rows(path, sql):
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_many_batched_unit_writes_read_back_complete_and_in_order(journal):
    n = 3000
    uids = [f"unit.{i:06d}" for i in range(n)]
    for start in range(0, n, 250):   # as submit_units calls it: one call per batch
        journal.add_units([(uid, "umgr.0000", to_json({"executable": "/bin/true", "i": i}), None)
                           for i, uid in enumerate(uids[start:start + 250], start)])
    journal.set_unit_results([("pilot.0000", i % 3, f"out {i}", "", None, None, None, None, uid)
                              for i, uid in enumerate(uids)])
    journal.flush()
    got = rows(journal.path, "SELECT uid, umgr, pilot, description, exit_code, stdout "
                             "FROM units ORDER BY rowid")
    assert [r[0] for r in got] == uids
    assert all(r[1] == "umgr.0000" and r[2] == "pilot.0000" for r in got)
    assert [json.loads(r[3])["i"] for r in got] == list(range(n))
    assert [(r[4], r[5]) for r in got] == [(i % 3, f"out {i}") for i in range(n)]


def test_transitions_read_back_one_per_state_in_the_order_they_were_added(journal):
    # as Manager._advance writes them: one call per batch, one entry per object, with
    # one stamp when the states share it and one stamp per state when they do not
    expected = []
    for batch in range(40):
        entries = []
        for i in range(50):
            uid = f"unit.{batch * 50 + i:06d}"
            t0 = 1000.0 + batch + i / 64
            if i % 2:
                names = UNIT_WAY[:3]
                entries.append(("unit", uid, ",".join(names), repr(t0)))
                expected += [("unit", uid, s, t0) for s in names]
            else:
                names = UNIT_WAY[3:7]
                stamps = [t0 + k * 0.1 for k in range(len(names))]
                entries.append(("unit", uid, ",".join(names),
                                ",".join(repr(t) for t in stamps)))
                expected += [("unit", uid, s, t) for s, t in zip(names, stamps)]
        journal.add_transitions(entries)
    journal.add_transitions([("pilot", "pilot.0000", "NEW,PMGR_LAUNCHING_PENDING", "5.5")])
    expected += [("pilot", "pilot.0000", "NEW", 5.5),
                 ("pilot", "pilot.0000", "PMGR_LAUNCHING_PENDING", 5.5)]
    journal.flush()
    assert journal.transitions() == expected
    assert journal.transitions("unit.000003") == [e for e in expected if e[1] == "unit.000003"]
    assert journal.transitions("pilot.0000") == expected[-2:]


def test_entries_of_one_call_are_grouped_by_states_and_times_each_object_in_order(journal):
    # 1,000 units report the same states at the same time (one agent report): one
    # group; a unit that comes twice in one call keeps its own order
    same = [("unit", f"unit.{i:06d}", UNIT_WAY[5:9], 7.25) for i in range(1000)]
    twice = [("unit", "unit.000002", UNIT_WAY[9:11], [8.0, 8.5])]
    journal.add_transitions(same + twice)
    journal.flush()
    (data,) = rows(journal.path, "SELECT entries FROM transitions")[0]
    groups = json.loads(zlib.decompress(data))
    assert groups == [[",".join(UNIT_WAY[5:9]), "7.25", [r[1] for r in same]],
                      [",".join(UNIT_WAY[9:11]), "8.0,8.5", ["unit.000002"]]]
    got = journal.transitions("unit.000002")
    assert got == [("unit", "unit.000002", s, 7.25) for s in UNIT_WAY[5:9]] + \
        [("unit", "unit.000002", UNIT_WAY[9], 8.0), ("unit", "unit.000002", UNIT_WAY[10], 8.5)]
    assert len(journal.transitions()) == 4 * 1000 + 2


def test_entries_of_reads_rows_of_journals_before_groups():
    old = [["unit.000001", "NEW,UMGR_SCHEDULING_PENDING", "1.5"],
           ["unit.000002", "NEW", "2.0"]]
    assert entries_of(zlib.compress(json.dumps(old).encode())) == old
    assert entries_of(json.dumps(old)) == old
    mixed = [["NEW", "3.0", ["unit.000003", "unit.000004"]], ["unit.000005", "NEW", "4.0"]]
    assert entries_of(zlib.compress(json.dumps(mixed).encode())) == [
        ["unit.000003", "NEW", "3.0"], ["unit.000004", "NEW", "3.0"],
        ["unit.000005", "NEW", "4.0"]]


def test_writes_from_many_threads_are_all_kept_each_in_its_thread_order(journal):
    def produce(k):
        for i in range(200):
            journal.add_transitions([("unit", f"unit.{k}", f"S{i}", repr(float(i)))])

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    journal.flush()
    for k in range(8):
        assert [state for _, _, state, _ in journal.transitions(f"unit.{k}")] == \
            [f"S{i}" for i in range(200)]


def test_everything_queued_before_close_is_in_the_file_after_it(tmp_path):
    path = tmp_path / "session.sqlite"
    j = Journal(path)
    j.add_session("rp.session.x", 1.5, {"heartbeat_interval": 1.0, "odd": object})
    j.add_manager("pmgr.0000", "pmgr", 2.0)
    j.add_manager("umgr.0000", "umgr", 2.5)
    j.add_pilots([("pilot.0000", "pmgr.0000", to_json({"cores": 4}))])
    j.set_pilot_job("pilot.0000", "job.17", "/tmp/sandbox/pilot.0000")
    for i in range(100):
        j.add_transitions([("unit", f"unit.{i:06d}", "NEW", repr(float(i)))])
    j.close()    # no flush: close writes what is queued
    (uid, created, cfg), = rows(path, "SELECT uid, created, cfg FROM session")
    assert (uid, created) == ("rp.session.x", 1.5)
    assert json.loads(cfg) == {"heartbeat_interval": 1.0, "odd": repr(object)}
    assert rows(path, "SELECT uid, kind, created FROM managers ORDER BY created") == \
        [("pmgr.0000", "pmgr", 2.0), ("umgr.0000", "umgr", 2.5)]
    assert rows(path, "SELECT uid, pmgr, description, job_id, sandbox FROM pilots") == \
        [("pilot.0000", "pmgr.0000", '{"cores": 4}', "job.17", "/tmp/sandbox/pilot.0000")]
    assert j.transitions() == [("unit", f"unit.{i:06d}", "NEW", float(i)) for i in range(100)]


def test_close_is_idempotent_and_flush_after_close_returns(tmp_path):
    j = Journal(tmp_path / "session.sqlite")
    j.add_manager("umgr.0000", "umgr", 1.0)
    j.close()
    j.close()
    j.flush()
    assert rows(j.path, "SELECT uid FROM managers") == [("umgr.0000",)]


WRITE_FAILED = r"writing the session journal .*session\.sqlite failed: " \
    r"UNIQUE constraint failed: units\.uid"

def test_a_failed_write_is_raised_by_the_next_flush_and_the_journal_goes_on(journal):
    journal.add_units([("unit.000000", "umgr.0000", "{}", None)])
    journal.flush()
    journal.add_units([("unit.000000", "umgr.0000", "{}", None)])    # the uid again
    try:
        with pytest.raises(DatabaseError, match=WRITE_FAILED):
            journal.flush(timeout=1)
    finally:
        journal._error = None   # the teardown's close is not what this test is about
    journal.add_units([("unit.000001", "umgr.0000", "{}", None)])
    journal.flush(timeout=1)
    assert rows(journal.path, "SELECT uid FROM units ORDER BY uid") == \
        [("unit.000000",), ("unit.000001",)]


def test_close_right_after_a_failed_write_returns_and_raises_it(tmp_path):
    # the flush and the stop queued behind a failing write are not lost with it
    j = Journal(tmp_path / "session.sqlite")
    j.add_units([("unit.000000", "umgr.0000", "{}", None)])
    j.flush()
    j.add_units([("unit.000000", "umgr.0000", "{}", None)])
    outcome: list = []

    def close():
        try:
            j.close()
        except DatabaseError as exc:
            outcome.append(exc)

    closer = threading.Thread(target=close, daemon=True)
    closer.start()
    closer.join(1)
    try:
        assert not closer.is_alive(), "close() did not return within 1 s"
        [error] = outcome
        assert re.fullmatch(WRITE_FAILED, str(error))
    finally:
        if closer.is_alive():
            j._queue.put(None)  # end the stuck writer, so that the closer ends too
            closer.join(5)


def test_a_journal_that_cannot_be_created_names_its_path(tmp_path):
    path = tmp_path / "missing" / "session.sqlite"
    with pytest.raises(DatabaseError, match=rf"cannot create the session journal {path}: "):
        Journal(path)


def test_the_journal_is_in_wal_mode(journal):
    assert rows(journal.path, "PRAGMA journal_mode") == [("wal",)]


def test_a_failed_write_loses_only_its_own_rows(journal):
    journal.add_units([("unit.000000", "umgr.0000", "{}", None)])
    journal.flush()
    # one batch: a good unit, the same uid again, another good unit
    journal.add_units([("unit.000001", "umgr.0000", "{}", None)])
    journal.add_units([("unit.000000", "umgr.0000", "{}", None)])
    journal.add_units([("unit.000002", "umgr.0000", "{}", None)])
    with pytest.raises(DatabaseError, match=WRITE_FAILED):
        journal.flush(timeout=5)
    assert rows(journal.path, "SELECT uid FROM units ORDER BY uid") == \
        [("unit.000000",), ("unit.000001",), ("unit.000002",)]


def test_functions_are_kept_once_and_a_reopened_journal_goes_on_after_their_ids(tmp_path):
    import pickle
    path = tmp_path / "session.sqlite"
    j = Journal(path)
    args = pickle.dumps(((1,), {}))
    try:
        fa, fb = j.function_id(b"fn-a"), j.function_id("os.path:join")
        assert j.function_id(b"fn-a") == fa and fb != fa
        j.add_units([("unit.000000", "umgr.0000", "{}", 1, fa, args),
                     ("unit.000001", "umgr.0000", '{"executable": "/bin/true"}', None,
                      None, None)])
        assert j.unit_description("unit.000000") == ("{}", b"fn-a", args)  # waits for it
        assert j.unit_description("unit.000001") == ('{"executable": "/bin/true"}',
                                                      None, None)
        assert j.unit_description("unit.999999") is None
    finally:
        j.close()
    again = Journal(path)
    try:
        fc = again.function_id(b"fn-c")
        assert fc > max(fa, fb)
        again.flush()
        assert rows(path, "SELECT id, data FROM functions ORDER BY id") == \
            [(fa, b"fn-a"), (fb, "os.path:join"), (fc, b"fn-c")]
    finally:
        again.close()


def test_description_records_say_whether_json_gives_the_description_back():
    import rp_executor as rp
    from rp_executor._core.journal import description_record
    exact = rp.ComputeUnitDescription(executable="/bin/sh", arguments=["-c", "x"],
                                      environment={"A": "1"}, metadata={"k": [1, None]})
    text, ok = description_record(exact)
    assert ok and json.loads(text) == exact.non_defaults()
    for inexact in (rp.ComputeUnitDescription(executable="/bin/true", metadata=(1, 2)),
                    rp.ComputeUnitDescription(executable="/bin/true", metadata={1: "a"}),
                    rp.ComputeUnitDescription(executable="/bin/true", metadata=object())):
        assert description_record(inexact)[1] is False
    fn = rp.ComputeUnitDescription(function=len, args=[[1]], kwargs={"k": 1})
    assert description_record(fn) == ("{}", True)   # the call is kept pickled beside it


def open_files_of(path):
    """This process's open file descriptors on ``path`` (or its -wal/-shm files)."""
    import os
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(path)):
            found.append(target)
    return found


def test_descriptions_are_read_through_one_connection_that_sees_later_rows(tmp_path):
    path = tmp_path / "session.sqlite"
    j = Journal(path)
    try:
        j.add_units([("unit.000000", "umgr.0000", '{"name": "a"}', None, None, None)])
        assert j.unit_description("unit.000000") == ('{"name": "a"}', None, None)
        reader = j._reader
        j.add_units([("unit.000001", "umgr.0000", '{"name": "b"}', None, None, None)])
        assert j.unit_description("unit.000001") == ('{"name": "b"}', None, None)
        assert j._reader is reader   # the same connection saw the later row

        j.add_units([(f"unit.{i:06d}", "umgr.0000", json.dumps({"name": str(i)}), None,
                      None, None) for i in range(2, 402)])
        j.flush()
        errors = []

        def read(start):
            for i in range(start, 402, 8):
                if j.unit_description(f"unit.{i:06d}")[0] != json.dumps({"name": str(i)}):
                    errors.append(i)

        threads = [threading.Thread(target=read, args=(2 + k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
    finally:
        j.close()
    assert open_files_of(path) == []   # the reader was closed with the journal
    # a closed journal's descriptions are still read, through a connection per read
    assert j.unit_description("unit.000001") == ('{"name": "b"}', None, None)
    assert open_files_of(path) == []
