"""An ended unit keeps only what a user can still read, compactly; nothing readable
disappears: a DONE unit's description comes back from the journal as it was. What a
bulk submit made is freed once its session closed and nothing refers to it."""

from __future__ import annotations

import gc
import sqlite3
import tracemalloc
import weakref

import rp_executor as rp
from rp_executor.unit import StoredDescription
from rp_executor.unit_manager import _FREEZE_FROM
from support import assert_no_session_processes


def add(a, b=0):
    return a + b


def test_a_done_units_description_comes_back_from_the_journal(umgr):
    cuds = [
        rp.ComputeUnitDescription(function=add, args=[2], kwargs={"b": 5}, name="f"),
        rp.ComputeUnitDescription(function="os.path:join", args=["a", "b"]),
        rp.ComputeUnitDescription(executable="/bin/sh", arguments=["-c", "echo $X"],
                                  environment={"X": "1"}, metadata={"k": [1, "two"]},
                                  sandbox="mine", pre_exec=["true"]),
        # a tuple inside metadata: JSON would give back a list, so it stays in memory
        rp.ComputeUnitDescription(executable="/bin/true", metadata={"t": (1, 2)}),
        rp.ComputeUnitDescription(executable="/bin/false"),
    ]
    before = [d.as_dict() for d in cuds]
    units = umgr.submit_units(cuds)
    umgr.wait_units(timeout=60)
    assert [u.state for u in units] == [rp.DONE] * 4 + [rp.FAILED]
    kinds = [type(u._description) for u in units]
    assert kinds[:3] == [StoredDescription] * 3, kinds
    assert kinds[3:] == [rp.ComputeUnitDescription] * 2, kinds   # tuple; FAILED
    for unit, expected in zip(units, before):
        assert unit.description == expected, unit.uid
    assert units[0].name == "f" and units[0].description["function"] is add
    assert units[0].return_value == 7 and units[1].return_value == "a/b"
    assert units[2].metadata == {"k": [1, "two"]} and units[2].stdout == "1\n"
    assert units[2].unit_sandbox.endswith("/mine")
    assert units[3].metadata == {"t": (1, 2)}
    assert units[4].exit_code == 1
    # the history is kept packed and reads as before, as the journal has it
    for unit in units:
        assert isinstance(unit._history, bytes)
        history = unit.state_history
        assert history[0][0] == rp.NEW and history[-1][0] == unit.state
        umgr.session._journal.flush()
        assert [(s, t) for _, _, s, t in umgr.session._journal.transitions(unit.uid)] \
            == history


def test_ended_units_hold_a_fraction_of_what_live_ones_do(umgr):
    warm = umgr.submit_units([rp.ComputeUnitDescription(function=add, args=[1])] * 20)
    umgr.wait_units([u.uid for u in warm], timeout=60)
    n = 3000
    tracemalloc.start()
    try:
        start = tracemalloc.take_snapshot()
        units = umgr.submit_units([rp.ComputeUnitDescription(function=add, args=[i])
                                   for i in range(n)])
        umgr.wait_units(timeout=120)
        # rows queued for the writer and callbacks queued for their thread are not
        # what the units hold
        umgr.session._journal.flush()
        assert umgr.session._callbacks.flush(60)
        held = sum(s.size_diff for s in
                   tracemalloc.take_snapshot().compare_to(start, "filename"))
    finally:
        tracemalloc.stop()
    assert all(u.state == rp.DONE for u in units)
    assert [u.return_value for u in units[:3]] == [0, 1, 2]
    # ~600 bytes a unit here (the unit, its uid, outcome, packed history, the
    # managers' tables) against ~2,300 before ended units were compacted
    assert held / n < 1200, held / n


def test_the_journal_keeps_every_state_compressed(umgr):
    units = umgr.submit_units([rp.ComputeUnitDescription(function=add, args=[i])
                               for i in range(500)])
    umgr.wait_units(timeout=60)
    journal = umgr.session._journal
    journal.flush()
    db = sqlite3.connect(journal.path)
    try:
        kinds = {type(e) for (e,) in db.execute("SELECT entries FROM transitions")}
        (text,) = db.execute("SELECT description FROM units WHERE uid = ?",
                             (units[0].uid,)).fetchone()
    finally:
        db.close()
    assert kinds == {bytes}
    assert text == "{}"     # the function and its arguments are kept pickled beside it
    for unit in units[:: 50]:
        assert [s for _, _, s, _ in journal.transitions(unit.uid)] == \
            [s for s, _ in unit.state_history]


def test_a_bulk_submits_units_are_collected_once_their_session_closed(tmp_path,
                                                                       monkeypatch):
    # a submit of this many freezes what it made (out of the collector's runs); the
    # session's close gives it back, and its units and managers go when unreferenced
    monkeypatch.chdir(tmp_path)
    session = rp.Session()
    try:
        pmgr = rp.PilotManager(session)
        pilot = pmgr.submit_pilots(rp.ComputePilotDescription(
            resource="local.localhost", cores=2, runtime=10))
        umgr = rp.UnitManager(session)
        umgr.add_pilots(pilot)
        units = umgr.submit_units([rp.ComputeUnitDescription(function=add, args=[i])
                                   for i in range(_FREEZE_FROM)])
        assert gc.get_freeze_count() > 0
        assert set(umgr.wait_units(timeout=120)) == {rp.DONE}
        assert units[-1].return_value == _FREEZE_FROM - 1
        refs = [weakref.ref(obj) for obj in (session, umgr, pmgr, pilot)]
    finally:
        session.close()
    assert gc.get_freeze_count() == 0
    uid = session.uid
    del session, pmgr, pilot, umgr, units
    gc.collect()
    assert [ref() for ref in refs] == [None] * 4
    assert_no_session_processes(uid)
