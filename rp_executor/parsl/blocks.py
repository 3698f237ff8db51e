"""Blocks as pilots: their Parsl states and their runtime (used by
:class:`rp_executor.parsl.executor.RPExecutor`; which block a unit goes to is the
binding policy :class:`rp_executor._core.binding.BlockCapacity`).
"""

from __future__ import annotations

import math
from typing import Any

from parsl.jobs.states import JobState, JobStatus

from rp_executor import states

FINAL = states.FINAL_STATES
#: pilot states of a block that has not started yet
PENDING = frozenset({states.NEW, states.PMGR_LAUNCHING_PENDING, states.PMGR_LAUNCHING,
                     states.PMGR_ACTIVE_PENDING})
WEEK_MIN = 7 * 24 * 60   # a pilot's runtime when the provider has no walltime


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
