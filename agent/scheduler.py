"""The continuous scheduler: which cores and GPUs a unit runs on.

A pure data structure, no I/O (RP's ``CONTINUOUS`` scheduler,
``agent/scheduler/continuous.py``).  Each node keeps heaps of its free core and
GPU indices, so an allocation costs one pass over the nodes plus
``O(k log n)`` for the ``k`` indices taken; the lowest free indices are handed
out first, which keeps placements predictable.

Non-MPI units must fit on a single node (RP section 2.3).  MPI units
(``mpi=True``) may span nodes; their cores are taken in whole chunks of
``cores_per_process`` per node, so no process is split across nodes.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .resource_manager import Node

logger = logging.getLogger(__name__)

__all__ = ["NodeSlot", "Slots", "Scheduler"]


class NodeSlot(NamedTuple):
    """The part of an allocation on one node: its name, core and GPU indices."""

    node: str
    cores: tuple[int, ...]
    gpus: tuple[int, ...]


@dataclass(slots=True)
class Slots:
    """Where a unit runs: one ``NodeSlot`` per node it occupies."""

    nodes: list[NodeSlot] = field(default_factory=list)

    @property
    def cores(self) -> int:
        """How many cores the allocation holds over all nodes."""
        return sum(len(s.cores) for s in self.nodes)

    @property
    def gpus(self) -> int:
        """How many GPUs the allocation holds over all nodes."""
        return sum(len(s.gpus) for s in self.nodes)

    @property
    def gpu_indices(self) -> list[int]:
        """The node-local GPU indices, in node order (for ``CUDA_VISIBLE_DEVICES``)."""
        return [g for s in self.nodes for g in s.gpus]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form, shaped like RP's ``slots['nodes']`` entries."""
        return {
            "nodes": [
                {"name": s.node, "core_map": list(s.cores), "gpu_map": list(s.gpus)}
                for s in self.nodes
            ]
        }


class _NodeState:
    """Free-index heaps of one node."""

    __slots__ = ("node", "free_cores", "free_gpus", "busy_cores", "busy_gpus")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.free_cores = list(range(node.cores))  # a sorted list is a valid heap
        self.free_gpus = list(range(node.gpus))
        self.busy_cores: set[int] = set()  # to catch double releases cheaply
        self.busy_gpus: set[int] = set()

    def take(self, cores: int, gpus: int) -> NodeSlot:
        c = tuple(heapq.heappop(self.free_cores) for _ in range(cores))
        g = tuple(heapq.heappop(self.free_gpus) for _ in range(gpus))
        self.busy_cores.update(c)
        self.busy_gpus.update(g)
        return NodeSlot(self.node.name, c, g)

    def give_back(self, part: NodeSlot) -> None:
        pairs = (("core", part.cores, self.busy_cores, self.free_cores),
                 ("gpu", part.gpus, self.busy_gpus, self.free_gpus))
        for kind, idx, busy, _ in pairs:
            if not busy.issuperset(idx):
                raise ValueError(
                    f"{kind}(s) {sorted(set(idx) - busy)} on node {part.node!r} are not allocated"
                )
        for _, idx, busy, free in pairs:
            busy.difference_update(idx)
            for i in idx:
                heapq.heappush(free, i)


