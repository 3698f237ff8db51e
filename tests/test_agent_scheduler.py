"""The continuous scheduler and the local resource manager: pure data, no processes."""

from __future__ import annotations

import random

import pytest

from rp_executor.agent.resource_manager import (
    RESOURCE_MANAGERS,
    LocalResourceManager,
    Node,
    ResourceManager,
)
from rp_executor.agent.scheduler import NodeSlot, Scheduler, Slots


# -- resource manager ----------------------------------------------------------


def test_local_resource_manager_defaults_to_one_node_with_all_cores():
    rm = LocalResourceManager(cores=4, gpus=2)
    assert rm.nodes == [Node("localhost", 4, 2)]
    assert (rm.cores, rm.gpus) == (4, 2)
    assert rm.info() == {"cores": 4, "gpus": 2, "nodes": [{"name": "localhost", "cores": 4, "gpus": 2}]}


def test_local_resource_manager_slices_cores_into_virtual_nodes_like_rp_fork():
    rm = LocalResourceManager(cores=10, gpus=3, cores_per_node=4, gpus_per_node=1)
    assert [n.name for n in rm.nodes] == ["localhost", "localhost_1", "localhost_2"]
    assert [n.cores for n in rm.nodes] == [4, 4, 2]
    assert [n.gpus for n in rm.nodes] == [1, 1, 1]
    assert rm.cores == 10 and rm.gpus == 3


def test_local_resource_manager_rejects_gpus_that_do_not_fit_the_nodes():
    with pytest.raises(ValueError, match="gpus=3 do not fit on 2 node"):
        LocalResourceManager(cores=8, gpus=3, cores_per_node=4, gpus_per_node=1)


@pytest.mark.parametrize("kwargs", [{"cores": 0}, {"cores": 2, "gpus": -1}, {"cores": 2, "cores_per_node": 0}])
def test_local_resource_manager_rejects_impossible_sizes(kwargs):
    with pytest.raises(ValueError):
        LocalResourceManager(**kwargs)


def test_resource_managers_are_registered_by_name():
    assert RESOURCE_MANAGERS["local"] is LocalResourceManager
    assert issubclass(LocalResourceManager, ResourceManager)


# -- allocate / release ----------------------------------------------------------


def test_allocate_takes_lowest_free_cores_and_release_returns_them():
    sched = Scheduler([Node("n0", 4, 2)])
    a = sched.allocate(2, 1)
    b = sched.allocate(2, 1)
    assert a == Slots([NodeSlot("n0", (0, 1), (0,))])
    assert b == Slots([NodeSlot("n0", (2, 3), (1,))])
    assert (sched.free_cores, sched.free_gpus, sched.total_cores) == (0, 0, 4)
    assert sched.allocate(1) is None
    sched.release(a)
    assert (sched.free_cores, sched.free_gpus) == (2, 1)
    assert sched.allocate(1) == Slots([NodeSlot("n0", (0,), ())])


def test_allocate_returns_none_when_the_pilot_is_busy_but_the_unit_fits_later():
    sched = Scheduler([Node("n0", 2, 0)])
    first = sched.allocate(2)
    assert sched.allocate(2) is None
    sched.release(first)
    assert sched.allocate(2) is not None


def test_non_mpi_unit_goes_to_the_first_node_with_enough_free_cores():
    sched = Scheduler([Node("a", 4), Node("b", 4), Node("c", 8)])
    assert sched.allocate(3).nodes[0].node == "a"
    assert sched.allocate(3).nodes[0].node == "b"  # only 1 core left on a
    assert sched.allocate(1).nodes[0].node == "a"  # first fit fills the hole
    assert sched.allocate(6).nodes[0].node == "c"  # only c is large enough


def test_non_mpi_unit_is_never_split_across_nodes():
    sched = Scheduler([Node("a", 4), Node("b", 4)])
    sched.allocate(2)
    sched.allocate(2, mpi=False)  # fills a
    sched.allocate(2)  # half of b
    assert sched.free_cores == 2
    assert sched.allocate(3) is None  # 3 cores are not free on one node


def test_gpu_unit_skips_nodes_without_free_gpus():
    sched = Scheduler([Node("cpu", 8, 0), Node("gpu", 8, 2)])
    slots = sched.allocate(1, 2)
    assert slots == Slots([NodeSlot("gpu", (0,), (0, 1))])
    assert slots.gpu_indices == [0, 1]
    assert sched.allocate(1, 1) is None


