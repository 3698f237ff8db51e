"""How a unit looks to the agent, the journal and the unit scheduler.

The UnitManager sends a unit to its pilot as :func:`wire_unit` gives it (the
description's agent fields that differ from the defaults, and the pickled call of a
function unit), records it in the journal as :func:`journal_form`, and asks the
scheduler for room as :func:`need`.
"""

from __future__ import annotations

from typing import Any

from . import states
from .description import ComputeUnitDescription
from .journal import to_json
from .umgr_scheduler import Need
from .unit import ComputeUnit

# what the agent needs of a description, with the defaults it assumes for missing ones;
# the rest (metadata, staging, ...) stays here
AGENT_FIELDS = tuple((name, ComputeUnitDescription._attrs[name].default) for name in (
    "executable", "arguments", "environment", "pre_exec", "post_exec", "stdout", "stderr",
    "cpu_processes", "cpu_process_type", "cpu_threads", "gpu_processes", "name", "sandbox",
    "priority"))

# the states a unit passes in the client before it is handed to the agent
TO_AGENT = (states.UMGR_SCHEDULING, states.UMGR_STAGING_INPUT_PENDING,
            states.UMGR_STAGING_INPUT, states.AGENT_STAGING_INPUT_PENDING)


def need(unit: ComputeUnit) -> Need:
    """The cores and GPUs the unit takes on a pilot."""
    d = unit._description
    return Need(d.cpu_processes * d.cpu_threads, d.gpu_processes)


def wire_unit(unit: ComputeUnit) -> dict:
    """The unit as its pilot's agent receives it."""
    d = unit._description.__dict__
    # only what differs from the defaults: most units set a few attributes
    wired = {"uid": unit._uid,
             "description": {k: d[k] for k, default in AGENT_FIELDS
                             if k in d and d[k] != default}}
    if unit._call is not None:
        wired["function"], wired["args"] = unit._call
    return wired


def journal_form(d: ComputeUnitDescription) -> str:
    """The description as journal JSON: the attributes that differ from their defaults
    (the rest is the schema's); a function's arguments only as a summary, since they
    may be large and are data, not description."""
    data = d.non_defaults()
    if "args" in data:
        data["args"] = f"<{len(data['args'])} positional argument(s)>"
    if "kwargs" in data:
        data["kwargs"] = f"<keyword arguments: {', '.join(map(str, data['kwargs']))}>"
    return to_json(data)


def dump_call(d: ComputeUnitDescription) -> tuple:
    """A function unit's function and arguments, pickled (raises BadParameter for an
    argument that cannot be pickled, naming it)."""
    from .function import dump_arguments, dump_function
    return dump_function(d.function), dump_arguments(d.args, d.kwargs)


def staging_plan(d: ComputeUnitDescription, session: Any) -> Any:
    """The unit's staging Plan; raises BadParameter for a malformed directive, or for
    globus:// directives in a session without a globus context."""
    from .staging.directives import plan_description
    plan = plan_description(d.input_staging, d.output_staging)
    if plan is not None and plan.globus:
        from .client_staging import globus_context
        globus_context(session)
    return plan


def append_line(text: str | None, line: str) -> str:
    """``text`` (a unit's stderr) with ``line`` added on a line of its own."""
    return f"{text.rstrip()}\n{line}" if text else line
