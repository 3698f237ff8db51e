"""Constants of the RADICAL-Pilot API: callback metrics, staging actions and flags,
unit types and scheduler names."""

from __future__ import annotations

# callback metrics
UNIT_STATE = "UNIT_STATE"
"""UnitManager metric: a unit changed state; ``cb(unit, state)``."""
WAIT_QUEUE_SIZE = "WAIT_QUEUE_SIZE"
"""UnitManager metric: the number of units that are not final and not yet executing
changed; ``cb(umgr, size)``."""
UMGR_METRICS = [UNIT_STATE, WAIT_QUEUE_SIZE]
"""The metrics a UnitManager accepts."""
PILOT_STATE = "PILOT_STATE"
"""PilotManager metric: a pilot changed state; ``cb(pilot, state)``."""
PMGR_METRICS = [PILOT_STATE]
"""The metrics a PilotManager accepts."""

# staging actions and flags
COPY = "Copy"
"""Staging action: copy within the resource."""
LINK = "Link"
"""Staging action: symlink within the resource."""
MOVE = "Move"
"""Staging action: move within the resource."""
TRANSFER = "Transfer"
"""Staging action: transfer between the client and the resource."""
TARBALL = "Tarball"
"""Staging action: transfer packed as a tarball."""
CREATE_PARENTS = 1
"""Staging flag: create missing parent directories of the target."""
SKIP_FAILED = 2
"""Staging flag: a failing directive is skipped."""
NON_FATAL = 4
"""Staging flag: a failing directive does not fail the unit."""
RECURSIVE = 8
"""Staging flag: copy directories recursively."""
DEFAULT_ACTION = TRANSFER
"""The action of a directive that names none."""
DEFAULT_FLAGS = CREATE_PARENTS
"""The flags of a directive that names none."""
DEFAULT_PRIORITY = 0
"""The priority of a directive that names none."""
STAGING_AREA = "staging_area"
"""The name of the pilot's staging area below its sandbox."""

# unit types
POSIX = "POSIX"
"""Process or thread type: plain processes or threads."""
MPI = "MPI"
"""Process type: an MPI program."""
FUNC = "FUNC"
"""Process type: a Python callable named by ``executable`` (``"math.exp"``), called
with ``arguments`` in a warm worker after the ``pre_exec`` lines ran there as Python
statements; ``str(result)`` is the unit's stdout."""
OpenMP = "OpenMP"
"""Thread type: OpenMP threads (``OMP_NUM_THREADS`` is set)."""
CUDA = "CUDA"
"""GPU thread type: CUDA."""
SERIAL = "Serial"
"""Legacy unit type flag."""

# unit manager schedulers
SCHEDULER_ROUND_ROBIN = "round_robin"
"""Units are bound to the manager's pilots in turn, at submission."""
SCHEDULER_BACKFILLING = "backfilling"
"""Units wait in the client until an active pilot has room for them (late binding)."""
SCHEDULER_DEFAULT = SCHEDULER_ROUND_ROBIN
"""The scheduler of a UnitManager that names none."""
SCHEDULERS = (SCHEDULER_ROUND_ROBIN, SCHEDULER_BACKFILLING)
"""The schedulers a UnitManager accepts."""
