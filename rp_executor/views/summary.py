"""What a view says, as plain data: counts per state, the walltime a pilot has left,
why a unit failed, and the one-line ``repr`` of the managers and the session.

Views must stay cheap for a manager of a million units: states are counted in one
pass over the objects (:func:`count_states`), and lists of units stop after a few
(:func:`first_failed`).
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import time
from operator import attrgetter
from typing import Any, Iterable, Mapping, Sequence

from rp_executor import states

#: the lines of a failed unit's stderr a view shows as its reason
REASON_LINES = 3
#: the characters of one such line a view shows at most
REASON_WIDTH = 200

_UNIT_ORDER = {s: i for i, s in enumerate(states.UNIT_STATES)}
_PILOT_ORDER = {s: i for i, s in enumerate(states.PILOT_STATES)}
_STATE_OF = attrgetter("_state")


def count_states(objs: Iterable[Any], kind: str = "unit") -> dict[str, int]:
    """Counts per state of units or pilots (``kind``), in one pass, ordered as the
    state model orders them (unknown states last)."""
    return _ordered(collections.Counter(map(_STATE_OF, objs)), kind)


def _ordered(counts: Mapping[str, int], kind: str) -> dict[str, int]:
    order = _UNIT_ORDER if kind == "unit" else _PILOT_ORDER
    return {s: counts[s] for s in sorted(counts, key=lambda s: (order.get(s, 99), str(s)))}


def census(units: Sequence[Any], limit: int) -> tuple[dict[str, int], list[Any]]:
    """Counts per state of ``units`` and the first ``limit`` FAILED ones, from one
    pass over their states (the failed ones are found by a search in C: a million
    units cost well under a second)."""
    found = list(map(_STATE_OF, units))
    counts = _ordered(collections.Counter(found), "unit")
    failed: list[Any] = []
    at = -1
    for _ in range(min(limit, counts.get(states.FAILED, 0))):
        at = found.index(states.FAILED, at + 1)
        failed.append(units[at])
    return counts, failed


def units_of(umgr: Any) -> list[Any]:
    """A unit manager's units now (a snapshot under its lock)."""
    with umgr._lock:
        return list(umgr._units.values())


def live_futures(client: Any) -> list[Any]:
    """The futures of a Client that are still referenced (a snapshot under its lock)."""
    with client._lock:
        return list(client._keys.values())


def future_status(fut: cf.Future) -> str:
    """A finished future's status as Dask names it (``'finished'``, ``'error'``,
    ``'cancelled'``), or ``'pending'``/``'running'``; for any
    ``concurrent.futures.Future`` (Parsl's too)."""
    status = getattr(fut, "status", None)
    if isinstance(status, str):
        return status
    if fut.cancelled():
        return "cancelled"
    if fut.done():
        return "error" if fut.exception() is not None else "finished"
    return "running" if fut.running() else "pending"


def count_statuses(futures: Iterable[cf.Future]) -> dict[str, int]:
    """Counts per status of futures, in the order pending, running, finished, error,
    cancelled (those with none left out)."""
    counts = collections.Counter(future_status(f) for f in futures)
    order = ("pending", "running", "finished", "error", "cancelled")
    return {s: counts[s] for s in order if counts[s]}


def reason(stderr: str | None, lines: int = REASON_LINES) -> str:
    """Why a unit failed: the last ``lines`` non-empty lines of its stderr (where
    rp_executor notes why), each cut to :data:`REASON_WIDTH` characters."""
    if not stderr:
        return ""
    kept = [line.rstrip() for line in stderr.strip().splitlines() if line.strip()]
    return "\n".join(line if len(line) <= REASON_WIDTH else line[:REASON_WIDTH - 1] + "…"
                     for line in kept[-lines:])


