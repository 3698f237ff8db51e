"""UnitManager: binds units to pilots, follows their states, cancels them."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from rp_executor import states
from rp_executor._core import wire
from rp_executor._core.binding import PilotRoom, UmgrScheduler, make_umgr_scheduler, need_of
from rp_executor._core.calls import dump_call
from rp_executor._core.gcpause import freeze_survivors, paused_gc
from rp_executor._core.journal import description_record
from rp_executor._core.lifecycle import Manager, check_callable
from rp_executor.constants import (FUNC, SCHEDULER_DEFAULT, SCHEDULERS, UMGR_METRICS,
                                   WAIT_QUEUE_SIZE)
from rp_executor.description import ComputeUnitDescription
from rp_executor.exceptions import BadParameter, IncorrectState
from rp_executor.outcome import Ending, Outcome
from rp_executor.staging.unit_staging import UnitStaging, plan_of
from rp_executor.unit import CALL_NOT_KEPT, ComputeUnit

log = logging.getLogger(__name__)

_EXECUTING_VALUE = states.unit_value(states.EXECUTING)
_FINAL = states.FINAL_STATES
_ENDING = {states.DONE: Ending.DONE, states.FAILED: Ending.FAILED,
           states.CANCELED: Ending.CANCELED}
_PLACED_VALUE = states.unit_value(states.AGENT_SCHEDULING)   # below: never started
# a long submit_units list is handed on in chunks: a small first one gets the pilots
# going at once, larger ones keep the per-chunk cost low
_FIRST_CHUNK = 256
_CHUNK = 2048
# from this many descriptions on, submit_units pauses the garbage collector (gcpause)
_PAUSE_GC_FROM = 1000
# ... and from this many on, what it made is frozen (gcpause.freeze_survivors)
_FREEZE_FROM = 10_000


class UnitManager(Manager):
    """Submits units to the pilots added to it.

    :param session: the :class:`Session` this manager belongs to.
    :param scheduler: how units are bound to pilots; ``'round_robin'`` (the default)
        binds each unit at submission to the next pilot that is not final;
        ``'backfilling'`` keeps units here until an active pilot has free cores for
        them; a :class:`~rp_executor._core.binding.UmgrScheduler` instance is a
        policy of the caller's (the Parsl door's ``BlockCapacity``). See
        :mod:`rp_executor._core.binding`.

    Units a pilot never started are moved to another pilot of this manager when
    that pilot ends or is removed; without another pilot they fail.
    """

    _kind = "unit"
    _metrics = tuple(UMGR_METRICS)

    def __init__(self, session: Any, scheduler: str | UmgrScheduler | None = None,
                 uid: str | None = None) -> None:
        scheduler = scheduler or SCHEDULER_DEFAULT
        if isinstance(scheduler, UmgrScheduler):
            policy = scheduler
        elif scheduler in SCHEDULERS:
            policy = make_umgr_scheduler(scheduler)
        else:
            raise BadParameter(f"UnitManager.scheduler: got {scheduler!r}; allowed: "
                               f"{', '.join(SCHEDULERS)}", attribute="scheduler",
                               value=scheduler)
        super().__init__(session, uid or session._next_id("umgr", 4))
        self._scheduler = policy.name
        self._policy = policy
        self._late = policy.late_binding
        self._busy: dict[str, list[int]] = {}          # pilot uid -> [cores, gpus] bound
        self._restartable: dict[str, set[str]] = {}    # pilot uid -> restartable uids
        self._units: dict[str, ComputeUnit] = {}
        self._pilots: dict[str, Any] = {}
        self._unbound: list[ComputeUnit] = []        # waiting for a pilot
        self._by_pilot: dict[str, set[str]] = {}      # pilot uid -> uids not final
        self._queued: set[str] = set()                # not final, not yet executing
        self._queued_reported = 0
        self._staging = UnitStaging(self)             # units with staging directives
        self._final_cbs: list = []                    # register_final_callback
        self._uncallable = False    # units rebuilt by a reattach whose call is not kept
        session._register_umgr(self)

    @property
    def scheduler(self) -> str:
        """The name of the scheduler binding units to pilots."""
        return self._scheduler

    def as_dict(self) -> dict:
        """``{uid, cfg}`` as in RADICAL-Pilot."""
        return {"uid": self._uid, "cfg": {"scheduler": self._scheduler}}

    def __repr__(self) -> str:
        from rp_executor.views.summary import umgr_text
        return umgr_text(self)

    def _repr_html_(self) -> str:
        """The manager's view in a notebook: its units' counts per state, the first
        failed units with their reasons, its pilots."""
        from rp_executor.views.html import umgr_view
        return umgr_view(self)

    def is_valid(self, term: bool = True) -> bool:
        """Whether the manager can still be used: open and its session valid.
        ``term`` is accepted for RADICAL-Pilot compatibility."""
        return not self._closed and self._session.is_valid(term)

    # pilots -------------------------------------------------------------------------

    def add_pilots(self, pilots: Any) -> None:
        """Add one pilot or a list; units waiting for a pilot are bound at once.

        :raises BadParameter: an empty list, or a pilot added twice.
        """
        pilots = list(pilots) if isinstance(pilots, (list, tuple)) else [pilots]
        if not pilots:
            raise BadParameter("cannot add no pilots", attribute="pilots", value=pilots)
        with self._lock:
            for p in pilots:
                if p.uid in self._pilots:
                    raise BadParameter(f"pilot {p.uid} already added", attribute="pilots",
                                       value=p.uid)
            self._add_pilots(pilots)
            self._session._journal.add_umgr_pilots(self._uid, [p.uid for p in pilots])
            waiting, self._unbound = self._unbound, []
            if waiting:
                self._schedule(waiting)

    def _add_pilots(self, pilots: list) -> None:
        for p in pilots:
            self._pilots[p.uid] = p
            self._by_pilot.setdefault(p.uid, set())
            self._busy.setdefault(p.uid, [0, 0])
            if self not in p._umgrs:
                p._umgrs.append(self)

    def list_pilots(self) -> list[str]:
        """The uids of the pilots added to this manager."""
        with self._lock:
            return list(self._pilots)

    def get_pilots(self) -> list:
        """The pilots added to this manager."""
        with self._lock:
            return list(self._pilots.values())

    def remove_pilots(self, pilot_ids: Any, drain: bool = False) -> None:
        """Stop binding new units to these pilots; the pilots keep running.

        Units bound to them that have not started go to the other pilots (or wait for
        one): those not yet sent at once, those queued in an agent when the agent has
        given them back. Units already running finish where they are, and still fail
        if such a pilot dies.

        :raises BadParameter: ``drain=True`` (not supported) or an unknown pilot.
        """
        if drain:
            raise BadParameter("remove_pilots(drain=True) is not supported",
                               attribute="drain", value=drain)
        uids = [pilot_ids] if isinstance(pilot_ids, str) else \
            [getattr(p, "uid", p) for p in pilot_ids]
        with self._lock:
            for uid in uids:
                if uid not in self._pilots:
                    raise BadParameter(f"pilot {uid!r} is not added to {self._uid}",
                                       attribute="pilot_ids", value=uid)
            moved = []
            for uid in uids:
                # the pilot still tells this manager when it ends (pilot._umgrs), so
                # that units left running on it end too
                pilot = self._pilots.pop(uid)
                self._session._journal.remove_umgr_pilots(self._uid, [uid])
                bound = set(self._by_pilot.get(uid, ()))
                taken = pilot._take_unsent(bound)
                moved.extend(self._unbind(self._units[t]) for t in taken)
                sent = [u for u in bound - taken if not self._units[u].is_final]
                if sent:
                    pilot._send(wire.Withdraw(sent))
            if moved:
                log.info("%s: %d unit(s) not yet sent to removed pilot(s) %s are re-routed",
                         self._uid, len(moved), uids)
                self._schedule(moved)

    # units --------------------------------------------------------------------------

    def list_units(self) -> list[str]:
        """The uids of this manager's units."""
        with self._lock:
            return list(self._units)

    def get_units(self, uids: Any = None) -> Any:
        """The units for ``uids`` (all when None); a scalar uid gives one unit.

        :raises DoesNotExist: a uid is not known (also a ``ValueError``).
        """
        with self._lock:
            units, scalar = self._lookup(self._units, uids, "unit")
        return units[0] if scalar else units

    def submit_units(self, descriptions: Any) -> Any:
        """Submit units; one description in gives one unit out, a list gives a list.

        Every description is validated before any unit is created, so a bad one
        raises and nothing of the call is submitted; earlier submissions go on.

        :raises BadParameter: an invalid description (its index, attribute and value
            are named), or an empty list.
        """
        self._check_open()
        scalar = not isinstance(descriptions, (list, tuple))
        descs = [descriptions] if scalar else descriptions
        if not descs:
            raise BadParameter("cannot submit no unit descriptions",
                               attribute="descriptions", value=descriptions)
        with paused_gc() if len(descs) >= _PAUSE_GC_FROM else contextlib.nullcontext():
            units = self._submit(descs, scalar)
            if len(descs) >= _FREEZE_FROM:
                # what it made lives as long as the session: the collector's runs
                # need not walk it again and again (thawed when the session closes)
                freeze_survivors()
            return units

    def _submit(self, descs: list | tuple, scalar: bool) -> Any:
        checked, calls, plans, records = [], [], [], []
        # descriptions made from one template share a shape: it is validated and
        # recorded once, and of the others only the function and arguments are
        # checked
        shapes: dict[tuple, tuple] = {}    # -> (journal record, agent description)
        for i, d in enumerate(descs):
            if type(d) is not dict and not isinstance(d, ComputeUnitDescription):
                raise BadParameter(f"descriptions[{i}]: expected a ComputeUnitDescription "
                                   f"or dict; got {type(d).__name__}",
                                   attribute="descriptions", value=d)
            try:
                # a dict is checked as it is converted: its errors name the index too
                d = ComputeUnitDescription(d) if type(d) is dict else d
                shape = d._shape()      # of what the user's holds: fewer values
                d = d._snapshot()
                known = None if shape is None else shapes.get(shape)
                if known is None:
                    d.__dict__.pop("_agent", None)   # not one a copied description brought
                    d.validate()
                    known = (description_record(d), wire.agent_description(d))
                    if shape is not None:
                        shapes[shape] = known
                else:
                    d._validate_shared()
                record, d.__dict__["_agent"] = known
                records.append(record)
                calls.append(dump_call(d) if d.function is not None
                             or d.cpu_process_type == FUNC else None)
                plans.append(plan_of(d, self._session)
                             if d.input_staging or d.output_staging else None)
            except BadParameter as exc:
                if not scalar:
                    exc.message = f"descriptions[{i}]: {exc.message}"
                    exc.args = (exc.message,)
                raise
            checked.append(d)
        units: list[ComputeUnit] = []
        # All are valid: hand them on in chunks, so that pilots start on the first
        # while the rest are still being created (a long list would otherwise keep
        # every pilot idle until its last unit is made).
        start, size = 0, _FIRST_CHUNK
        while start < len(checked):
            end = start + size
            units.extend(self._create(checked[start:end], calls[start:end],
                                      plans[start:end], records[start:end]))
            start, size = end, _CHUNK
        return units[0] if scalar else units

    def _create(self, checked: list, calls: list, plans: list,
                records: list) -> list[ComputeUnit]:
        """Create, journal and schedule units of checked descriptions (``records``:
        their :func:`description_record`)."""
        session = self._session
        now = time.time()
        uids = session._next_unit_ids(len(checked))
        units = [ComputeUnit(uid, self, d) for uid, d in zip(uids, checked)]
        for unit, call in zip(units, calls):
            unit._call = call
        staged = [(uid, plan) for uid, plan in zip(uids, plans) if plan is not None]
        journal = session._journal
        rows = []
        fids: dict = {}     # pickled function -> its id in the journal
        umgr = self._uid
        for uid, d, call, (text, exact) in zip(uids, checked, calls, records):
            if not exact:
                d._kept = True     # a DONE unit keeps it: the journal cannot give it back
            if call is None:
                rows.append((uid, umgr, text, None, None, None))
            elif d.function is None:     # a FUNC unit: its executable and arguments
                rows.append((uid, umgr, text, 1, None, None))
            else:
                fid = fids.get(call[0])
                if fid is None:
                    fid = fids[call[0]] = journal.function_id(call[0])
                rows.append((uid, umgr, text, 1, fid, call[1]))
        journal.add_units(rows)
        with self._lock:
            self._units.update(zip(uids, units))
            session._units.update(zip(uids, units))
            self._queued.update(uids)
            if staged:
                self._staging.add(staged)
            self._schedule(units, ((states.NEW, now), (states.UMGR_SCHEDULING_PENDING, now)))
        return units

    def _forget(self, uids: list[str]) -> None:
        """Drop final units from this manager and the session (the journal keeps
        them): for a door whose user let go of them, as Dask forgets released keys."""
        with self._lock:
            for uid in uids:
                unit = self._units.get(uid)
                if unit is not None and unit.is_final:
                    del self._units[uid]
                    self._session._units.pop(uid, None)

    def wait_units(self, uids: Any = None, state: Any = None,
                   timeout: float | None = None, progress: bool = False) -> Any:
        """Wait until units reached or passed ``state`` (default: final), or are final.

        ``uids=None`` waits for all units; ``state`` may be a name of the current
        model, a legacy name or a list (the lowest counts). Returns the states (a
        scalar for a scalar uid), also when ``timeout`` seconds ran out.

        ``progress=True`` shows a bar of the units that ended (done, failed,
        canceled) meanwhile: a widget in a notebook, a bar in a terminal, nothing
        where the output is neither (see :func:`rp.progress
        <rp_executor.views.progress.progress>`).
        """
        with self._lock:
            units, scalar = self._lookup(self._units, uids, "unit")
        if progress:
            from rp_executor.views.progress import watching
            with watching(units, desc=self._uid):
                result = self._wait(units, state, timeout)
        else:
            result = self._wait(units, state, timeout)
        return result[0] if scalar else result

    def cancel_units(self, uids: Any = None) -> None:
        """Cancel units (all when None) and wait until they are final.

        Units still in the client end CANCELED at once; running ones are killed with
        their whole process group and end CANCELED when the agent confirms.
        """
        with self._lock:
            units, _ = self._lookup(self._units, uids, "unit")
            now = time.time()
            local, remote = [], {}
            for u in units:
                if u.is_final:
                    continue
                if u._pilot is None or self._staging.in_client(u.uid):
                    local.append(u)
                else:
                    remote.setdefault(u._pilot, []).append(u)
            for pilot, group in remote.items():
                uids_here = {u.uid for u in group}
                taken = pilot._take_unsent(uids_here)
                local.extend(u for u in group if u.uid in taken)
                rest = [uid for uid in uids_here if uid not in taken]
                if rest:
                    pilot._send(wire.CancelUnits(rest))
            if local:
                gone = set(local)
                self._unbound = [u for u in self._unbound if u not in gone]
                for u in local:
                    u._end(Ending.CANCELED)
                self._advance_groups([(local, ((states.CANCELED, now),))])
        self._wait(units, None, None)

    def close(self) -> None:
        """Stop this manager; units are not canceled (as in RADICAL-Pilot).

        State callbacks are removed; final callbacks
        (:meth:`register_final_callback`) stay until they are unregistered, so that
        units ending while the session closes still reach them."""
        with self._lock:
            self._closed = True
            for metric in self._callbacks:
                self._callbacks[metric].clear()

    def register_final_callback(self, cb: Any) -> None:
        """Call ``cb(units)`` with each batch of this manager's units that reached a
        final state (DONE, FAILED, CANCELED), in the order they did.

        The one hook through which the doors (futures, Parsl) learn that units
        ended: ``cb`` runs on the session's callback thread, after the units' state
        callbacks of the same batch, once per unit; each unit's :attr:`outcome
        <rp_executor.unit.ComputeUnit.outcome>` says how and why it ended.
        """
        check_callable(cb)
        with self._lock:
            self._final_cbs = [*self._final_cbs, cb]

    def unregister_final_callback(self, cb: Any) -> None:
        """Remove ``cb``, registered with :meth:`register_final_callback`.

        :raises BadParameter: ``cb`` is not registered.
        """
        with self._lock:
            if cb not in self._final_cbs:
                raise BadParameter(f"final callback {cb!r} is not registered on "
                                   f"{self._uid}", attribute="cb", value=cb)
            self._final_cbs = [c for c in self._final_cbs if c != cb]

    # binding ------------------------------------------------------------------------

    def _schedule(self, units: list[ComputeUnit], first: tuple | None = None) -> None:
        """Bind units to pilots and hand them on (lock held).

        ``first``: the NEW and UMGR_SCHEDULING_PENDING steps of units just created.
        Those bound now take them in the same advance as their binding (one journal
        entry and one callback batch per unit, not two); the others take them alone.
        """
        if first is not None and self._staging.plans:
            self._advance_groups([(units, first)])   # staging advances them itself
            first = None
        try:
            self._bind(units, first)
        finally:
            if first is not None:
                fresh = [u for u in units if u._state is None]
                if fresh:
                    self._advance_groups([(fresh, first)])

    def _bind(self, units: list[ComputeUnit], first: tuple | None) -> None:
        """:meth:`_schedule`'s binding (lock held)."""
        if self._uncallable:
            units = self._callable(units)
        if self._late and self._unbound:
            # late binding: units already waiting go first
            units = [*self._unbound, *units]
            self._unbound = []
        live = [p for p in self._pilots.values() if not p.is_final]
        if not live:
            self._unbound.extend(units)
            return
        # the manager's policy (binding.py) picks the pilots, or None: wait. No more
        # units than it could bind now are looked at: the rest wait, in order, and a
        # long queue costs nothing while the pilots are full
        rooms = [self._room(p) for p in live]
        limit = self._policy.limit(rooms)
        rest: list[ComputeUnit] = []
        if limit < len(units):
            units, rest = units[:int(limit)], units[int(limit):]
        by_uid = {p.uid: p for p in live}
        now = time.time()
        steps = tuple((s, now) for s in wire.TO_AGENT)
        batches: dict[Any, list] = {}
        free = []
        for u in units:
            wanted = u._description.pilot
            if not wanted:
                free.append(u)
            elif wanted in by_uid:
                batches.setdefault(by_uid[wanted], []).append(u)
            else:
                self._unbound.append(u)   # early binding to a pilot not added (yet)
        if free:
            for u, uid in zip(free, self._policy.bind(
                    [need_of(u._description) for u in free], rooms)):
                if uid is None:
                    self._unbound.append(u)
                else:
                    batches.setdefault(by_uid[uid], []).append(u)
        self._unbound.extend(rest)
        for pilot, group in batches.items():
            for u in group:
                u._pilot = pilot
            uids = [u._uid for u in group]
            self._by_pilot[pilot.uid].update(uids)
            if self._late:
                self._hold(pilot.uid, group, 1)
            again = [u._uid for u in group if u._description.restartable]
            if again:
                self._restartable.setdefault(pilot.uid, set()).update(again)
            self._session._journal.bind_units(pilot.uid, uids)
            if self._staging.plans:
                group = self._staging.stage_in(pilot, group, now)
            if first is None:
                self._advance_groups([(group, steps)])
            else:
                self._advance_groups([([u for u in group if u._state is not None], steps),
                                      ([u for u in group if u._state is None],
                                       first + steps)])
            pilot._send_units([wire.unit_form(u) for u in group])

    def _callable(self, units: list[ComputeUnit]) -> list[ComputeUnit]:
        """The units that can be sent to a pilot; function units rebuilt by a
        reattach, whose call was not kept, fail (lock held)."""
        gone = [u for u in units if u._call is CALL_NOT_KEPT]
        if gone:
            self._fail(gone, "the client was lost before the unit ran, and the journal "
                             "does not keep a function unit's call to send it again")
        return [u for u in units if u._call is not CALL_NOT_KEPT]

    def _fail(self, units: list[ComputeUnit], why: str) -> None:
        """End units FAILED for ``why`` (noted in their stderr)."""
        with self._lock:
            units = [u for u in units if not u.is_final]
            for u in units:
                u._end(Ending.FAILED, why)
            now = time.time()
            self._advance_groups([(units, ((states.FAILED, now),))])

    def _restored(self, pilots: list, unsent: list[ComputeUnit],
                  staging_out: list[ComputeUnit]) -> None:
        """Go on after a reattach (rp_executor._core.reattach) with the pilots added
        to this manager, the units the former client had not sent yet (see
        :meth:`_resend`) and the units whose output staging it did not finish
        (failed)."""
        with self._lock:
            live = [u for u in self._units.values() if not u.is_final]
            self._uncallable = any(u._call is CALL_NOT_KEPT for u in live)
            self._add_pilots(pilots)
            self._fail(staging_out, "the client was lost during the unit's output staging")
            # the units' directives: those in agents may still have output to stage
            plans = [(u.uid, plan_of(u._description, self._session)) for u in live
                     if u._description.input_staging or u._description.output_staging]
            if plans:
                self._staging.add(plans)
            self._resend(unsent)

    def _resend(self, units: list[ComputeUnit]) -> None:
        """Schedule again units of a reattached session that never reached an agent:
        executables are sent from their journaled description; function units fail,
        since the journal does not keep their calls (see :meth:`_callable`)."""
        with self._lock:
            units = [u for u in units if not u.is_final]
            plans = [(u.uid, plan_of(u._description, self._session)) for u in units
                     if u._call is not CALL_NOT_KEPT and u.uid not in self._staging.plans
                     and (u._description.input_staging or u._description.output_staging)]
            if plans:
                self._staging.add(plans)
            self._queued.update(u.uid for u in units)
            if units:
                self._schedule([self._unbind(u) for u in units])

    def _room(self, pilot: Any) -> PilotRoom:
        details = pilot.resource_details or {}
        busy = self._busy.get(pilot.uid) or [0, 0]
        return PilotRoom(pilot.uid, pilot._state == states.PMGR_ACTIVE,
                         int(details.get("cores") or 0), int(details.get("gpus") or 0),
                         busy[0], busy[1], len(self._by_pilot.get(pilot.uid) or ()))

    def _hold(self, pilot_uid: str, units: list, sign: int) -> None:
        """Count the units' cores and GPUs as bound to a pilot (+1) or freed (-1)."""
        busy = self._busy.get(pilot_uid)
        if busy is not None:
            for u in units:
                need = need_of(u._description)
                busy[0] += sign * need.cores
                busy[1] += sign * need.gpus

    def _unbind(self, unit: ComputeUnit) -> ComputeUnit:
        """Forget the unit's pilot (lock held), so that it can be scheduled again."""
        pilot = unit._pilot
        if pilot is not None:
            self._by_pilot[pilot.uid].discard(unit.uid)
            if self._late:
                self._hold(pilot.uid, [unit], -1)
            unit._pilot = None
        return unit

    def _withdrawn(self, pilot: Any, uids: list) -> None:
        """An agent gave back units that had not started: bind them elsewhere."""
        with self._lock:
            back = [self._units[uid] for uid in uids
                    if not self._units[uid].is_final and self._units[uid]._pilot is pilot]
            if back:
                log.info("%s: %d unit(s) given back by %s are re-routed", self._uid,
                         len(back), pilot.uid)
                self._schedule([self._unbind(u) for u in back])

    def _reschedule_waiting(self) -> None:
        """Offer the units waiting here to the pilots again (lock held)."""
        if self._unbound:
            waiting, self._unbound = self._unbound, []
            self._schedule(waiting)

    def _pilot_active(self, pilot: Any) -> None:
        """A pilot of this manager became active: late binding may use it now."""
        if self._late:
            with self._lock:
                self._reschedule_waiting()

    # what comes back ----------------------------------------------------------------

    def _handle_updates(self, pilot: Any, groups: list) -> None:
        """Apply agent state updates (on the I/O thread): ``(steps, units, outcomes)``
        groups, whose units took the same steps (``outcomes``: None, or one for each
        unit, None or in wire form)."""
        items = []
        staged_out: list[ComputeUnit] = []
        now = None
        staging = self._staging
        with self._lock:
            for steps, units, outcomes in groups:
                live = []
                for i, unit in enumerate(units):
                    if unit._pilot is not pilot or unit._state in _FINAL:
                        # late news: from a pilot the unit was taken from (re-routed),
                        # or of a unit that ended already (its pilot was given up on
                        # first)
                        log.debug("%s: ignored an update of %s from %s", self._uid,
                                  unit.uid, pilot.uid)
                        continue
                    if outcomes is not None and outcomes[i]:
                        unit._outcome = Outcome.from_wire(outcomes[i])
                    live.append(unit)
                if not live:
                    continue
                if steps and steps[-1][0] == states.UMGR_STAGING_OUTPUT_PENDING:
                    if staging.plans:
                        out = [u for u in live if staging.stages_out(u.uid)]
                        if out:     # done on the staging thread
                            items.append((out, steps))
                            staged_out += out
                            taken = set(out)
                            live = [u for u in live if u not in taken]
                    now = now or time.time()
                    steps = [*steps, (states.UMGR_STAGING_OUTPUT, now), (states.DONE, now)]
                items.append((live, steps))
            self._advance_groups(items)
            if staged_out:
                self._staging.stage_out([u for u in staged_out if not u.is_final])

    def _pilot_final(self, pilot: Any, cause: str) -> None:
        """Move the units a pilot never started to the other pilots; fail the rest
        (restartable ones are resubmitted as new units when another pilot is left)."""
        with self._lock:
            uids = self._by_pilot.get(pilot.uid, set())
            staging = self._staging
            lost = [self._units[uid] for uid in uids if not self._units[uid].is_final
                    and not (staging.plans and staging.in_client(uid)
                             and self._units[uid]._state == states.UMGR_STAGING_OUTPUT)]
            if not lost and pilot.uid not in self._restartable:
                return
            pilot._take_unsent({u.uid for u in lost})
            others = any(p is not pilot and not p.is_final for p in self._pilots.values())
            value = states.unit_value
            # units bound by name to this pilot (description.pilot) stay with it
            moved = [u for u in lost if value(u._state) < _PLACED_VALUE
                     and not u._description.pilot
                     and not staging.in_client(u.uid)] if others else []
            failed = [u for u in lost if u not in moved]
            now = time.time()
            # restartable units the agent failed as it ended (lost with the pilot)
            ended = [u for u in (self._units[uid]
                                 for uid in self._restartable.pop(pilot.uid, ()))
                     if u._state == states.FAILED and u._outcome is not None
                     and u._outcome.lost]
            restart = [u for u in failed if u._description.restartable] + ended \
                if others else []
            restart = [u for u in restart if u._call is not CALL_NOT_KEPT]
            for u in failed:
                u._end(Ending.LOST, f"pilot {pilot.uid} ended ({pilot.state}: {cause}) "
                                    "before the unit finished")
            self._advance_groups([(failed, ((states.FAILED, now),))])
            if moved:
                log.info("%s: %d unit(s) that %s never started are re-routed", self._uid,
                         len(moved), pilot.uid)
                self._schedule([self._unbind(u) for u in moved])
        if restart:
            if self._closed:
                # closing (the session cancels its pilots): nothing new is submitted
                log.info("%s is closed: %d restartable unit(s) of %s are not resubmitted",
                         self._uid, len(restart), pilot.uid)
                return
            log.info("resubmitting %d restartable unit(s) of %s", len(restart), pilot.uid)
            copies = [u._description.copy() for u in restart]
            for d in copies:
                d.pilot = ""   # to another pilot, also when it was bound to this one
            try:
                self.submit_units(copies)
            except IncorrectState:   # closed just now, by another thread
                log.info("%s closed: %d restartable unit(s) of %s are not resubmitted",
                         self._uid, len(restart), pilot.uid)

    def _on_changed(self, objs: list) -> None:
        final = states.FINAL_STATES
        value = states.unit_value
        queued = self._queued
        results = []
        freed = False
        ended = []
        staging, by_pilot, late = self._staging, self._by_pilot, self._late
        for u in objs:
            state, uid = u._state, u._uid
            if state in final:
                queued.discard(uid)
                ended.append(u)
                if u._outcome is None:    # it ended without reaching an agent
                    u._outcome = Outcome(_ENDING[state])
                if staging.plans:
                    staging.ended(u)
                pilot = u._pilot
                if pilot is not None:
                    pilot = pilot.uid
                    by_pilot[pilot].discard(uid)
                    if late:
                        self._hold(pilot, [u], -1)
                        freed = True
                o = u._outcome
                results.append((pilot, o.exit_code, o.stdout, o.stderr, o.result,
                                o.result_file, o.exception, o.traceback, uid))
                u._compact()
            elif value(state) >= _EXECUTING_VALUE:
                queued.discard(uid)
        if results:
            self._session._journal.set_unit_results(results)
        if ended and self._final_cbs:
            self._session._callbacks.submit(_fire_final, self._final_cbs, ended)
        if freed and self._unbound:
            self._reschedule_waiting()
        if len(queued) != self._queued_reported:
            self._queued_reported = len(queued)
            self._fire_metric(WAIT_QUEUE_SIZE, len(queued))


def _fire_final(cbs: list, units: list) -> None:
    # on the callback thread; the callbacks are those registered when the units ended
    for cb in cbs:
        try:
            cb(units)
        except Exception:
            log.exception("final callback %s failed for %d unit(s)",
                          getattr(cb, "__qualname__", cb), len(units))
