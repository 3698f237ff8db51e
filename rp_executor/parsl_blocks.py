"""Blocks as pilots: their Parsl states, their runtime, and the UnitManager that binds
units only to active blocks (used by :class:`rp_executor.parsl_executor.RPExecutor`).
"""

from __future__ import annotations

import math
import queue
from typing import Any, Callable

from parsl.jobs.states import JobState, JobStatus

from . import states
from .unit_manager import UnitManager

FINAL = states.FINAL_STATES
#: pilot states of a block that has not started yet
PENDING = frozenset({states.NEW, states.PMGR_LAUNCHING_PENDING, states.PMGR_LAUNCHING,
                     states.PMGR_ACTIVE_PENDING})
WEEK_MIN = 7 * 24 * 60   # a pilot's runtime when the provider has no walltime


class BlockUnitManager(UnitManager):
    """The executor's UnitManager: late binding and a queue of final units.

    Units are bound only to ACTIVE pilots, and each pilot holds at most
    ``capacity(pilot)`` unfinished units; the rest wait here (unbound) until a pilot
    becomes active or units end. So new blocks get work, and a block still queued in
    the batch system holds none. ``_on_changed`` runs with the manager's lock held,
    on whatever thread advanced the units (mostly the I/O thread): it only binds
    waiting units and queues final ones for the completion thread.
    """

    def __init__(self, session: Any, finished: queue.SimpleQueue,
                 capacity: Callable[[Any], float]) -> None:
        super().__init__(session)
        self._finished = finished
        self._capacity = capacity

    def _schedule(self, units: list) -> None:
        waiting = self._unbound + list(units) if self._unbound else list(units)
        self._unbound = []
        room = {}
        for uid, p in self._pilots.items():
            if p._state == states.PMGR_ACTIVE:
                free = self._capacity(p) - len(self._by_pilot.get(uid, ()))
                if free > 0:
                    room[uid] = free
        if not room:
            self._unbound = waiting
            return
        take = int(min(len(waiting), sum(room.values())))
        self._unbound = waiting[take:]
        if not take:
            return
        saved = self._pilots
        self._pilots = {uid: saved[uid] for uid in room}  # lock held: nobody else looks
        try:
            super()._schedule(waiting[:take])
        finally:
            self._pilots = saved

    def _rebind(self) -> None:
        with self._lock:
            if self._unbound:
                self._schedule([])

    def _on_changed(self, objs: list) -> None:
        super()._on_changed(objs)
        done = [u for u in objs if u._state in FINAL]
        if done:
            self._finished.put(done)
            if self._unbound:
                self._schedule([])


def runtime_minutes(provider: Any) -> int:
    """The provider's walltime (``HH:MM:SS``) in whole minutes, or a week if it has none."""
    walltime = getattr(provider, "walltime", None)
    if not walltime:
        return WEEK_MIN
    try:
        parts = [int(p) for p in str(walltime).split(":")]
    except ValueError:
        return WEEK_MIN
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + p
    return max(1, math.ceil(seconds / 60))


def job_status(pilot: Any) -> JobStatus:
    """A pilot's state as a Parsl block state."""
    state = pilot.state
    if state in PENDING:
        return JobStatus(JobState.PENDING)
    if state == states.PMGR_ACTIVE:
        return JobStatus(JobState.RUNNING)
    why = "; ".join(pilot.log[-2:]) or state
    if state == states.DONE:
        return JobStatus(JobState.COMPLETED, message=why)
    if state == states.CANCELED:
        return JobStatus(JobState.CANCELLED, message=why)
    active = any(s == states.PMGR_ACTIVE for s, _ in pilot.state_history)
    message = f"pilot {pilot.uid} (job {pilot.job_id}) {state}: {pilot.stderr or why}"
    return JobStatus(JobState.FAILED if active else JobState.MISSING, message=message)
