"""Binding: which pilot a unit goes to (the UnitManager's schedulers and policies).

A policy is a small class with one decision, :meth:`UmgrScheduler.bind`: given what
units need and what the manager's pilots are like now (:class:`PilotRoom`), it
returns a pilot uid per unit, or None for a unit that should wait in the client.
Policies are pure (no locks, no I/O) and are registered by name in
``UMGR_SCHEDULERS``, the names of :data:`rp_executor.constants.SCHEDULERS`.

* ``round_robin`` binds at submission, in turn, to every pilot that is not final,
  active or not (early binding: units wait in the pilot's queue).
* ``backfilling`` binds late: a unit waits in the client until an active pilot has
  free cores and GPUs for it, counting the units bound to that pilot and not yet
  final. Of the pilots with room the one with most free cores gets it.
* :class:`BlockCapacity` (the Parsl door's policy, not an RP scheduler name) binds
  late to active pilots only, each holding at most a number of unfinished units
  proportional to its cores: a block still queued in the batch system holds no work,
  and a new block gets work as soon as it is active.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Sequence

from rp_executor.constants import SCHEDULER_BACKFILLING, SCHEDULER_ROUND_ROBIN

__all__ = ["Need", "need_of", "PilotRoom", "UmgrScheduler", "RoundRobin", "Backfilling",
           "BlockCapacity", "UMGR_SCHEDULERS", "make_umgr_scheduler"]


class Need(NamedTuple):
    """What one unit holds while it runs: cores and GPUs (a tuple: one is made per
    unit bound and freed)."""

    cores: int
    gpus: int = 0


def need_of(description: Any) -> Need:
    """The cores and GPUs a unit of this ComputeUnitDescription takes on a pilot."""
    d = description
    return Need(d.cpu_processes * d.cpu_threads, d.gpu_processes)


@dataclass(slots=True)
class PilotRoom:
    """What a policy knows of a pilot.

    ``cores``/``gpus`` are its size as its agent reported it (0 until it is active);
    ``busy_cores``/``busy_gpus`` what its bound, unfinished units hold (counted for
    late-binding policies only); ``bound`` how many such units there are.
    """

    uid: str
    active: bool
    cores: int = 0
    gpus: int = 0
    busy_cores: int = 0
    busy_gpus: int = 0
    bound: int = 0

    @property
    def free_cores(self) -> int:
        """Cores not held by bound units."""
        return self.cores - self.busy_cores

    @property
    def free_gpus(self) -> int:
        """GPUs not held by bound units."""
        return self.gpus - self.busy_gpus

    def fits(self, need: Need) -> bool:
        """Whether ``need`` fits into the free part now."""
        return need.cores <= self.free_cores and need.gpus <= self.free_gpus

    def take(self, need: Need) -> None:
        """Count ``need`` as held."""
        self.busy_cores += need.cores
        self.busy_gpus += need.gpus


class UmgrScheduler:
    """The contract of a UnitManager scheduler."""

    name: ClassVar[str] = ""
    late_binding: ClassVar[bool] = False
    """True: units wait in the client until a pilot has room, and the manager asks
    again whenever a pilot becomes active or a bound unit ends."""

    def bind(self, needs: Sequence[Need], pilots: Sequence[PilotRoom]) -> list[str | None]:
        """A pilot uid for each of ``needs`` (None: the unit waits), in order.

        ``pilots`` are the manager's pilots that are not final, in the order they
        were added; a policy may update their ``busy_*`` counts as it binds.
        """
        raise NotImplementedError

    def limit(self, pilots: Sequence[PilotRoom]) -> float:
        """How many units :meth:`bind` could bind now at most: the manager offers
        no more than that (the rest keep waiting, in order), so that a long queue
        in the client costs nothing while the pilots are full."""
        return math.inf


class RoundRobin(UmgrScheduler):
    """Each unit to the next pilot in turn, active or not."""

    name = SCHEDULER_ROUND_ROBIN

    def __init__(self) -> None:
        self._turn = itertools.count()

    def bind(self, needs, pilots):
        if not pilots:
            return [None] * len(needs)
        return [pilots[next(self._turn) % len(pilots)].uid for _ in needs]


class Backfilling(UmgrScheduler):
    """Each unit to the active pilot with the most free cores that holds it now.

    A unit that no active pilot could ever hold (larger than each of them) is bound
    to the largest active pilot once no pilot is still starting, so that its agent
    fails it with the reason instead of it waiting forever.
    """

    name = SCHEDULER_BACKFILLING
    late_binding = True

    def bind(self, needs, pilots):
        active = [p for p in pilots if p.active]
        all_active = len(active) == len(pilots)
        out: list[str | None] = []
        for need in needs:
            fitting = [p for p in active if p.fits(need)]
            if fitting:
                best = max(fitting, key=lambda p: (p.free_cores, p.free_gpus))
                best.take(need)
                out.append(best.uid)
            elif active and all_active and not any(
                    need.cores <= p.cores and need.gpus <= p.gpus for p in active):
                largest = max(active, key=lambda p: (p.cores, p.gpus))
                out.append(largest.uid)
            else:
                out.append(None)
        return out


class BlockCapacity(UmgrScheduler):
    """Units to active pilots only, in turn, each pilot holding at most
    ``cores x (1 + queued_per_core)`` unfinished units (no limit when
    ``queued_per_core`` is None); the rest wait in the client.

    :param queued_per_core: units a pilot may hold queued per core beyond those
        running.
    """

    name = "block_capacity"
    late_binding = True

    def __init__(self, queued_per_core: int | None) -> None:
        self.queued_per_core = queued_per_core

    def capacity(self, pilot: PilotRoom) -> float:
        """How many unfinished units ``pilot`` may hold."""
        if self.queued_per_core is None:
            return math.inf
        return pilot.cores * (1 + self.queued_per_core)

    def _free(self, pilots: Sequence[PilotRoom]) -> list[list]:
        free = [[p.uid, self.capacity(p) - p.bound] for p in pilots if p.active]
        return [f for f in free if f[1] > 0]

    def limit(self, pilots):
        return sum(f[1] for f in self._free(pilots))

    def bind(self, needs, pilots):
        free = self._free(pilots)
        out: list[str | None] = []
        turn = 0
        for _ in needs:
            if not free:
                out.append(None)
                continue
            turn %= len(free)
            slot = free[turn]
            out.append(slot[0])
            slot[1] -= 1
            if slot[1] <= 0:
                del free[turn]
            else:
                turn += 1
        return out


UMGR_SCHEDULERS: dict[str, type[UmgrScheduler]] = {
    RoundRobin.name: RoundRobin,
    Backfilling.name: Backfilling,
}
"""UnitManager schedulers by name."""


def make_umgr_scheduler(name: str) -> UmgrScheduler:
    """A new scheduler of the policy ``name``.

    :raises ValueError: an unknown name; the message lists the known ones.
    """
    cls = UMGR_SCHEDULERS.get(name)
    if cls is None:
        raise ValueError(f"unknown UnitManager scheduler {name!r}; known: "
                         f"{', '.join(UMGR_SCHEDULERS)}")
    return cls()
