"""How a unit ended: the Outcome record on the wire, and the one UnitFailed."""

from __future__ import annotations

import pickle

import pytest

from rp_executor._core import wire
from rp_executor.exceptions import PilotException, UnitFailed
from rp_executor.outcome import Ending, Outcome


def test_an_outcome_travels_the_wire_with_its_fields_and_why():
    sent = Outcome(Ending.LOST, 137, "out", "err", None, None, b"exc", "tb", 1.5, 2.5,
                   ["node1", "node2"])
    frame = wire.encode([wire.UnitStates([["unit.000001", [["FAILED", 2.5]],
                                           sent.to_wire()]])])
    [msg] = wire.decode(frame)
    got = Outcome.from_wire(msg.updates[0][2])
    assert got == sent and got.ending is Ending.LOST and got.lost


def test_an_outcome_of_a_quiet_success_is_small_on_the_wire():
    quiet = Outcome(Ending.DONE, 0, started=1.0, stopped=2.0, nodes=["n1"])
    frame = wire.encode([wire.UnitStates([["unit.000002", [], quiet.to_wire()]])])
    bare = wire.encode([wire.UnitStates([["unit.000002", [], None]])])
    assert len(frame) - len(bare) <= 40   # two float stamps, a node, an exit code
    assert Outcome.from_wire(wire.decode(frame)[0].updates[0][2]) == quiet


def test_a_malformed_outcome_is_refused():
    with pytest.raises(ValueError, match="an outcome has 11 fields; got 2"):
        Outcome.from_wire(["done", 0])
    with pytest.raises(ValueError, match="unknown ending 'vanished'"):
        Outcome.from_wire(["vanished", *Outcome(Ending.DONE).to_wire()[1:]])


def test_notes_go_on_lines_of_their_own():
    o = Outcome(Ending.FAILED)
    o.note("rp_executor: first")
    assert o.stderr == "rp_executor: first"
    o.stderr = "tail of the unit's stderr\n\n"
    o.note("rp_executor: second")
    assert o.stderr == "tail of the unit's stderr\nrp_executor: second"


class _Unit:
    uid, state = "unit.000007", "FAILED"

    def __init__(self, outcome):
        self.outcome = outcome


def test_unit_failed_names_the_unit_state_exit_code_and_a_lost_pilot():
    exc = UnitFailed.of(_Unit(Outcome(Ending.LOST, -9, stderr="rp_executor: pilot.0001 "
                                                                "ended (FAILED: killed)")))
    assert str(exc) == ("unit.000007 ended FAILED with exit code -9 (lost with its pilot): "
                        "rp_executor: pilot.0001 ended (FAILED: killed)")
    assert (exc.uid, exc.state, exc.exit_code, exc.ending) == \
        ("unit.000007", "FAILED", -9, Ending.LOST)
    assert isinstance(exc, PilotException) and isinstance(exc, RuntimeError)


def test_unit_failed_pickles_without_its_unit():
    unit = _Unit(Outcome(Ending.FAILED, 3, stderr="boom"))
    back = pickle.loads(pickle.dumps(UnitFailed.of(unit)))
    assert type(back) is UnitFailed and str(back) == "unit.000007 ended FAILED with " \
        "exit code 3: boom"
    assert (back.uid, back.exit_code, back.stderr, back.unit) == \
        ("unit.000007", 3, "boom", None)


def test_outcomes_from_the_wire_share_node_lists_and_small_results():
    from rp_executor.outcome import Ending, Outcome
    # distinct objects each, as msgpack makes them
    made = [Outcome(Ending.DONE, 0, "", "", bytes(bytearray(b"\x80\x05N.")), None, None,
                    None, 1.0, 2.0, ["node-a", "node-b"]).to_wire() for _ in range(3)]
    assert made[0][4] is not made[1][4]
    back = [Outcome.from_wire(list(m)) for m in made]
    assert all(o.nodes == ["node-a", "node-b"] and o.result == b"\x80\x05N." for o in back)
    assert back[0].nodes is back[1].nodes is back[2].nodes
    assert back[0].result is back[1].result
    big = Outcome.from_wire([Ending.DONE.value, 0, "", "", b"x" * 100, None, None, None,
                             1.0, 2.0, []])
    assert big.result == b"x" * 100 and big.nodes == []