class Scheduler:
    """Continuous first-fit placement of units onto the cores and GPUs of nodes.

    ``allocate`` marks resources busy and returns ``Slots``; ``release`` frees
    them.  Node names must be unique.
    """

    def __init__(self, nodes: Iterable[Node]) -> None:
        self._nodes = [_NodeState(n) for n in nodes]
        self._by_name = {s.node.name: s for s in self._nodes}
        if len(self._by_name) != len(self._nodes):
            names = [s.node.name for s in self._nodes]
            raise ValueError(f"node names must be unique, got {names}")
        self._total_cores = sum(s.node.cores for s in self._nodes)
        self._total_gpus = sum(s.node.gpus for s in self._nodes)
        self._free_cores = self._total_cores
        self._free_gpus = self._total_gpus

    @property
    def total_cores(self) -> int:
        """Cores over all nodes."""
        return self._total_cores

    @property
    def total_gpus(self) -> int:
        """GPUs over all nodes."""
        return self._total_gpus

    @property
    def free_cores(self) -> int:
        """Cores not allocated right now."""
        return self._free_cores

    @property
    def free_gpus(self) -> int:
        """GPUs not allocated right now."""
        return self._free_gpus

    def check(
        self, cores: int, gpus: int = 0, *, mpi: bool = False, cores_per_process: int = 1
    ) -> str | None:
        """Whether a unit could ever be placed on this pilot.

        Returns None if it fits on the empty pilot, else a text that names what
        was requested and what the pilot has.
        """
        if cores < 0 or gpus < 0:
            return f"a unit cannot request negative resources: cores={cores}, gpus={gpus}"
        if mpi:
            if cores_per_process < 1:
                return f"cores_per_process must be 1 or more, got {cores_per_process}"
            if cores % cores_per_process:
                return (
                    f"MPI unit requests {cores} cores, not a multiple of "
                    f"{cores_per_process} cores per process"
                )
            if cores and all(s.node.cores < cores_per_process for s in self._nodes):
                return (
                    f"too many threads requested: {cores_per_process} cores per process, "
                    f"but the largest node has {self._largest('cores')} cores"
                )
            usable = sum(
                s.node.cores // cores_per_process * cores_per_process for s in self._nodes
            )
            if cores > usable or gpus > self._total_gpus:
                return (
                    f"MPI unit requests {cores} cores ({cores_per_process} per process) and "
                    f"{gpus} gpus, but the pilot has {usable} usable cores and "
                    f"{self._total_gpus} gpus on {len(self._nodes)} node(s)"
                )
            return None
        if any(s.node.cores >= cores and s.node.gpus >= gpus for s in self._nodes):
            return None
        return (
            f"non-MPI unit does not fit onto a single node: it requests {cores} cores and "
            f"{gpus} gpus, the largest node has {self._largest('cores')} cores and "
            f"{self._largest('gpus')} gpus (pilot: {self._total_cores} cores, "
            f"{self._total_gpus} gpus on {len(self._nodes)} node(s))"
        )

    def allocate(
        self, cores: int, gpus: int = 0, *, mpi: bool = False, cores_per_process: int = 1
    ) -> Slots | None:
        """Reserve ``cores`` and ``gpus`` for one unit.

        Non-MPI units get the first node with enough free cores and GPUs.
        Returns None when there is no room now; raises ``ValueError`` (with
        ``check``'s text) when the unit can never fit on this pilot.
        """
        if cores > self._free_cores or gpus > self._free_gpus:
            # fast path for a full pilot; still reject units that never fit
            if cores > self._total_cores or gpus > self._total_gpus:
                self._raise_if_never_fits(cores, gpus, mpi, cores_per_process)
            return None
        if mpi:
            return self._allocate_mpi(cores, gpus, cores_per_process)
        for s in self._nodes:
            if len(s.free_cores) >= cores and len(s.free_gpus) >= gpus:
                self._free_cores -= cores
                self._free_gpus -= gpus
                return Slots([s.take(cores, gpus)])
        self._raise_if_never_fits(cores, gpus, mpi, cores_per_process)
        return None

    def _allocate_mpi(self, cores: int, gpus: int, cpp: int) -> Slots | None:
        self._raise_if_never_fits(cores, gpus, True, cpp)
        plan: list[tuple[_NodeState, int, int]] = []
        need_c, need_g = cores, gpus
        for s in self._nodes:
            if need_c <= 0 and need_g <= 0:
                break
            c = min(len(s.free_cores) // cpp * cpp, need_c)
            g = min(len(s.free_gpus), need_g)
            if c or g:
                plan.append((s, c, g))
                need_c -= c
                need_g -= g
        if need_c > 0 or need_g > 0:
            return None
        self._free_cores -= cores
        self._free_gpus -= gpus
        return Slots([s.take(c, g) for s, c, g in plan])

    def release(self, slots: Slots) -> None:
        """Give the resources of ``slots`` back.

        Raises ``ValueError`` for an unknown node or an index that is not
        allocated (a double release); the nodes before the bad one are released.
        """
        for part in slots.nodes:
            s = self._by_name.get(part.node)
            if s is None:
                raise ValueError(f"cannot release slots on unknown node {part.node!r}")
            s.give_back(part)
            self._free_cores += len(part.cores)
            self._free_gpus += len(part.gpus)

    def _largest(self, attr: str) -> int:
        return max((getattr(s.node, attr) for s in self._nodes), default=0)

    def _raise_if_never_fits(self, cores: int, gpus: int, mpi: bool, cpp: int) -> None:
        err = self.check(cores, gpus, mpi=mpi, cores_per_process=cpp)
        if err is not None:
            raise ValueError(err)
