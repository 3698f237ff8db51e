"""The unit manager's staging collaborator: which units the client stages, which go to
the agent with their directives, and what happens when the staging thread (see
:mod:`rp_executor.staging.stager`) is done with them.

A :class:`~rp_executor.unit_manager.UnitManager` owns one :class:`UnitStaging` and
hands it the units that have directives; units without any never meet it.
"""

from __future__ import annotations

import time
from typing import Any

from rp_executor import states
from rp_executor._core import wire
from rp_executor.outcome import Ending


def plan_of(description: Any, session: Any) -> Any:
    """The staging plan of a unit description, or None without directives.

    :raises BadParameter: a malformed directive, or ``globus://`` directives in a
        session without a globus context.
    """
    if not description.input_staging and not description.output_staging:
        return None
    from rp_executor.staging.directives import plan_description
    plan = plan_description(description.input_staging, description.output_staging)
    if plan is not None and plan.globus:
        from rp_executor.staging.stager import globus_context
        globus_context(session)
    return plan


class UnitStaging:
    """The staging part of one unit manager.

    It keeps the plans of the manager's units that have directives, the uids the
    client is staging now and the NON_FATAL warnings of their input directives. Its
    methods that take units are called with the manager's lock held; those the
    staging thread calls (:meth:`started`, :meth:`input_staged`,
    :meth:`output_staged`) take it.

    :param umgr: the owning unit manager (its lock, ``_advance``, uid and session).
    """

    def __init__(self, umgr: Any) -> None:
        self._umgr = umgr
        self.plans: dict[str, Any] = {}        # uid -> Plan, for units with directives
        self._in_client: set[str] = set()      # uids the client stages now
        self._notes: dict[str, list[str]] = {}   # NON_FATAL input warnings by uid
        self._stager: Any = None               # UnitStager, started on first use

    @property
    def uid(self) -> str:
        """The owning manager's uid."""
        return self._umgr.uid

    @property
    def session(self) -> Any:
        """The owning manager's session."""
        return self._umgr.session

    def add(self, staged: list[tuple[str, Any]]) -> None:
        """Keep the plans of new units: ``[(uid, plan), ...]``."""
        self.plans.update(staged)

    def in_client(self, uid: str) -> bool:
        """Whether the client stages this unit now."""
        return uid in self._in_client

    def stage_in(self, pilot: Any, group: list, now: float) -> list:
        """Hand units with client-side input directives to the staging thread; send
        units whose directives all run in the agent with them. Returns the rest, which
        go on as units without directives do."""
        plain, to_client, to_agent = [], [], []
        for u in group:
            plan = self.plans.get(u.uid)
            if plan is None:
                plain.append(u)
            elif plan.client_in:
                to_client.append(u)
            else:
                to_agent.append(u)
        advance = self._umgr._advance
        if to_client:
            advance([(u, ((states.UMGR_SCHEDULING, now),
                          (states.UMGR_STAGING_INPUT_PENDING, now))) for u in to_client])
            self._queue("in", to_client)
        if to_agent:
            advance([(u, tuple((s, now) for s in wire.TO_AGENT)) for u in to_agent])
            pilot._send_units([self._wired(u) for u in to_agent])
        return plain

    def stages_out(self, uid: str) -> bool:
        """Whether the client stages this unit's output (when its agent part ended)."""
        plan = self.plans.get(uid)
        return plan is not None and bool(plan.client_out)

    def stage_out(self, units: list) -> None:
        """Queue units whose agent part ended for client-side output staging."""
        self._queue("out", units)

    def ended(self, unit: Any) -> None:
        """Forget a final unit (it has an outcome); its input warnings go into its
        stderr."""
        uid = unit.uid
        self.plans.pop(uid, None)
        self._in_client.discard(uid)
        for warning in self._notes.pop(uid, ()):
            unit._outcome.note(f"rp_executor: {warning}")

    # the staging thread ---------------------------------------------------------------

    def started(self, kind: str, units: list) -> None:
        """The staging thread begins with these units (UMGR_STAGING_INPUT/OUTPUT)."""
        state = states.UMGR_STAGING_INPUT if kind == "in" else states.UMGR_STAGING_OUTPUT
        now = time.time()
        with self._umgr._lock:
            self._umgr._advance_groups([([u for u in units if not u.is_final], ((state, now),))])

    def input_staged(self, results: list) -> None:
        """Send the units whose input arrived; fail the others."""
        now = time.time()
        umgr = self._umgr
        with umgr._lock:
            send: dict[Any, list] = {}
            failed = []
            for u, error, warnings in results:
                self._in_client.discard(u.uid)
                if u.is_final:
                    continue   # canceled, or its pilot ended, meanwhile
                if error is not None:
                    u._end(Ending.FAILED, error)
                    failed.append((u, ((states.FAILED, now),)))
                else:
                    if warnings:   # added to its stderr when it ends (ended())
                        self._notes[u.uid] = list(warnings)
                    send.setdefault(u._pilot, []).append(u)
            umgr._advance(failed)
            for pilot, group in send.items():
                umgr._advance_groups([(group, ((states.AGENT_STAGING_INPUT_PENDING, now),))])
                pilot._send_units([self._wired(u) for u in group])

    def output_staged(self, results: list) -> None:
        """Finish units whose output was staged by the client."""
        now = time.time()
        umgr = self._umgr
        with umgr._lock:
            items = []
            for u, error, warnings in results:
                self._in_client.discard(u.uid)
                if u.is_final:
                    continue
                if u._outcome is None:   # the agent reports one with every end
                    u._end(Ending.DONE)
                for warning in warnings:
                    u._outcome.note(f"rp_executor: {warning}")
                if error is not None:
                    u._end(Ending.FAILED, error)
                    items.append((u, ((states.FAILED, now),)))
                else:
                    items.append((u, ((states.DONE, now),)))
            umgr._advance(items)

    # helpers --------------------------------------------------------------------------

    def _wired(self, unit: Any) -> dict:
        agent_part = self.plans[unit.uid].wire()
        return wire.unit_form(unit, agent_part)

    def _queue(self, kind: str, units: list) -> None:
        if not units:
            return
        self._in_client.update(u.uid for u in units)
        if self._stager is None:
            from rp_executor.staging.stager import UnitStager
            self._stager = UnitStager(self)
        self._stager.put(kind, units)
