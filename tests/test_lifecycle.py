"""The state engine: ``Manager._advance`` with a real journal and a real callback
thread, as a Session gives them to its managers; no pilots."""

from __future__ import annotations

import threading
import time

import pytest

from rp_executor import states
from rp_executor._core.journal import Journal
from rp_executor._core.lifecycle import CallbackThread, Manager, Stateful
from rp_executor.constants import PMGR_METRICS, UMGR_METRICS

S = states
UNIT_WAY = [s for s in S.UNIT_STATES if s not in (S.FAILED, S.CANCELED)]   # NEW .. DONE
PILOT_WAY = [s for s in S.PILOT_STATES if s not in (S.FAILED, S.CANCELED)]


class SessionStandIn:
    """What a manager uses of its Session: the journal and the callback thread."""

    def __init__(self, path) -> None:
        self._journal = Journal(path / "session.sqlite")
        self._callbacks = CallbackThread()

    def close(self) -> None:
        self._callbacks.close()
        self._journal.close()


class Things(Manager):
    """A manager of units, as UnitManager is one to the engine."""

    _kind = "unit"
    _metrics = tuple(UMGR_METRICS)


class Pilots(Manager):
    """A manager of pilots, as PilotManager is one to the engine."""

    _kind = "pilot"
    _metrics = tuple(PMGR_METRICS)


class Thing(Stateful):
    """A unit, as the engine sees one (no description: the engine never reads it)."""

    __slots__ = ()
    _kind = "unit"

    def __init__(self, uid: str, manager: Manager) -> None:
        super().__init__(uid, manager, None)


class Pilot(Thing):
    """A pilot, as the engine sees one."""

    __slots__ = ()
    _kind = "pilot"