def test_gpu_slots_never_overlap_over_many_random_allocations():
    rng = random.Random(7)
    nodes = [Node(f"n{i}", 8, 4) for i in range(4)]
    sched = Scheduler(nodes)
    held: list[Slots] = []
    for _ in range(2000):
        if held and rng.random() < 0.45:
            sched.release(held.pop(rng.randrange(len(held))))
        else:
            slots = sched.allocate(rng.randint(0, 3), rng.randint(0, 2))
            if slots is not None:
                held.append(slots)
        used_gpus = [(s.node, g) for sl in held for s in sl.nodes for g in s.gpus]
        used_cores = [(s.node, c) for sl in held for s in sl.nodes for c in s.cores]
        assert len(used_gpus) == len(set(used_gpus))
        assert len(used_cores) == len(set(used_cores))
        assert sched.free_gpus == 16 - len(used_gpus)
        assert sched.free_cores == 32 - len(used_cores)
    for slots in held:
        sched.release(slots)
    assert (sched.free_cores, sched.free_gpus) == (32, 16)


def test_double_release_is_rejected_and_leaves_the_counts_alone():
    sched = Scheduler([Node("n0", 2, 1)])
    slots = sched.allocate(1, 1)
    sched.release(slots)
    with pytest.raises(ValueError, match="not allocated"):
        sched.release(slots)
    assert (sched.free_cores, sched.free_gpus) == (2, 1)


def test_release_on_an_unknown_node_is_rejected():
    sched = Scheduler([Node("n0", 2)])
    with pytest.raises(ValueError, match="unknown node 'elsewhere'"):
        sched.release(Slots([NodeSlot("elsewhere", (0,), ())]))


def test_duplicate_node_names_are_rejected():
    with pytest.raises(ValueError, match="unique"):
        Scheduler([Node("n", 1), Node("n", 1)])


# -- check ------------------------------------------------------------------------


def test_check_accepts_a_unit_that_fits_on_one_node():
    sched = Scheduler(LocalResourceManager(8, 2, cores_per_node=4, gpus_per_node=1).nodes)
    assert sched.check(4, 1) is None
    sched.allocate(4, 1)
    sched.allocate(4, 1)
    assert sched.check(4, 1) is None  # check is about the empty pilot, not the free slots


def test_check_names_request_and_pilot_when_a_unit_exceeds_every_node():
    sched = Scheduler(LocalResourceManager(8, cores_per_node=4).nodes)
    err = sched.check(5, 0)
    assert err is not None
    assert "requests 5 cores and 0 gpus" in err
    assert "largest node has 4 cores" in err
    assert "8 cores" in err and "2 node(s)" in err


def test_check_reports_missing_gpus():
    err = Scheduler([Node("localhost", 4, 0)]).check(1, 1)
    assert err is not None and "1 gpus" in err and "0 gpus" in err


def test_check_rejects_negative_requests():
    assert "negative" in Scheduler([Node("n", 4)]).check(-1, 0)


def test_allocate_raises_for_a_unit_that_can_never_fit():
    sched = Scheduler([Node("localhost", 4, 0)])
    with pytest.raises(ValueError, match="does not fit onto a single node"):
        sched.allocate(5)
    sched.allocate(4)
    with pytest.raises(ValueError, match="does not fit"):
        sched.allocate(5)  # even while the pilot is full


# -- MPI ------------------------------------------------------------------------


def test_mpi_unit_spans_nodes_in_whole_processes():
    sched = Scheduler([Node("a", 4), Node("b", 4), Node("c", 4)])
    sched.allocate(1)  # a has 3 free: room for one 2-core process
    slots = sched.allocate(6, mpi=True, cores_per_process=2)
    assert slots is not None
    assert [(s.node, len(s.cores)) for s in slots.nodes] == [("a", 2), ("b", 4)]
    assert slots.cores == 6
    assert sched.free_cores == 12 - 1 - 6


def test_mpi_unit_waits_when_only_fragments_are_free():
    sched = Scheduler([Node("a", 3), Node("b", 3)])
    assert sched.allocate(4, mpi=True, cores_per_process=2) is not None
    assert sched.free_cores == 2
    assert sched.allocate(2, mpi=True, cores_per_process=2) is None  # 1 + 1 free, no whole process


def test_mpi_check_rejects_more_threads_than_a_node_has():
    err = Scheduler([Node("a", 4), Node("b", 4)]).check(8, mpi=True, cores_per_process=8)
    assert err is not None and "too many threads" in err


def test_slots_as_dict_has_rp_shape():
    slots = Slots([NodeSlot("n0", (0, 1), (1,))])
    assert slots.as_dict() == {"nodes": [{"name": "n0", "core_map": [0, 1], "gpu_map": [1]}]}
