"""UnitManager schedulers: round robin binds at once, backfilling only into room."""

from __future__ import annotations

import pytest

from rp_executor._core.binding import (Backfilling, Need, PilotRoom, RoundRobin,
                                        make_umgr_scheduler)


def test_round_robin_takes_pilots_in_turn_active_or_not():
    rr = RoundRobin()
    pilots = [PilotRoom("a", True, 2), PilotRoom("b", False)]
    assert rr.bind([Need(1)] * 3, pilots) == ["a", "b", "a"]
    assert rr.bind([Need(1)], pilots) == ["b"]
    assert rr.bind([Need(1)], []) == [None]


def test_backfilling_binds_only_to_active_pilots_with_room():
    pilots = [PilotRoom("a", True, 4, busy_cores=3), PilotRoom("b", True, 4),
              PilotRoom("c", False)]
    out = Backfilling().bind([Need(2), Need(2), Need(1), Need(2)], pilots)
    assert out == ["b", "b", "a", None]
    assert [p.busy_cores for p in pilots] == [4, 4, 0]


def test_backfilling_respects_gpus():
    pilots = [PilotRoom("a", True, 8, 0), PilotRoom("b", True, 2, 2)]
    assert Backfilling().bind([Need(1, 1), Need(1, 1), Need(1, 1)], pilots) == \
        ["b", "b", None]


def test_backfilling_hands_a_unit_too_big_for_every_pilot_to_the_largest():
    pilots = [PilotRoom("a", True, 2), PilotRoom("b", True, 4)]
    assert Backfilling().bind([Need(16)], pilots) == ["b"]   # its agent fails it
    pilots.append(PilotRoom("c", False))                       # c may be big enough
    assert Backfilling().bind([Need(16)], pilots) == [None]


def test_unknown_scheduler_is_named():
    with pytest.raises(ValueError, match="unknown UnitManager scheduler 'fifo'"):
        make_umgr_scheduler("fifo")
