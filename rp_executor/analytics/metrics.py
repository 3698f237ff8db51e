"""What a session's journal says about its units and pilots, as plain records.

Every function takes a :class:`~rp_executor.analytics.model.SessionModel` and returns
records (dataclasses or dicts, one per unit, pilot or moment); each has a ``*_frame``
twin in :mod:`rp_executor.analytics.frames` that gives the same as a pandas DataFrame.
Times are seconds since the epoch; a unit that has not ended is counted up to
:attr:`SessionModel.end <rp_executor.analytics.model.SessionModel.end>` (when the
session closed, else when it was read).

The phases of a unit are groups of its states (:data:`PHASES`); a unit's time in a
phase is the sum of its times in those states, so the phases add up to its whole life.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, fields
from typing import Any, Iterator

from rp_executor import states
from rp_executor.analytics.model import (CODE, FINAL_COLUMN, STATE_COLUMNS, UNIT_STATES,
                                         SessionModel)

PHASES: dict[str, tuple[str, ...]] = {
    "waiting_for_pilot": (states.NEW, states.UMGR_SCHEDULING_PENDING, states.UMGR_SCHEDULING,
                          states.AGENT_STAGING_INPUT_PENDING),
    "staging_in": (states.UMGR_STAGING_INPUT_PENDING, states.UMGR_STAGING_INPUT,
                   states.AGENT_STAGING_INPUT),
    "waiting_for_cores": (states.AGENT_SCHEDULING_PENDING, states.AGENT_SCHEDULING,
                          states.EXECUTING_PENDING),
    "executing": (states.EXECUTING,),
    "staging_out": (states.AGENT_STAGING_OUTPUT_PENDING, states.AGENT_STAGING_OUTPUT,
                    states.UMGR_STAGING_OUTPUT_PENDING, states.UMGR_STAGING_OUTPUT),
}
"""The phases of a unit's life and the states each one spans.

