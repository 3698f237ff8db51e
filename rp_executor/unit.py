"""ComputeUnit: one task of a UnitManager, from NEW to DONE, FAILED or CANCELED."""

from __future__ import annotations

import copy
import os
from typing import Any, Callable, Sequence

from rp_executor import states
from rp_executor._core.calls import load_exception, load_result
from rp_executor._core.lifecycle import Stateful, pack_passages
from rp_executor.outcome import Ending, Outcome

_UNREAD = object()   # a function unit's value that was not unpickled yet
#: the ``_call`` of a function unit rebuilt from the journal (Session(uid=...)): it is
#: a function unit, and its function and arguments were not kept
CALL_NOT_KEPT = ()


class StoredDescription:
    """What a DONE unit keeps of its description in memory: its ``name`` and
    ``sandbox``. The rest is read back from the journal when asked for
    (:meth:`ComputeUnit.description`): 1,000,000 units would otherwise hold a
    million descriptions that nobody reads again."""

    __slots__ = ("name", "sandbox")

    def __init__(self, name: str | None, sandbox: str | None) -> None:
        self.name, self.sandbox = name, sandbox


_ANONYMOUS = StoredDescription(None, None)   # the common case, shared


class ComputeUnit(Stateful):
    """A unit of work, created by :meth:`UnitManager.submit_units`.

    Its state moves through :data:`rp_executor.states.UNIT_STATES`; ``state_history``
    holds every state with its timestamp. When it ends, :attr:`outcome` says how and
    why, and ``exit_code``, ``stdout`` and ``stderr`` (the last 1024 characters) are
    read from it.
    """

    __slots__ = ("_pilot", "_call", "_outcome", "_value", "__weakref__")
    _kind = "unit"

    def __init__(self, uid: str, umgr: Any, description: Any) -> None:
        super().__init__(uid, umgr, description)
        self._pilot: Any = None
        self._call: tuple | None = None      # (function, arguments) in wire form
        self._outcome: Outcome | None = None
        # a function's return value or exception, unpickled once asked for
        self._value: Any = _UNREAD

    # identity ---------------------------------------------------------------------

    @property
    def umgr(self) -> Any:
        """The UnitManager this unit belongs to."""
        return self._manager

    @property
    def name(self) -> str | None:
        """The description's ``name``."""
        return self._description.name

    @property
    def metadata(self) -> Any:
        """A copy of the description's ``metadata``."""
        return copy.deepcopy(self._desc().metadata)

    @property
    def description(self) -> dict:
        """A copy of the description, as a dict (a DONE unit's is read back from the
        journal)."""
        return self._desc().as_dict()

    def _desc(self) -> Any:
        """The unit's description (a DONE unit's rebuilt from the journal)."""
        d = self._description
        if type(d) is StoredDescription:
            return self._manager._session._stored_description(self._uid)
        return d

    def _compact(self) -> None:
        """Keep only what an ended unit can still be asked for, compactly (lock
        held): the history packed; a DONE unit's description and call left to the
        journal, when it can give them back exactly."""
        self._history = pack_passages(self._history, "unit")
        if self._state != states.DONE:
            return   # failed and canceled units may be restarted from what they keep
        if self._call is not None:
            self._call = CALL_NOT_KEPT
        d = self._description
        if type(d) is not StoredDescription and not d.__dict__.get("_kept"):
            name, sandbox = d.__dict__.get("name"), d.__dict__.get("sandbox")
            self._description = _ANONYMOUS if name is None and sandbox is None else \
                StoredDescription(name, sandbox)

    @property
    def pilot(self) -> str | None:
        """The uid of the pilot the unit was bound to, or None while unbound."""
        return self._pilot.uid if self._pilot is not None else None

    # how it ended -------------------------------------------------------------------

    @property
    def outcome(self) -> Outcome | None:
        """How the unit ended and why (an :class:`~rp_executor.outcome.Outcome`);
        None until its process or call ended (or it ended without one)."""
        return self._outcome

    @property
    def exit_code(self) -> int | None:
        """The exit code of the unit's process (None until it ended, and if nothing
        ran)."""
        return self._outcome.exit_code if self._outcome is not None else None

    @property
    def stdout(self) -> str | None:
        """The last 1024 characters of the unit's stdout (None until it ended)."""
        return self._outcome.stdout if self._outcome is not None else None

    @property
    def stderr(self) -> str | None:
        """The last 1024 characters of the unit's stderr, with rp_executor's notes on
        why it failed (None until it ended)."""
        return self._outcome.stderr if self._outcome is not None else None

    def _end(self, ending: Ending, note: str | None = None) -> None:
        """Record why the unit ends, before it is advanced to its final state (lock
        held), with rp_executor's ``note`` on why, if any, in its stderr."""
        if self._outcome is None:
            self._outcome = Outcome(ending)
        else:
            self._outcome.ending = ending
        if note:
            self._outcome.note(f"rp_executor: {note}")

    # sandboxes ----------------------------------------------------------------------

    @property
    def unit_sandbox(self) -> str | None:
        """The unit's working directory on the resource, once it is bound to a pilot
        that was launched: the description's ``sandbox`` (relative to the pilot
        sandbox) or ``<pilot sandbox>/<unit uid>``."""
        pilot_sandbox = self._pilot.pilot_sandbox if self._pilot is not None else None
        if pilot_sandbox is None:
            return None
        return os.path.join(pilot_sandbox, self._description.sandbox or self._uid)

    sandbox = unit_sandbox
    working_directory = unit_sandbox

    @property
    def pilot_sandbox(self) -> str | None:
        """The sandbox of the unit's pilot."""
        return self._pilot.pilot_sandbox if self._pilot is not None else None

    @property
    def resource_sandbox(self) -> str | None:
        """The resource sandbox of the unit's pilot."""
        return self._pilot.resource_sandbox if self._pilot is not None else None

    # function units -----------------------------------------------------------------

    @property
    def return_value(self) -> Any:
        """What the unit's ``function`` returned (None until DONE, and for executables).

        Unpickled on first access; large results are read from the unit sandbox.
        """
        if self._state != states.DONE or self._outcome is None or self._call is None:
            return None
        if self._value is _UNREAD:
            self._value = load_result(self._outcome.result, self._outcome.result_file)
        return self._value

    @property
    def exception(self) -> BaseException | None:
        """Why a function unit FAILED: the original exception, whose ``__cause__``
        holds the remote traceback; for a unit that failed otherwise (its worker died,
        its pilot ended) a ``RuntimeError`` with the reason. None unless FAILED."""
        if self._state != states.FAILED or self._call is None:
            return None
        if self._value is _UNREAD:
            outcome = self._outcome
            if outcome is not None and outcome.exception is not None:
                self._value = load_exception(outcome.exception, outcome.traceback)
            else:
                self._value = RuntimeError((self.stderr or "the unit failed").strip())
        return self._value

    # operations ---------------------------------------------------------------------

    def wait(self, state: str | Sequence[str] | None = None,
             timeout: float | None = None) -> str | None:
        """Wait until the unit reached or passed ``state`` (default: final) or is final.

        Returns the unit's state then, also when ``timeout`` (seconds) ran out.
        """
        return super().wait(state, timeout)

    def cancel(self) -> None:
        """Cancel the unit: kill it if running; it ends CANCELED unless already final."""
        self._manager.cancel_units(self.uid)

    def register_callback(self, cb: Callable, cb_data: Any = None) -> None:
        """Call ``cb(unit, state)`` (or with ``cb_data``) on every state of this unit."""
        super().register_callback(cb, cb_data)

    def _repr_html_(self) -> str:
        """The unit's view in a notebook: uid and state, name, pilot, exit code and
        why it failed."""
        from rp_executor.views.html import unit_view
        return unit_view(self)

    def as_dict(self) -> dict:
        """The unit as a dict, with RADICAL-Pilot's keys."""
        return {
            "type": "unit", "umgr": self._manager.uid, "uid": self.uid, "name": self.name,
            "state": self._state, "exit_code": self.exit_code, "stdout": self.stdout,
            "stderr": self.stderr, "pilot": self.pilot,
            "resource_sandbox": self.resource_sandbox, "pilot_sandbox": self.pilot_sandbox,
            "unit_sandbox": self.unit_sandbox, "client_sandbox": self.client_sandbox,
            "description": self.description,
        }