def unit_reason(unit: Any, lines: int = REASON_LINES) -> str:
    """Why a unit failed (:func:`reason`): the end of its stderr, or of a function's
    traceback after it (whose last line is the exception)."""
    outcome = unit.outcome
    text = unit.stderr or ""
    if outcome is not None and outcome.traceback:
        text = f"{text.rstrip()}\n{outcome.traceback}"
    return reason(text, lines)


def what_runs(description: Any) -> str | None:
    """The executable of a unit's description, or its function's name."""
    if description.executable:
        return description.executable
    fn = description.function
    if fn is None:
        return None
    if isinstance(fn, str):
        return fn
    name = getattr(fn, "name", None)     # a Call of the futures door
    if isinstance(name, str) and name:
        return name
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def active_since(pilot: Any) -> float | None:
    """When the pilot became PMGR_ACTIVE (seconds since the epoch), or None."""
    for state, ts in pilot.state_history:
        if state == states.PMGR_ACTIVE:
            return ts
    return None


def walltime_left(pilot: Any, now: float | None = None) -> float | None:
    """Seconds of its runtime the pilot has left: the description's ``runtime``
    (minutes) less the time since it became PMGR_ACTIVE (not below 0); None while it
    is not active yet, and once it is final."""
    if pilot.is_final:
        return None
    since = active_since(pilot)
    if since is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, pilot._description.runtime * 60.0 - (now - since))


def duration(seconds: float) -> str:
    """``'1 h 05 min'``, ``'24 h'``, ``'9 min 42 s'``, ``'10 min'``, ``'12 s'``."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs:02d} s" if secs else f"{minutes} min"
    return f"{secs} s"


def walltime_text(pilot: Any, now: float | None = None) -> str:
    """The walltime of a pilot: ``'9 min 42 s of 10 min'`` while active,
    ``'10 min (not active yet)'`` before, ``'ended'`` once final."""
    runtime = duration(pilot._description.runtime * 60)
    if pilot.is_final:
        return "ended"
    left = walltime_left(pilot, now)
    if left is None:
        return f"{runtime} (not active yet)"
    return f"{duration(left)} of {runtime}"


def plural(n: int, word: str) -> str:
    """``'1 unit'``, ``'2 units'``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def counts_text(counts: Mapping[str, int]) -> str:
    """``'DONE 4990, FAILED 10'``."""
    return ", ".join(f"{state} {n}" for state, n in counts.items())


def described(n: int, word: str, counts: Mapping[str, int]) -> str:
    """``'5000 units (DONE 4990, FAILED 10)'``; ``'0 units'``."""
    text = plural(n, word)
    return f"{text} ({counts_text(counts)})" if counts else text


def umgr_text(umgr: Any) -> str:
    """The ``repr`` of a UnitManager:
    ``<UnitManager umgr.0000: 5000 units (DONE 4990, FAILED 10), 2 pilots>``."""
    units = units_of(umgr)
    closed = ", closed" if umgr._closed else ""
    return (f"<UnitManager {umgr.uid}: {described(len(units), 'unit', count_states(units))}"
            f", {plural(len(umgr._pilots), 'pilot')}{closed}>")


def pmgr_text(pmgr: Any) -> str:
    """The ``repr`` of a PilotManager: ``<PilotManager pmgr.0000: 2 pilots
    (PMGR_ACTIVE 2)>``."""
    pilots = list(pmgr._pilots.values())
    closed = ", closed" if pmgr._closed else ""
    return (f"<PilotManager {pmgr.uid}: "
            f"{described(len(pilots), 'pilot', count_states(pilots, 'pilot'))}{closed}>")


def session_text(session: Any) -> str:
    """The ``repr`` of a Session: its uid, its pilots and units with their counts
    per state."""
    pilots = list(session._pilots.values())
    units = list(session._units.values())
    closed = ", closed" if session._closed else ""
    return (f"<Session {session.uid}: "
            f"{described(len(pilots), 'pilot', count_states(pilots, 'pilot'))}, "
            f"{described(len(units), 'unit', count_states(units))}{closed}>")