*Waiting for a pilot* is the time until a pilot's agent took the unit: the unit
manager's scheduling and, once bound, the wait for the pilot to become active
(``AGENT_STAGING_INPUT_PENDING``). *Staging in* is the unit manager's and the agent's
input staging, *waiting for cores* the agent's scheduling, *executing* the run of its
process or function, *staging out* the output staging of both sides."""

PHASE_NAMES = tuple(PHASES)
"""The phases in their order."""

_PHASE_OF_COLUMN = [next((k for k, members in enumerate(PHASES.values()) if name in members),
                         -1) for name in STATE_COLUMNS]
_EXECUTING = CODE[states.EXECUTING]
_FINAL_NAMES = tuple(states.FINAL)


# --------------------------------------------------------------------------- durations

@dataclass(slots=True)
class UnitDurations:
    """How long one unit spent in each phase (:data:`PHASES`), in seconds; None for a
    phase it never entered.

    :ivar uid: the unit's uid.
    :ivar pilot: the pilot it was bound to (None: none).
    :ivar state: its state.
    :ivar total: from its creation to its end (to the session's end if it has not).
    """

    uid: str
    pilot: str | None
    state: str
    waiting_for_pilot: float | None
    staging_in: float | None
    waiting_for_cores: float | None
    executing: float | None
    staging_out: float | None
    total: float | None


def _duration_columns(model: SessionModel) -> dict[str, list]:
    nphases = len(PHASES)
    phase_of = _PHASE_OF_COLUMN
    end = model.end
    per_phase: list[list] = [[] for _ in range(nphases)]
    totals: list = []
    adds = [column.append for column in per_phase]
    for row in zip(*model.times):
        sums: list = [None] * nphases
        first = last = None
        last_column = -1
        for column, ts in enumerate(row):
            if ts != ts:       # NaN: not reached
                continue
            if last is not None:
                p = phase_of[last_column]
                if p >= 0:
                    sums[p] = (sums[p] or 0.0) + (ts - last)
            else:
                first = ts
            last, last_column = ts, column
        if last is None:
            totals.append(None)
        elif last_column == FINAL_COLUMN:
            totals.append(last - first)
        else:      # still in a state: it lasts until the session's end
            p = phase_of[last_column]
            if p >= 0:
                sums[p] = (sums[p] or 0.0) + max(0.0, end - last)
            totals.append(max(0.0, end - first))
        for add, value in zip(adds, sums):
            add(value)
    return {"uid": model.uids,
            "pilot": [model.pilot_of(i) for i in range(len(model))],
            "state": [model.state_of(i) for i in range(len(model))],
            **dict(zip(PHASE_NAMES, per_phase)), "total": totals}


def unit_durations(model: SessionModel) -> list[UnitDurations]:
    """Each unit's time in each phase (:class:`UnitDurations`), in submission order."""
    return [UnitDurations(*values) for values in zip(*_duration_columns(model).values())]


# --------------------------------------------------------------------------- time grids

def time_grid(model: SessionModel, samples: int = 200,
              interval: float | None = None) -> list[float]:
    """Sample times from the session's start to its end: ``samples`` intervals, or
    intervals of ``interval`` seconds (at most 100,000 of them)."""
    start = model.created if model.created is not None else model.read_at
    stop = max(model.end, start)
    span = stop - start
    if interval is not None and interval > 0:
        n = max(1, min(100_000, math.ceil(span / interval)))
        step = interval
    else:
        n = max(1, int(samples))
        step = span / n if span > 0 else 1.0
    return [start + k * step for k in range(n + 1)]


class _Grid:
    """Counting on a grid of sample times: an interval ``[t0, t1)`` counts at every
    sample time inside it (a difference array, summed at the end)."""

    def __init__(self, grid: list[float]) -> None:
        self.grid = grid
        self.start = grid[0]
        self.step = (grid[-1] - grid[0]) / (len(grid) - 1) if len(grid) > 1 else 1.0
        self.last = len(grid)

    def slot(self, ts: float) -> int:
        """The index of the first sample time at or after ``ts`` (len(grid): none)."""
        k = math.ceil((ts - self.start) / self.step - 1e-9)
        return 0 if k < 0 else (k if k < self.last else self.last)

    def new(self) -> list[float]:
        """A difference array for this grid."""
        return [0] * (self.last + 1)

    @staticmethod
    def total(diff: list) -> list:
        """The counts of a difference array at each sample time."""
        out, run = [], 0
        for value in diff[:-1]:
            run += value
            out.append(run)
        return out


def _state_diffs(model: SessionModel, grid: _Grid) -> list[list]:
    """Difference arrays, one per unit state, of how many units are in it."""
    diffs = [grid.new() for _ in UNIT_STATES]
    slot, codes = grid.slot, model.codes
    for i, row in enumerate(zip(*model.times)):
        last_column, last_slot = -1, 0
        for column, ts in enumerate(row):
            if ts != ts:
                continue
            k = slot(ts)
            if last_column >= 0 and k != last_slot:
                diffs[last_column][last_slot] += 1
                diffs[last_column][k] -= 1
            last_column, last_slot = column, k
        if last_column >= 0:
            code = codes[i] if last_column == FINAL_COLUMN else last_column
            diffs[code][last_slot] += 1
    return diffs


def state_counts(model: SessionModel, samples: int = 200,
                 interval: float | None = None) -> list[dict[str, Any]]:
    """How many units are in each state over time: one dict per sample time
    (:func:`time_grid`), ``{"time": t, <state>: count, ...}``, every unit state."""
    grid = _Grid(time_grid(model, samples, interval))
    counts = [grid.total(diff) for diff in _state_diffs(model, grid)]
    return [{"time": t, **dict(zip(UNIT_STATES, values))}
            for t, *values in zip(grid.grid, *counts)]


def phase_counts(model: SessionModel, samples: int = 200,
                 interval: float | None = None) -> list[dict[str, Any]]:
    """How many units are in each phase (:data:`PHASES`) over time, and how many
    have ended: ``{"time": t, <phase>: count, ..., "ended": count}`` per sample time."""
    out = []
    for row in state_counts(model, samples, interval):
        record = {"time": row["time"]}
        for phase, members in PHASES.items():
            record[phase] = sum(row[s] for s in members)
        record["ended"] = sum(row[s] for s in _FINAL_NAMES)
        out.append(record)
    return out


# --------------------------------------------------------------------------- execution

def _exec_intervals(model: SessionModel) -> Iterator[tuple[int, float, float]]:
    """``(unit index, start, stop)`` of every unit that executed: from EXECUTING to
    its next state (to the session's end while it still runs)."""
    times = model.times
    executing = times[_EXECUTING]
    later = times[_EXECUTING + 1:]
    end = model.end
    for i, start in enumerate(executing):
        if start != start:
            continue
        stop = end
        for column in later:
            ts = column[i]
            if ts == ts:
                stop = ts
                break
        yield i, start, max(stop, start)


@dataclass(slots=True)
class PilotUtilization:
    """How much of what a pilot held its units used, as radical.analytics counts it:
    resource-seconds used by executing units against resource-seconds held.

    :ivar pilot: the pilot's uid.
    :ivar state: its state.
    :ivar cores: the cores it held.
    :ivar gpus: the GPUs it held.
    :ivar held_from: when it became active (None: it did not).
    :ivar held_until: when it ended (the session's end if it has not).
    :ivar core_seconds_held: ``cores`` x the time it was held.
    :ivar core_seconds_used: the sum over its units of their cores x their executing
        time (within the time it was held).
    :ivar core_utilization: used / held (None: nothing held).
    :ivar gpu_seconds_held: likewise for GPUs.
    :ivar gpu_seconds_used: likewise for GPUs.
    :ivar gpu_utilization: likewise for GPUs (None: it held none).
    :ivar units: how many of its units executed.
    """

    pilot: str
    state: str
    cores: int
    gpus: int
    held_from: float | None
    held_until: float | None
    core_seconds_held: float
    core_seconds_used: float
    core_utilization: float | None
    gpu_seconds_held: float
    gpu_seconds_used: float
    gpu_utilization: float | None
    units: int


def held(model: SessionModel, pilot: str) -> tuple[float | None, float | None]:
    """When pilot ``pilot`` held its resources: from PMGR_ACTIVE (its agent came up)
    to its final state, or to the session's end while it holds them."""
    info = model.pilots[pilot]
    start = info.time_of(states.PMGR_ACTIVE)
    if start is None:
        return None, None
    stop = info.ended
    return start, max(start, stop if stop is not None else model.end)


def utilization(model: SessionModel) -> list[PilotUtilization]:
    """Each pilot's core and GPU utilization (:class:`PilotUtilization`)."""
    used = {uid: [0.0, 0.0, 0] for uid in model.pilots}
    windows = {uid: held(model, uid) for uid in model.pilots}
    names = model.pilot_names
    for i, start, stop in _exec_intervals(model):
        p = model.pilot_index[i]
        if p < 0 or names[p] not in used:
            continue
        lo, hi = windows[names[p]]
        if lo is None:
            continue
        overlap = min(stop, hi) - max(start, lo)
        entry = used[names[p]]
        entry[2] += 1
        if overlap > 0:
            entry[0] += model.cores[i] * overlap
            entry[1] += model.gpus[i] * overlap
    out = []
    for uid, info in model.pilots.items():
        lo, hi = windows[uid]
        span = (hi - lo) if lo is not None else 0.0
        cores_held, gpus_held = info.cores * span, info.gpus * span
        core_used, gpu_used, count = used[uid]
        out.append(PilotUtilization(
            uid, info.state, info.cores, info.gpus, lo, hi, cores_held, core_used,
            core_used / cores_held if cores_held > 0 else None, gpus_held, gpu_used,
            gpu_used / gpus_held if gpus_held > 0 else None, count))
    return out


def utilization_over_time(model: SessionModel, samples: int = 200,
                          interval: float | None = None) -> list[dict[str, Any]]:
    """Each pilot's cores and GPUs held and used over time: one dict per pilot and
    sample time, ``{"time", "pilot", "cores_held", "cores_used", "gpus_held",
    "gpus_used"}``."""
    grid = _Grid(time_grid(model, samples, interval))
    diffs = {uid: (grid.new(), grid.new()) for uid in model.pilots}
    names = model.pilot_names
    for i, start, stop in _exec_intervals(model):
        p = model.pilot_index[i]
        if p < 0 or names[p] not in diffs:
            continue
        a, b = grid.slot(start), grid.slot(stop)
        if a == b:
            continue
        cores, gpus = diffs[names[p]]
        cores[a] += model.cores[i]
        cores[b] -= model.cores[i]
        gpus[a] += model.gpus[i]
        gpus[b] -= model.gpus[i]
    out = []
    for uid, info in model.pilots.items():
        lo, hi = held(model, uid)
        cores, gpus = (grid.total(d) for d in diffs[uid])
        for t, c, g in zip(grid.grid, cores, gpus):
            holding = lo is not None and lo <= t < hi
            out.append({"time": t, "pilot": uid,
                        "cores_held": info.cores if holding else 0, "cores_used": c,
                        "gpus_held": info.gpus if holding else 0, "gpus_used": g})
    return out


def throughput(model: SessionModel, samples: int = 200,
               interval: float | None = None) -> list[dict[str, Any]]:
    """Units ending over time: per interval of the grid (:func:`time_grid`)
    ``{"time": its start, "done", "failed", "canceled": units that reached that state
    in it, "rate": all of them per second, "ended": how many ended up to its end}``."""
    grid = time_grid(model, samples, interval)
    g = _Grid(grid)
    nbins = len(grid) - 1
    bins = {state: [0] * nbins for state in _FINAL_NAMES}
    for code, ts in zip(model.codes, model.times[FINAL_COLUMN]):
        if ts == ts:
            k = math.floor((ts - g.start) / g.step)
            bins[UNIT_STATES[code]][min(max(k, 0), nbins - 1)] += 1
    out, ended = [], 0
    for k in range(nbins):
        done, failed, canceled = (bins[s][k] for s in _FINAL_NAMES)
        ended += done + failed + canceled
        out.append({"time": grid[k], "done": done, "failed": failed, "canceled": canceled,
                    "rate": (done + failed + canceled) / g.step, "ended": ended})
    return out


# --------------------------------------------------------------------------- timeline

@dataclass(slots=True)
class TimelineBar:
    """One unit's run on its pilot's slots.

    :ivar uid: the unit's uid.
    :ivar pilot: its pilot.
    :ivar state: its state.
    :ivar start: when it started executing.
    :ivar stop: when it stopped (the session's end while it runs).
    :ivar cores: the core rows it is drawn on (0 .. the pilot's cores - 1; more only
        where the journal's times overlap more units than the pilot has cores).
    :ivar gpus: the GPU rows it is drawn on.
    """

    uid: str
    pilot: str
    state: str
    start: float
    stop: float
    cores: tuple[int, ...]
    gpus: tuple[int, ...]


class _Rows:
    """Rows of one kind of slot (cores or GPUs) of one pilot, handed out lowest
    first, as the agent's scheduler hands out cores."""

    def __init__(self, count: int) -> None:
        self.free = list(range(count))     # a sorted list is a heap
        self.count = count
        self.busy: list[tuple[float, tuple[int, ...]]] = []

    def take(self, n: int, start: float, stop: float) -> tuple[int, ...]:
        while self.busy and self.busy[0][0] <= start:
            for row in heapq.heappop(self.busy)[1]:
                heapq.heappush(self.free, row)
        rows = []
        for _ in range(n):
            if self.free:
                rows.append(heapq.heappop(self.free))
            else:
                rows.append(self.count)
                self.count += 1
        taken = tuple(rows)
        if taken:
            heapq.heappush(self.busy, (stop, taken))
        return taken


def timeline(model: SessionModel) -> list[TimelineBar]:
    """Every unit that executed, on the rows of its pilot's cores and GPUs, ordered
    by pilot and start.

    The journal records how many cores and GPUs a unit asked for, not which ones it
    got: units are placed on rows by greedy interval packing in start order (a unit
    takes the lowest rows free when it starts, as the agent's scheduler takes the
    lowest free cores), which is a faithful picture of how busy the pilot was but
    not a record of the core ids."""
    by_pilot: dict[int, list[tuple[float, float, int]]] = {}
    for i, start, stop in _exec_intervals(model):
        p = model.pilot_index[i]
        if p >= 0:
            by_pilot.setdefault(p, []).append((start, stop, i))
    out = []
    for p, runs in by_pilot.items():
        uid = model.pilot_names[p]
        info = model.pilots.get(uid)
        cores = _Rows(info.cores if info else 0)
        gpus = _Rows(info.gpus if info else 0)
        runs.sort()
        for start, stop, i in runs:
            out.append(TimelineBar(model.uids[i], uid, model.state_of(i), start, stop,
                                   cores.take(model.cores[i], start, stop),
                                   gpus.take(model.gpus[i], start, stop)))
    return out


# --------------------------------------------------------------------------- units

UNIT_FIELDS = ("uid", "umgr", "pilot", "state", "exit_code", "cores", "gpus")
"""The fields of :func:`units` before the states' timestamps."""
UNIT_TIMES = tuple(UNIT_STATES[:FINAL_COLUMN]) + _FINAL_NAMES
"""The fields of :func:`units` that hold the times of the unit states."""


def units(model: SessionModel) -> Iterator[dict[str, Any]]:
    """One dict per unit, in submission order: :data:`UNIT_FIELDS`, and
    :data:`UNIT_TIMES`: the time it reached each unit state (None where it did not)."""
    names = UNIT_STATES
    for i, row in enumerate(zip(*model.times)):
        record = {"uid": model.uids[i], "umgr": model.umgr_of(i), "pilot": model.pilot_of(i),
                  "state": model.state_of(i), "exit_code": model.exit_codes[i],
                  "cores": model.cores[i], "gpus": model.gpus[i]}
        for column in range(FINAL_COLUMN):
            ts = row[column]
            record[names[column]] = ts if ts == ts else None
        final = row[FINAL_COLUMN]
        for name in _FINAL_NAMES:
            record[name] = final if final == final and name == record["state"] else None
        yield record


def as_dicts(records: list) -> list[dict[str, Any]]:
    """Dataclass records as dicts (records that are dicts already are kept)."""
    if records and not isinstance(records[0], dict):
        names = [f.name for f in fields(records[0])]
        return [{n: getattr(r, n) for n in names} for r in records]
    return list(records)
