"""Binding policies: round robin binds at once, backfilling only into room, block
capacity only to active blocks with a bounded queue."""

from __future__ import annotations

import pytest

from rp_executor._core.binding import (Backfilling, BlockCapacity, Need, PilotRoom, RoundRobin,
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


def test_block_capacity_binds_to_active_blocks_in_turn_up_to_their_capacity():
    # 2 cores x (1 + 1 queued per core) = 4 units per block; "a" holds 3 already
    pilots = [PilotRoom("a", True, 2, bound=3), PilotRoom("b", True, 2),
              PilotRoom("c", False, 2)]
    policy = BlockCapacity(queued_per_core=1)
    assert policy.limit(pilots) == 1 + 4
    assert policy.bind([Need(1)] * 7, pilots) == ["a", "b", "b", "b", "b", None, None]


def test_block_capacity_without_a_queue_limit_binds_everything_to_active_blocks():
    pilots = [PilotRoom("a", True, 2, bound=1000), PilotRoom("b", False)]
    policy = BlockCapacity(queued_per_core=None)
    assert policy.limit(pilots) == float("inf")
    assert policy.bind([Need(1)] * 3, pilots) == ["a", "a", "a"]
    assert BlockCapacity(None).bind([Need(1)], [PilotRoom("b", False)]) == [None]


def test_early_binding_policies_have_no_limit():
    pilots = [PilotRoom("a", True, 1, bound=50)]
    assert RoundRobin().limit(pilots) == Backfilling().limit(pilots) == float("inf")
