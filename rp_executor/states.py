"""The unit and pilot state models: the one source of truth for names, order and progress.

Every state is an upper-case string equal to its constant's name. States are ordered by
a numeric value; the three final states share the highest value. The client and the
agent both import this module, so it depends on nothing beyond the standard library and
:mod:`rp_executor.exceptions`.

Sources
-------
* Names and values follow RADICAL-Pilot's ``states.py`` at v0.50.23, except that the
  executing states are spelled ``EXECUTING_PENDING`` and ``EXECUTING`` as in the
  "after module refactoring" column of RP's state table; RP's 0.46-0.72 spellings
  ``AGENT_EXECUTING_PENDING`` and ``AGENT_EXECUTING`` stay accepted (and exist here as
  module aliases).
* :data:`STATE_MAPPING`, :data:`UNIT_STATES_LT_0_27` and :data:`UNIT_STATES_0_28` are
  copied from the commented-out "State Model Evolution" section of RP's
  ``docs/source/apidoc.rst`` at v0.50.23 (read from the repository, not reconstructed).
* The CamelCase strings are the stored values of RP 0.28-0.40 (``states.py`` at v0.28,
  v0.30 and v0.40); the upper-case aliases are RP's ``RP_ENABLE_OLD_DEFINES`` names.

Where the sources disagree (our choice, documented so it can be argued with)
----------------------------------------------------------------------------
* The table maps one legacy name to several current states (``STAGING_INPUT`` to
  both input-staging states, ``STAGING_OUTPUT`` to both output-staging states,
  ``SCHEDULING`` to umgr scheduling in 0.28 and agent scheduling before 0.27). An
  upper-case legacy name resolves to the *earliest* of its candidates: a state that
  claims too little progress is later filled in by :func:`unit_progress`, one that
  claims too much would fire callbacks for work not yet done.
* Upper-case legacy names follow the table, so ``PENDING_EXECUTION`` is
  ``AGENT_SCHEDULING_PENDING`` and ``PENDING_OUTPUT_STAGING`` is
  ``AGENT_STAGING_OUTPUT_PENDING`` (RP's old defines said ``AGENT_EXECUTING_PENDING``
  and ``UMGR_STAGING_OUTPUT_PENDING``).
* CamelCase values follow the 0.40 model, which already split agent and umgr staging:
  ``'PendingOutputStaging'``/``'StagingOutput'`` are the umgr output states, as in
  RP's ``_legacy_states``. ``'AllocatingPending'``/``'Allocating'`` are the agent
  scheduling states, as in 0.40 and RP's old defines (RP's ``_legacy_states`` maps
  them to the umgr scheduling states, which contradicts both).
* ``'Canceling'`` becomes ``CANCELED``; ``'Pending'`` becomes the first pending state
  of the model (``UMGR_SCHEDULING_PENDING``, ``PMGR_LAUNCHING_PENDING``).

Progress (a deliberate fix of RADICAL-Pilot)
--------------------------------------------
:func:`unit_progress` and :func:`pilot_progress` say which states a callback walk
passes. Unlike RP, a final state is never left (RP lets CANCELED become DONE or FAILED
and, for pilots, FAILED become DONE), and a jump to DONE replays every skipped state,
so that callbacks see the whole way from NEW to DONE.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable

from rp_executor.exceptions import BadParameter, IncorrectState

# ------------------------------------------------------------------------------
# common states

NEW = 'NEW'
"""Created by its manager, not yet handed to any component."""
DONE = 'DONE'
"""Final: finished successfully."""
FAILED = 'FAILED'
"""Final: finished with an error."""
CANCELED = 'CANCELED'
"""Final: canceled on request."""

INITIAL = [NEW]
"""The initial states, as a list (RP's ``INITIAL``)."""
FINAL = [DONE, FAILED, CANCELED]
"""The final states, as a list (RP's ``FINAL``)."""
FINAL_STATES = frozenset(FINAL)
"""The final states, as a frozenset for fast membership tests."""

# ------------------------------------------------------------------------------
# pilot states

PMGR_LAUNCHING_PENDING = 'PMGR_LAUNCHING_PENDING'
"""Pilot: passed to the pilot manager's launcher."""
PMGR_LAUNCHING = 'PMGR_LAUNCHING'
"""Pilot: picked up by the launcher, being submitted."""
PMGR_ACTIVE_PENDING = 'PMGR_ACTIVE_PENDING'
"""Pilot: submitted, waiting for its agent to come up."""
PMGR_ACTIVE = 'PMGR_ACTIVE'
"""Pilot: its agent is up and accepts units."""

LAUNCHING = PMGR_LAUNCHING
"""Short alias of :data:`PMGR_LAUNCHING`."""
ACTIVE_PENDING = PMGR_ACTIVE_PENDING
"""Short alias of :data:`PMGR_ACTIVE_PENDING`."""
ACTIVE = PMGR_ACTIVE
"""Short alias of :data:`PMGR_ACTIVE`."""
PENDING_LAUNCH = PMGR_LAUNCHING_PENDING
"""RP's old define for :data:`PMGR_LAUNCHING_PENDING`."""
PENDING_ACTIVE = PMGR_ACTIVE_PENDING
"""RP's old define for :data:`PMGR_ACTIVE_PENDING`."""

PILOT_STATES = (NEW, PMGR_LAUNCHING_PENDING, PMGR_LAUNCHING, PMGR_ACTIVE_PENDING,
                PMGR_ACTIVE, DONE, CANCELED, FAILED)
"""The canonical pilot states in order, finals last."""

# ------------------------------------------------------------------------------
# unit states

UMGR_SCHEDULING_PENDING = 'UMGR_SCHEDULING_PENDING'
"""Unit: passed to the unit manager's scheduler."""
UMGR_SCHEDULING = 'UMGR_SCHEDULING'
"""Unit: picked up by the umgr scheduler, being assigned to a pilot."""
UMGR_STAGING_INPUT_PENDING = 'UMGR_STAGING_INPUT_PENDING'
"""Unit: assigned to a pilot, passed to umgr input staging."""
UMGR_STAGING_INPUT = 'UMGR_STAGING_INPUT'
"""Unit: picked up by umgr input staging, transferring files."""
AGENT_STAGING_INPUT_PENDING = 'AGENT_STAGING_INPUT_PENDING'
"""Unit: passed to the agent's input staging."""
AGENT_STAGING_INPUT = 'AGENT_STAGING_INPUT'
"""Unit: picked up by agent input staging, transferring files."""
AGENT_SCHEDULING_PENDING = 'AGENT_SCHEDULING_PENDING'
"""Unit: passed to the agent scheduler, no cores assigned yet."""
AGENT_SCHEDULING = 'AGENT_SCHEDULING'
"""Unit: picked up by the agent scheduler, cores being assigned."""
EXECUTING_PENDING = 'EXECUTING_PENDING'
"""Unit: cores assigned, passed to the executor."""
EXECUTING = 'EXECUTING'
"""Unit: picked up by the executor, its process runs on the assigned cores."""
AGENT_STAGING_OUTPUT_PENDING = 'AGENT_STAGING_OUTPUT_PENDING'
"""Unit: process ended, passed to agent output staging."""
AGENT_STAGING_OUTPUT = 'AGENT_STAGING_OUTPUT'
"""Unit: picked up by agent output staging, transferring files."""
UMGR_STAGING_OUTPUT_PENDING = 'UMGR_STAGING_OUTPUT_PENDING'
"""Unit: passed back to umgr output staging."""
UMGR_STAGING_OUTPUT = 'UMGR_STAGING_OUTPUT'
"""Unit: picked up by umgr output staging, transferring files."""

AGENT_EXECUTING_PENDING = EXECUTING_PENDING
"""RP 0.46-0.72 name of :data:`EXECUTING_PENDING` (same string value here)."""
AGENT_EXECUTING = EXECUTING
"""RP 0.46-0.72 name of :data:`EXECUTING` (same string value here)."""

UNIT_STATES = (NEW, UMGR_SCHEDULING_PENDING, UMGR_SCHEDULING, UMGR_STAGING_INPUT_PENDING,
               UMGR_STAGING_INPUT, AGENT_STAGING_INPUT_PENDING, AGENT_STAGING_INPUT,
               AGENT_SCHEDULING_PENDING, AGENT_SCHEDULING, EXECUTING_PENDING, EXECUTING,
               AGENT_STAGING_OUTPUT_PENDING, AGENT_STAGING_OUTPUT,
               UMGR_STAGING_OUTPUT_PENDING, UMGR_STAGING_OUTPUT, DONE, CANCELED, FAILED)
"""The canonical unit states in order, finals last."""

# ------------------------------------------------------------------------------
# legacy names

UNIT_STATES_LT_0_27 = ('NEW', 'UNSCHEDULED', 'PENDING_INPUT_STAGING', 'STAGING_INPUT',
                       'PENDING_EXECUTION', 'SCHEDULING', 'EXECUTING',
                       'PENDING_OUTPUT_STAGING', 'STAGING_OUTPUT',
                       'DONE', 'CANCELED', 'FAILED')
"""The unit states of RADICAL-Pilot up to version 0.27, in order (from RP's apidoc)."""

UNIT_STATES_0_28 = ('NEW', 'UNSCHEDULED', 'SCHEDULING', 'PENDING_INPUT_STAGING',
                    'STAGING_INPUT', 'PENDING_EXECUTION', 'ALLOCATING', 'EXECUTING',
                    'PENDING_OUTPUT_STAGING', 'STAGING_OUTPUT',
                    'DONE', 'CANCELED', 'FAILED')
"""The unit states of RADICAL-Pilot 0.28, in order (from RP's apidoc)."""

STATE_MAPPING = (
    # (< 0.27,                 0.28,                     after module refactoring)
    ('NEW',                    'NEW',                    NEW),
    ('UNSCHEDULED',            'UNSCHEDULED',            UMGR_SCHEDULING_PENDING),
    (None,                     'SCHEDULING',             UMGR_SCHEDULING),
    ('PENDING_INPUT_STAGING',  'PENDING_INPUT_STAGING',  UMGR_STAGING_INPUT_PENDING),
    ('STAGING_INPUT',          'STAGING_INPUT',          UMGR_STAGING_INPUT),
    (None,                     None,                     AGENT_STAGING_INPUT_PENDING),
    ('STAGING_INPUT',          'STAGING_INPUT',          AGENT_STAGING_INPUT),
    ('PENDING_EXECUTION',      'PENDING_EXECUTION',      AGENT_SCHEDULING_PENDING),
    ('SCHEDULING',             'ALLOCATING',             AGENT_SCHEDULING),
    (None,                     None,                     EXECUTING_PENDING),
    ('EXECUTING',              'EXECUTING',              EXECUTING),
    ('PENDING_OUTPUT_STAGING', 'PENDING_OUTPUT_STAGING', AGENT_STAGING_OUTPUT_PENDING),
    ('STAGING_OUTPUT',         'STAGING_OUTPUT',         AGENT_STAGING_OUTPUT),
    (None,                     None,                     UMGR_STAGING_OUTPUT_PENDING),
    ('STAGING_OUTPUT',         'STAGING_OUTPUT',         UMGR_STAGING_OUTPUT),
    ('DONE',                   'DONE',                   DONE),
    ('CANCELED',               'CANCELED',               CANCELED),
    ('FAILED',                 'FAILED',                 FAILED),
)
"""RP's unit state table: rows of ``(legacy_lt_0_27, legacy_0_28, current)``.

A legacy cell is None where that model had no such state. A legacy name may appear in
several rows; :data:`LEGACY_UNIT_STATES` resolves it to the earliest of them.
"""


def _table_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for old, mid, current in STATE_MAPPING:
        for legacy in (old, mid):
            if legacy is not None and legacy not in UNIT_STATES:
                # rows are in order, so the first row naming a legacy state wins
                names.setdefault(legacy, current)
    return names


LEGACY_UNIT_STATES: dict[str, str] = {
    **_table_names(),
    # RP's old defines that the table does not name
    'ALLOCATING_PENDING': AGENT_SCHEDULING_PENDING,
    'AGENT_EXECUTING_PENDING': EXECUTING_PENDING,
    'AGENT_EXECUTING': EXECUTING,
    'CANCELING': CANCELED,
    'PENDING': UMGR_SCHEDULING_PENDING,
    # stored values of 0.28-0.40
    'New': NEW,
    'Pending': UMGR_SCHEDULING_PENDING,
    'Unscheduled': UMGR_SCHEDULING_PENDING,
    'Scheduling': UMGR_SCHEDULING,
    'PendingInputStaging': UMGR_STAGING_INPUT_PENDING,
    'StagingInput': UMGR_STAGING_INPUT,
    'AgentStagingInputPending': AGENT_STAGING_INPUT_PENDING,
    'AgentStagingInput': AGENT_STAGING_INPUT,
    'PendingExecution': AGENT_SCHEDULING_PENDING,
    'AllocatingPending': AGENT_SCHEDULING_PENDING,
    'Allocating': AGENT_SCHEDULING,
    'ExecutingPending': EXECUTING_PENDING,
    'Executing': EXECUTING,
    'AgentStagingOutputPending': AGENT_STAGING_OUTPUT_PENDING,
    'AgentStagingOutput': AGENT_STAGING_OUTPUT,
    'PendingOutputStaging': UMGR_STAGING_OUTPUT_PENDING,
    'StagingOutput': UMGR_STAGING_OUTPUT,
    'Done': DONE,
    'Canceling': CANCELED,
    'Canceled': CANCELED,
    'Failed': FAILED,
}
"""Every legacy unit state string (old upper-case names and 0.28-0.40 CamelCase values)
mapped to its canonical current unit state. Current names are not repeated here."""

LEGACY_PILOT_STATES: dict[str, str] = {
    # RP's old defines (short aliases included)
    'PENDING': PMGR_LAUNCHING_PENDING,
    'PENDING_LAUNCH': PMGR_LAUNCHING_PENDING,
    'LAUNCHING': PMGR_LAUNCHING,
    'PENDING_ACTIVE': PMGR_ACTIVE_PENDING,
    'ACTIVE_PENDING': PMGR_ACTIVE_PENDING,
    'ACTIVE': PMGR_ACTIVE,
    'CANCELING': CANCELED,
    # stored values of 0.28-0.40
    'New': NEW,
    'Pending': PMGR_LAUNCHING_PENDING,
    'PendingLaunch': PMGR_LAUNCHING_PENDING,
    'Launching': PMGR_LAUNCHING,
    'PendingActive': PMGR_ACTIVE_PENDING,
    'Active': PMGR_ACTIVE,
    'Done': DONE,
    'Canceling': CANCELED,
    'Canceled': CANCELED,
    'Failed': FAILED,
}
"""Every legacy or alias pilot state string mapped to its canonical current pilot state."""

# ------------------------------------------------------------------------------
# precomputed tables: the client asks for progress once per state update


def _values(states: tuple[str, ...]) -> dict[str | None, int]:
    final_value = len(states) - len(FINAL)
    values: dict[str | None, int] = {None: -1}
    for value, state in enumerate(states):
        values[state] = min(value, final_value)
    return values


_UNIT_VALUES = _values(UNIT_STATES)
_PILOT_VALUES = _values(PILOT_STATES)

_UNIT_NAMES = {**{s: s for s in UNIT_STATES}, **LEGACY_UNIT_STATES}
_PILOT_NAMES = {**{s: s for s in PILOT_STATES}, **LEGACY_PILOT_STATES}

_FINAL_NAMES = frozenset(name for names in (_UNIT_NAMES, _PILOT_NAMES)
                         for name, state in names.items() if state in FINAL_STATES)


def _passed(states: tuple[str, ...], values: dict[str | None, int],
            current: str | None, target: str) -> tuple[str, ...]:
    if current in FINAL_STATES:
        return ()
    cur = values[current]
    if target == DONE:
        return tuple(s for s in states if cur < values[s] < values[DONE]) + (DONE,)
    if target in FINAL_STATES:
        return (target,)
    if values[target] <= cur:
        return ()
    return tuple(s for s in states if cur < values[s] <= values[target])


def _progress_table(states: tuple[str, ...], values: dict[str | None, int]
                    ) -> dict[tuple[str | None, str], tuple[str, ...]]:
    return {(current, target): _passed(states, values, current, target)
            for current in (None, *states) for target in states}


_UNIT_PROGRESS = _progress_table(UNIT_STATES, _UNIT_VALUES)
_PILOT_PROGRESS = _progress_table(PILOT_STATES, _PILOT_VALUES)


def progress_lookup(kind: str) -> Callable[[tuple[str | None, str]], tuple[str, ...] | None]:
    """The fast path of :func:`unit_progress` (``kind="unit"``) or
    :func:`pilot_progress`: ``lookup((current, target))`` gives the same tuple for
    current state names, and None for anything else (a legacy or unknown name: ask
    the function then, which also raises for unknown names)."""
    return (_UNIT_PROGRESS if kind == "unit" else _PILOT_PROGRESS).get


def _transitions(states: tuple[str, ...]) -> dict[str | None, frozenset[str]]:
    ordered = [s for s in states if s not in FINAL_STATES]
    allowed: dict[str | None, frozenset[str]] = {None: frozenset({NEW})}
    for i, state in enumerate(ordered):
        following = {ordered[i + 1]} if i + 1 < len(ordered) else set()
        allowed[state] = frozenset(following | FINAL_STATES)
    for state in FINAL:
        allowed[state] = frozenset()
    return allowed


ALLOWED_UNIT_TRANSITIONS = _transitions(UNIT_STATES)
"""Unit state (None meaning "not yet created") → frozenset of the states directly
reachable from it: the next state in order and any final state; nothing from a final."""

ALLOWED_PILOT_TRANSITIONS = _transitions(PILOT_STATES)
"""Pilot state (None meaning "not yet created") → frozenset of the states directly
reachable from it: the next state in order and any final state; nothing from a final."""

# ------------------------------------------------------------------------------
# normalising


def _unknown(model: str, name: object, names: dict[str, str],
             states: tuple[str, ...]) -> BadParameter:
    msg = f'unknown {model} state {name!r}'
    if isinstance(name, str):
        close = (difflib.get_close_matches(name, states, n=1)
                 or difflib.get_close_matches(name, list(names), n=1))
        if close:
            msg += f' (did you mean {close[0]!r}?)'
    msg += f'; allowed {model} states: {", ".join(states)}'
    return BadParameter(msg, attribute='state', value=name)


def unit_state(name: str) -> str:
    """Return the canonical unit state for any accepted spelling of it.

    Accepted: the current names, ``AGENT_EXECUTING_PENDING``/``AGENT_EXECUTING``, and
    every key of :data:`LEGACY_UNIT_STATES`. Matching is case-sensitive.

    :raises BadParameter: for an unknown name, naming it, suggesting a close match and
        listing the allowed states.
    """
    try:
        return _UNIT_NAMES[name]
    except (KeyError, TypeError):
        raise _unknown('unit', name, _UNIT_NAMES, UNIT_STATES) from None


def pilot_state(name: str) -> str:
    """Return the canonical pilot state for any accepted spelling of it.

    Accepted: the current names, the short aliases (``LAUNCHING``, ``ACTIVE`` ...), and
    every key of :data:`LEGACY_PILOT_STATES`. Matching is case-sensitive.

    :raises BadParameter: for an unknown name, naming it, suggesting a close match and
        listing the allowed states.
    """
    try:
        return _PILOT_NAMES[name]
    except (KeyError, TypeError):
        raise _unknown('pilot', name, _PILOT_NAMES, PILOT_STATES) from None


def _many(names: str | Iterable[str] | None, one) -> list[str]:
    if names is None:
        return list(FINAL)
    if isinstance(names, str):
        return [one(names)]
    return [one(name) for name in names]


def unit_states(names: str | Iterable[str] | None) -> list[str]:
    """Return the canonical unit states for None (the finals), one name, or an iterable.

    :raises BadParameter: for any unknown name (see :func:`unit_state`).
    """
    return _many(names, unit_state)


def pilot_states(names: str | Iterable[str] | None) -> list[str]:
    """Return the canonical pilot states for None (the finals), one name, or an iterable.

    :raises BadParameter: for any unknown name (see :func:`pilot_state`).
    """
    return _many(names, pilot_state)


# ------------------------------------------------------------------------------
# order and progress


def unit_value(state: str | None) -> int:
    """Return the numeric order of a unit state: -1 for None, 0 for NEW ... 15 for finals.

    :raises BadParameter: for an unknown state name.
    """
    try:
        return _UNIT_VALUES[state]
    except (KeyError, TypeError):
        return _UNIT_VALUES[unit_state(state)]


def pilot_value(state: str | None) -> int:
    """Return the numeric order of a pilot state: -1 for None, 0 for NEW ... 5 for finals.

    :raises BadParameter: for an unknown state name.
    """
    try:
        return _PILOT_VALUES[state]
    except (KeyError, TypeError):
        return _PILOT_VALUES[pilot_state(state)]


def is_final(state: str | None) -> bool:
    """Return True if ``state`` (any accepted unit or pilot spelling) is final."""
    return state in _FINAL_NAMES


def unit_progress(current: str | None, target: str) -> tuple[str, ...]:
    """Return the unit states passed when moving from ``current`` to ``target``.

    The result is a tuple (shared, precomputed: iterate it, do not expect a list) that
    ends with ``target`` when the move is taken, and is empty when it is not:

    * ``current`` final → ``()``: a final state is never left; the caller logs and
      ignores the late update (RP let CANCELED become DONE or FAILED);
    * ``target`` DONE → every state after ``current`` up to DONE, in order, so that
      callbacks see the whole way (RP replayed skipped states too);
    * ``target`` FAILED or CANCELED → ``(target,)`` only, as in RP;
    * ``target`` not after ``current`` → ``()``: a stale update;
    * otherwise every state after ``current`` up to and including ``target``.

    ``current`` None means "before NEW", so NEW is among the passed states.

    :raises BadParameter: for an unknown state name.
    """
    try:
        return _UNIT_PROGRESS[current, target]
    except (KeyError, TypeError):
        cur = None if current is None else unit_state(current)
        return _UNIT_PROGRESS[cur, unit_state(target)]


def pilot_progress(current: str | None, target: str) -> tuple[str, ...]:
    """Return the pilot states passed when moving from ``current`` to ``target``.

    Same rules and return type as :func:`unit_progress`; unlike RP, a FAILED pilot
    does not become DONE later.

    :raises BadParameter: for an unknown state name.
    """
    try:
        return _PILOT_PROGRESS[current, target]
    except (KeyError, TypeError):
        cur = None if current is None else pilot_state(current)
        return _PILOT_PROGRESS[cur, pilot_state(target)]


def check_transition(model: str, current: str | None, target: str) -> None:
    """Raise unless ``target`` is directly reachable from ``current``.

    :param model: ``'unit'`` or ``'pilot'``.
    :param current: the present state (any accepted spelling), or None before NEW.
    :param target: the requested state (any accepted spelling).
    :raises BadParameter: for an unknown model or state name.
    :raises IncorrectState: if the model has no such direct transition; the message
        says which states would be allowed.
    """
    if model == 'unit':
        normalise, allowed, order = unit_state, ALLOWED_UNIT_TRANSITIONS, UNIT_STATES
    elif model == 'pilot':
        normalise, allowed, order = pilot_state, ALLOWED_PILOT_TRANSITIONS, PILOT_STATES
    else:
        raise BadParameter(f"unknown state model {model!r}; use 'unit' or 'pilot'",
                           attribute='model', value=model)
    cur = None if current is None else normalise(current)
    tgt = normalise(target)
    reachable = allowed[cur]
    if tgt not in reachable:
        if not reachable:
            hint = f'{cur} is final and is never left'
        else:
            names = ', '.join(s for s in order if s in reachable)
            hint = f'from {cur} only {names} may follow'
        raise IncorrectState(f'{model} state transition {cur} -> {tgt} is not allowed: '
                             f'{hint}')


# ------------------------------------------------------------------------------
# collapse


def _collapse(states: Iterable[str], values: dict[str | None, int], normalise
              ) -> str | None:
    seen = set()
    for state in states:
        seen.add(state if state in values else normalise(state))
    for final in (DONE, FAILED, CANCELED):
        if final in seen:
            return final
    return max(seen, key=values.__getitem__, default=None)


def collapse_unit_states(states: Iterable[str]) -> str | None:
    """Return the effective unit state of a state history, as RP's collapse does.

    DONE wins, then FAILED, then CANCELED; otherwise the state of highest value.
    An empty history gives None.

    :raises BadParameter: for an unknown state name.
    """
    return _collapse(states, _UNIT_VALUES, unit_state)


def collapse_pilot_states(states: Iterable[str]) -> str | None:
    """Return the effective pilot state of a state history, as RP's collapse does.

    DONE wins, then FAILED, then CANCELED; otherwise the state of highest value.
    An empty history gives None.

    :raises BadParameter: for an unknown state name.
    """
    return _collapse(states, _PILOT_VALUES, pilot_state)
