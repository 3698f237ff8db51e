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


__all__ = [
    "PilotException", "DatabaseError", "IncorrectURL", "BadParameter", "DoesNotExist",
    "IncorrectState", "PermissionDenied", "AuthorizationFailed", "AuthenticationFailed",
    "Timeout", "NoSuccess", "NotImplemented",
]
