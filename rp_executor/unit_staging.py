"""The UnitManager's part in staging: which units the client stages, which go to
the agent with their directives, and what happens when the staging thread (see
:mod:`rp_executor.client_staging`) is done with them.
"""

from __future__ import annotations

import time
from typing import Any

from . import states, unit_forms as forms
from .unit import ComputeUnit


class UnitStaging:
    """Staging steps of :class:`~rp_executor.unit_manager.UnitManager` (a mixin: it
    uses the manager's lock, units, pilots and staging plans)."""

    def _stage_in(self, pilot: Any, group: list, now: float) -> list:
        """Hand units with client-side input directives to the staging thread; send
        units whose directives all run in the agent with them. Returns the rest, which
        go on as units without directives do (lock held)."""
        plain, to_client, to_agent = [], [], []
        for u in group:
            plan = self._staging.get(u.uid)
            if plan is None:
                plain.append(u)
            elif plan.client_in:
                to_client.append(u)
            else:
                to_agent.append(u)
        if to_client:
            self._advance([(u, ((states.UMGR_SCHEDULING, now),
                                (states.UMGR_STAGING_INPUT_PENDING, now)))
                           for u in to_client])
            self._queue_staging("in", to_client)
        if to_agent:
            self._advance([(u, tuple((s, now) for s in forms.TO_AGENT)) for u in to_agent])
            pilot._send_units([self._wire_staged(u) for u in to_agent])
        return plain

    def _wire_staged(self, unit: ComputeUnit) -> dict:
        wired = forms.wire_unit(unit)
        agent_part = self._staging[unit.uid].wire()
        if agent_part is not None:
            wired["staging"] = agent_part
        return wired

    def _queue_staging(self, kind: str, units: list) -> None:
        """Queue units on the staging thread (lock held)."""
        if not units:
            return
        self._client_staging.update(u.uid for u in units)
        if self._stager is None:
            from .client_staging import UnitStager
            self._stager = UnitStager(self)
        self._stager.put(kind, units)

    def _staging_started(self, kind: str, units: list) -> None:
        """The staging thread begins with these units (UMGR_STAGING_INPUT/OUTPUT)."""
        state = states.UMGR_STAGING_INPUT if kind == "in" else states.UMGR_STAGING_OUTPUT
        now = time.time()
        with self._lock:
            self._advance([(u, ((state, now),)) for u in units if not u.is_final])

    def _input_staged(self, results: list) -> None:
        """Send the units whose input arrived; fail the others (staging thread)."""
        now = time.time()
        with self._lock:
            send: dict[Any, list] = {}
            failed = []
            for u, error, warnings in results:
                self._client_staging.discard(u.uid)
                if u.is_final:
                    continue   # canceled, or its pilot ended, meanwhile
                if error is not None:
                    u.stderr = forms.append_line(u.stderr, f"rp_executor: {error}")
                    failed.append((u, ((states.FAILED, now),)))
                else:
                    if warnings:   # added to its stderr when it ends (_on_changed)
                        self._staging_notes[u.uid] = list(warnings)
                    send.setdefault(u._pilot, []).append(u)
            self._advance(failed)
            for pilot, group in send.items():
                self._advance([(u, ((states.AGENT_STAGING_INPUT_PENDING, now),))
                               for u in group])
                pilot._send_units([self._wire_staged(u) for u in group])

    def _output_staged(self, results: list) -> None:
        """Finish units whose output was staged by the client (staging thread)."""
        now = time.time()
        with self._lock:
            items = []
            for u, error, warnings in results:
                self._client_staging.discard(u.uid)
                if u.is_final:
                    continue
                for w in warnings:
                    u.stderr = forms.append_line(u.stderr, f"rp_executor: {w}")
                if error is not None:
                    u.stderr = forms.append_line(u.stderr, f"rp_executor: {error}")
                    items.append((u, ((states.FAILED, now),)))
                else:
                    items.append((u, ((states.DONE, now),)))
            self._advance(items)
