"""ComputeUnit: one task of a UnitManager, from NEW to DONE, FAILED or CANCELED."""

from __future__ import annotations

import copy
import os
from typing import Any, Callable, Sequence

from . import states
from .stateful import Stateful


class ComputeUnit(Stateful):
    """A unit of work, created by :meth:`UnitManager.submit_units`.

    Its state moves through :data:`rp_executor.states.UNIT_STATES`; ``state_history``
    holds every state with its timestamp. ``exit_code``, ``stdout`` and ``stderr``
    (the last 1024 characters) are set when the unit ends.
    """

    __slots__ = ("_description", "exit_code", "stdout", "stderr", "_pilot", "_call",
                 "_result", "__weakref__")
    _kind = "unit"

    def __init__(self, uid: str, umgr: Any, description: Any) -> None:
        super().__init__(uid, umgr)
        self._description = description
        self.exit_code: int | None = None
        self.stdout: str | None = None
        self.stderr: str | None = None
        self._pilot: Any = None
        self._call: tuple | None = None      # (function, arguments) in wire form
        # what the agent sent back for a function: (result, result_file, exception,
        # traceback), and the unpickled value or error once asked for
        self._result: list | None = None

    # identity ---------------------------------------------------------------------

    @property
    def umgr(self) -> Any:
        """The UnitManager this unit belongs to."""
        return self._manager

    @property
    def session(self) -> Any:
        """The session of this unit's manager."""
        return self._manager.session

    @property
    def name(self) -> str | None:
        """The description's ``name``."""
        return self._description.name

    @property
    def description(self) -> dict:
        """A copy of the description, as a dict."""
        return self._description.as_dict()

    @property
    def metadata(self) -> Any:
        """A copy of the description's ``metadata``."""
        return copy.deepcopy(self._description.metadata)

    @property
    def pilot(self) -> str | None:
        """The uid of the pilot the unit was bound to, or None while unbound."""
        return self._pilot.uid if self._pilot is not None else None

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

    @property
    def client_sandbox(self) -> str:
        """The client's working directory."""
        return self._manager.session._client_sandbox

    # function units -----------------------------------------------------------------

    @property
    def return_value(self) -> Any:
        """What the unit's ``function`` returned (None until DONE, and for executables).

        Unpickled on first access; large results are read from the unit sandbox.
        """
        res = self._result
        if res is None or self._state != states.DONE:
            return None
        if len(res) == 4:
            from .function import load_result
            res.append(load_result(res[0], res[1]))
        return res[4]

    @property
    def exception(self) -> BaseException | None:
        """Why a function unit FAILED: the original exception, whose ``__cause__``
        holds the remote traceback; for a unit that failed otherwise (its worker died,
        its pilot ended) a ``RuntimeError`` with the reason. None unless FAILED."""
        if self._state != states.FAILED:
            return None
        if self._call is None:
            return None
        res = self._result
        if res is None:
            res = self._result = [None, None, None, None]
        if len(res) == 4:
            from .function import load_exception
            if res[2] is not None:
                error = load_exception(res[2], res[3])
            else:
                error = RuntimeError((self.stderr or "the unit failed").strip())
            res.append(error)
        return res[4]

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

    @property
    def is_final(self) -> bool:
        """Whether the unit reached DONE, FAILED or CANCELED."""
        return self._state in states.FINAL_STATES
