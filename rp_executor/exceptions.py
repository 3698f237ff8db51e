"""Exceptions of the RADICAL-Pilot API.

Every exception takes ``(msg, obj=None)`` like RADICAL-Pilot's, and the ones that
resemble a builtin also derive from it, so that both ``except rp.BadParameter`` and
``except ValueError`` catch a bad description.
"""

from __future__ import annotations

from typing import Any


class PilotException(Exception):
    """Base of all rp_executor exceptions.

    :param msg: what went wrong, with the offending value and what would be right.
    :param obj: the object the error is about (a pilot, a unit, a description), if any.
    """

    def __init__(self, msg: str, obj: Any = None) -> None:
        super().__init__(msg)
        self.message = msg
        self.obj = obj

    def get_object(self) -> Any:
        """Return the object the error is about, or None."""
        return self.obj

    def get_message(self) -> str:
        """Return the error message."""
        return self.message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return (type(self), (self.message, None))


class DatabaseError(PilotException, RuntimeError):
    """The session journal could not be created, read or written."""


class IncorrectURL(PilotException, ValueError):
    """A URL is malformed or uses a scheme that is not allowed here."""


class BadParameter(PilotException, ValueError):
    """A parameter or description attribute has a wrong type, value or name.

    :param attribute: the name of the offending attribute or parameter, if known.
    :param value: the offending value, if known.
    """

    def __init__(self, msg: str, obj: Any = None, attribute: str | None = None,
                 value: Any = None) -> None:
        super().__init__(msg, obj)
        self.attribute = attribute
        self.value = value

    def __reduce__(self):
        return (type(self), (self.message, None, self.attribute))


class DoesNotExist(PilotException, LookupError, ValueError):
    """A pilot, unit, manager or resource with that name is not known.

    Also a ``ValueError``, which is what RADICAL-Pilot raised for unknown uids.
    """


class IncorrectState(PilotException, RuntimeError):
    """The operation is not allowed in the object's current state."""


class PermissionDenied(PilotException, PermissionError):
    """The operation was refused for lack of permission."""


class AuthorizationFailed(PilotException, PermissionError):
    """The credentials were valid but do not allow the operation."""


class AuthenticationFailed(PilotException, PermissionError):
    """The credentials were rejected."""


class Timeout(PilotException, TimeoutError):
    """An operation did not complete in the time allowed."""


class NoSuccess(PilotException, RuntimeError):
    """An operation failed for a reason not covered by the other exceptions."""


class NotImplemented(PilotException, NotImplementedError):  # noqa: A001 - RP's public name
    """The operation is not implemented."""


class UnitFailed(PilotException, RuntimeError):
    """A unit ended without a result: FAILED (by itself, or lost with its pilot) or
    CANCELED. Raised by a future whose unit ended so (both doors).

    :ivar uid: the unit's uid (a Parsl task's name if it never became a unit).
    :ivar state: the unit's final state.
    :ivar exit_code: its exit code (None if nothing ran).
    :ivar stderr: the last characters of its stderr, with rp_executor's notes.
    :ivar ending: why it ended (an :class:`rp_executor.outcome.Ending`), if known.
    :ivar unit: the :class:`~rp_executor.unit.ComputeUnit` (None once pickled).
    """

    def __init__(self, msg: str, obj: Any = None, *, uid: str | None = None,
                 state: str | None = None, exit_code: int | None = None,
                 stderr: str = "", ending: Any = None) -> None:
        super().__init__(msg, obj)
        self.uid, self.state, self.exit_code = uid, state, exit_code
        self.stderr, self.ending = stderr, ending

    @property
    def unit(self) -> Any:
        """The unit that failed (None once the exception was pickled)."""
        return self.obj

    @classmethod
    def of(cls, unit: Any) -> "UnitFailed":
        """The error of a unit that ended FAILED or CANCELED: its state, exit code,
        why it ended and the end of its stderr."""
        outcome = unit.outcome
        exit_code = outcome.exit_code if outcome is not None else None
        ending = outcome.ending if outcome is not None else None
        stderr = outcome.stderr if outcome is not None else ""
        msg = f"{unit.uid} ended {unit.state}"
        if exit_code is not None:
            msg += f" with exit code {exit_code}"
        if outcome is not None and outcome.lost:
            msg += " (lost with its pilot)"
        tail = stderr.strip()[-2000:]
        if tail:
            msg += f": {tail}"
        return cls(msg, unit, uid=unit.uid, state=unit.state, exit_code=exit_code,
                   stderr=stderr, ending=ending)

    def __reduce__(self):
        # the unit stays behind: it holds its manager, which cannot be pickled
        return (type(self), (self.message, None), {
            "uid": self.uid, "state": self.state, "exit_code": self.exit_code,
            "stderr": self.stderr, "ending": self.ending})


__all__ = [
    "PilotException", "DatabaseError", "IncorrectURL", "BadParameter", "DoesNotExist",
    "IncorrectState", "PermissionDenied", "AuthorizationFailed", "AuthenticationFailed",
    "Timeout", "NoSuccess", "NotImplemented", "UnitFailed",
]