@pytest.fixture
def session(tmp_path):
    s = SessionStandIn(tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def mgr(session):
    return Things(session, "umgr.0000")


def between(after: str, upto: str) -> list[str]:
    """The unit states after ``after`` up to and including ``upto``."""
    return UNIT_WAY[UNIT_WAY.index(after) + 1:UNIT_WAY.index(upto) + 1]


def advance(mgr: Manager, obj: Stateful, *steps: tuple[str, float]) -> list:
    with mgr._lock:
        return mgr._advance([(obj, steps)])


def recorder(calls: list):
    """A callback recording ``(who, uid, state, thread)``; ``who`` is its cb_data."""
    def cb(obj, state, who):
        calls.append((who, obj.uid, state, threading.current_thread().name))
    return cb


# --------------------------------------------------------------------------- history

def test_skipped_states_are_filled_in_with_the_reporters_timestamps(mgr):
    unit = Thing("unit.000000", mgr)
    advance(mgr, unit, (S.NEW, 1.0), (S.UMGR_SCHEDULING_PENDING, 2.0))
    # the agent reports two states; those between were passed by the time of each
    advance(mgr, unit, (S.AGENT_STAGING_INPUT_PENDING, 3.0), (S.EXECUTING, 4.0))
    advance(mgr, unit, (S.DONE, 5.0))
    assert unit.state_history == [
        (S.NEW, 1.0), (S.UMGR_SCHEDULING_PENDING, 2.0),
        *[(s, 3.0) for s in between(S.UMGR_SCHEDULING_PENDING, S.AGENT_STAGING_INPUT_PENDING)],
        *[(s, 4.0) for s in between(S.AGENT_STAGING_INPUT_PENDING, S.EXECUTING)],
        *[(s, 5.0) for s in between(S.EXECUTING, S.DONE)]]
    assert [s for s, _ in unit.state_history] == UNIT_WAY
    assert unit.state == S.DONE


def test_every_transition_is_journaled_with_its_timestamp(mgr, session):
    unit = Thing("unit.000000", mgr)
    advance(mgr, unit, (S.NEW, 1.0), (S.UMGR_SCHEDULING_PENDING, 1.0))
    advance(mgr, unit, (S.UMGR_STAGING_INPUT_PENDING, 2.5), (S.EXECUTING, 3.25))
    session._journal.flush()
    assert session._journal.transitions("unit.000000") == \
        [("unit", "unit.000000", s, t) for s, t in unit.state_history]


def test_one_advance_moves_many_objects_and_returns_those_that_changed(mgr):
    units = [Thing(f"unit.{i:06d}", mgr) for i in range(3)]
    for u in units:
        advance(mgr, u, (S.NEW, 1.0))
    advance(mgr, units[2], (S.EXECUTING, 2.0))
    with mgr._lock:
        changed = mgr._advance([(u, [(S.AGENT_SCHEDULING, 3.0)]) for u in units])
    assert changed == units[:2]         # the third is past AGENT_SCHEDULING already
    assert [u.state for u in units] == [S.AGENT_SCHEDULING, S.AGENT_SCHEDULING, S.EXECUTING]


# --------------------------------------------------------------------------- callbacks

def test_callbacks_run_once_per_state_in_order_on_the_callback_thread(mgr, session):
    calls: list = []
    cb = recorder(calls)
    unit = Thing("unit.000000", mgr)
    unit.register_callback(cb, "unit")
    mgr.register_callback(recorder(calls), cb_data="manager")
    advance(mgr, unit, (S.NEW, 1.0), (S.UMGR_SCHEDULING_PENDING, 1.0))
    advance(mgr, unit, (S.EXECUTING, 2.0))
    advance(mgr, unit, (S.DONE, 3.0))
    assert session._callbacks.flush(5)
    # per state: the object's callbacks, then the manager's
    assert calls == [(who, "unit.000000", s, "rp-callbacks")
                     for s in UNIT_WAY for who in ("unit", "manager")]


def test_callbacks_of_many_objects_each_see_their_own_states_in_order(mgr, session):
    calls: list = []
    mgr.register_callback(recorder(calls), cb_data="manager")
    units = [Thing(f"unit.{i:06d}", mgr) for i in range(20)]

    def drive(u):
        for state in (S.NEW, S.AGENT_SCHEDULING, S.EXECUTING, S.DONE):
            advance(mgr, u, (state, time.time()))

    drivers = [threading.Thread(target=drive, args=(u,)) for u in units]
    for t in drivers:
        t.start()
    for t in drivers:
        t.join()
    assert session._callbacks.flush(5)
    for u in units:
        assert [state for _, uid, state, _ in calls if uid == u.uid] == UNIT_WAY


def test_a_callback_that_raises_does_not_stop_the_others(mgr, session):
    calls: list = []

    def broken(obj, state):
        raise RuntimeError("a bug in user code")

    unit = Thing("unit.000000", mgr)
    unit.register_callback(broken)
    mgr.register_callback(recorder(calls), cb_data="manager")
    advance(mgr, unit, (S.NEW, 1.0), (S.UMGR_SCHEDULING_PENDING, 1.0))
    assert session._callbacks.flush(5)
    assert [state for _, _, state, _ in calls] == [S.NEW, S.UMGR_SCHEDULING_PENDING]


def test_an_unregistered_callback_is_not_called_again(mgr, session):
    calls: list = []
    cb = recorder(calls)
    unit = Thing("unit.000000", mgr)
    unit.register_callback(cb, "unit")
    advance(mgr, unit, (S.NEW, 1.0))
    assert session._callbacks.flush(5)
    unit.unregister_callback(cb)
    advance(mgr, unit, (S.UMGR_SCHEDULING_PENDING, 2.0))
    assert session._callbacks.flush(5)
    assert [state for _, _, state, _ in calls] == [S.NEW]


# --------------------------------------------------------------------------- order

@pytest.mark.parametrize("kind", ["unit", "pilot"])
@pytest.mark.parametrize("final", S.FINAL)
def test_a_final_state_is_reached_once_and_never_left(session, kind, final):
    mgr = Things(session, "umgr.0000") if kind == "unit" else Pilots(session, "pmgr.0000")
    calls: list = []
    mgr.register_callback(recorder(calls), cb_data="manager")
    obj = (Thing if kind == "unit" else Pilot)(f"{kind}.000000", mgr)
    advance(mgr, obj, (S.NEW, 1.0))
    assert advance(mgr, obj, (final, 2.0)) == [obj]
    history = obj.state_history
    for late in (S.DONE, S.FAILED, S.CANCELED, S.NEW):
        assert advance(mgr, obj, (late, 3.0)) == []
    assert obj.state == final and obj.state_history == history
    assert [s for s, _ in history].count(final) == 1
    assert session._callbacks.flush(5)
    assert [state for _, _, state, _ in calls].count(final) == 1
    assert calls[-1][2] == final
    session._journal.flush()
    assert [s for _, _, s, _ in session._journal.transitions(obj.uid)] == \
        [s for s, _ in history]


def test_a_backwards_or_repeated_state_is_ignored(mgr, session):
    calls: list = []
    mgr.register_callback(recorder(calls), cb_data="manager")
    unit = Thing("unit.000000", mgr)
    advance(mgr, unit, (S.NEW, 1.0), (S.EXECUTING, 2.0))
    history = unit.state_history
    assert session._callbacks.flush(5)
    n = len(calls)
    assert advance(mgr, unit, (S.AGENT_SCHEDULING, 3.0)) == []
    assert advance(mgr, unit, (S.EXECUTING, 4.0)) == []
    assert advance(mgr, unit, (S.NEW, 5.0)) == []
    assert unit.state == S.EXECUTING and unit.state_history == history
    assert session._callbacks.flush(5)
    assert len(calls) == n
    # a stale step inside a batch is skipped, the later ones of the batch are taken
    advance(mgr, unit, (S.AGENT_SCHEDULING, 6.0), (S.AGENT_STAGING_OUTPUT_PENDING, 7.0))
    assert unit.state_history == history + [(S.AGENT_STAGING_OUTPUT_PENDING, 7.0)]


def test_pilot_states_skip_and_fill_in_as_unit_states_do(session):
    pmgr = Pilots(session, "pmgr.0000")
    pilot = Pilot("pilot.0000", pmgr)
    advance(pmgr, pilot, (S.NEW, 1.0), (S.PMGR_ACTIVE, 2.0))
    advance(pmgr, pilot, (S.DONE, 3.0))
    assert pilot.state_history == [(S.NEW, 1.0)] + [(s, 2.0) for s in PILOT_WAY[1:-1]] + \
        [(S.DONE, 3.0)]


# --------------------------------------------------------------------------- waiting

def later(delay: float, fn, *args) -> threading.Thread:
    def run():
        time.sleep(delay)
        fn(*args)
    t = threading.Thread(target=run)
    t.start()
    return t


def test_wait_returns_when_the_object_is_final(mgr):
    unit = Thing("unit.000000", mgr)
    advance(mgr, unit, (S.NEW, 1.0), (S.EXECUTING, 2.0))
    t0 = time.monotonic()
    mover = later(0.2, advance, mgr, unit, (S.FAILED, 3.0))
    assert unit.wait(timeout=10) == S.FAILED
    assert time.monotonic() - t0 < 2
    mover.join()


def test_wait_for_a_state_returns_once_it_is_reached_or_passed(mgr):
    unit = Thing("unit.000000", mgr)
    advance(mgr, unit, (S.NEW, 1.0))
    mover = later(0.1, advance, mgr, unit, (S.AGENT_STAGING_OUTPUT_PENDING, 2.0))
    assert unit.wait(S.EXECUTING, timeout=10) == S.AGENT_STAGING_OUTPUT_PENDING
    mover.join()
    assert unit.wait(S.AGENT_SCHEDULING, timeout=0) == S.AGENT_STAGING_OUTPUT_PENDING


def test_wait_for_a_later_state_of_a_final_object_returns_at_once(mgr):
    unit = Thing("unit.000000", mgr)
    advance(mgr, unit, (S.NEW, 1.0), (S.CANCELED, 2.0))
    t0 = time.monotonic()
    assert unit.wait(S.EXECUTING, timeout=10) == S.CANCELED
    assert time.monotonic() - t0 < 1


def test_wait_gives_the_current_state_after_its_timeout(mgr):
    unit = Thing("unit.000000", mgr)
    advance(mgr, unit, (S.NEW, 1.0))
    t0 = time.monotonic()
    assert unit.wait(timeout=0.2) == S.NEW
    assert 0.2 <= time.monotonic() - t0 < 1.5


def test_waiting_on_many_returns_when_all_are_final(mgr):
    units = [Thing(f"unit.{i:06d}", mgr) for i in range(5)]
    for u in units:
        advance(mgr, u, (S.NEW, 1.0))

    def finish():
        for u in reversed(units):
            advance(mgr, u, (S.DONE, time.time()))
            time.sleep(0.02)

    mover = later(0.05, finish)
    assert mgr._wait(units, None, 10) == [S.DONE] * 5
    mover.join()


def test_a_packed_history_reads_as_the_list_it_was_made_from():
    from rp_executor._core.lifecycle import pack_passages, passage_of, unpack_history
    names = list(UNIT_WAY)
    for stamps in ([1.5] * len(names), [float(i) for i in range(len(names))],
                   [1.0, 1.0, 2.5, 2.5, 2.5, 3.0] + [7.25] * (len(names) - 6)):
        flat = [x for pair in zip(names, stamps) for x in pair]
        packed = pack_passages([passage_of(flat, "unit")], "unit")
        assert isinstance(packed, bytes) and len(packed) < 1 + len(names) + 8 * len(names) + 1
        assert unpack_history(packed, "unit") == list(zip(names, stamps))
    # a state outside the model, or nothing at all: the passage stays as it is
    for flat in (["BOGUS", 1.0], []):
        passages = [passage_of(flat, "unit")]
        assert pack_passages(passages, "unit") == passages and passages[0][0] == flat


def test_passages_shared_by_many_pack_into_the_history_they_make_together():
    from rp_executor._core.lifecycle import pack_passages, passage_of, unpack_history
    names = list(UNIT_WAY)
    # three passages; the second starts at the time the first ended, the third not
    parts = [(names[:2], [1.0, 1.0]), (names[2:9], [1.0, 1.0, 2.0, 2.0, 2.0, 2.5, 2.5]),
             (names[9:], [3.0] * (len(names) - 9))]
    passages = [passage_of([x for pair in zip(n, t) for x in pair], "unit") for n, t in parts]
    packed = pack_passages(passages, "unit")
    expected = [pair for n, t in parts for pair in zip(n, t)]
    assert unpack_history(packed, "unit") == expected
    # each distinct time once: 1.0, 2.0, 2.5, 3.0
    assert len(packed) == 1 + len(names) + 8 * 4
    # a passage outside the model, or more than 255 states: the passages stay
    bogus = passage_of(["BOGUS", 1.0], "unit")
    assert pack_passages([passages[0], bogus], "unit") == [passages[0], bogus]
    assert pack_passages([passages[2]] * 40, "unit") == [passages[2]] * 40
    assert pack_passages([], "unit") == []
