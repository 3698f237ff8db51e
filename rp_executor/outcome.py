"""How a unit ended: one record, from the agent over the wire to the unit and the doors.

An :class:`Outcome` holds what a finished unit leaves behind (exit code, the tails of
its stdout and stderr, a function's pickled return value or exception, when and where
it ran) and **why** it ended (:class:`Ending`): done, failed by itself, lost with its
pilot, or canceled. The agent makes it when a unit's process or call ends; the client
makes it for units that end without reaching an agent (canceled while queued, failed
staging, a pilot that ended before they started). ``unit.outcome`` gives it to the
user and to both doors.

This module imports the standard library only: the agent imports it at start-up.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from operator import attrgetter


class Ending(str, enum.Enum):
    """Why a unit ended."""

    DONE = "done"
    """It ran and succeeded (exit code 0, or its function returned)."""
    FAILED = "failed"
    """It failed by itself: a non-zero exit, an exception, a bad description, a
    staging directive that failed."""
    LOST = "lost"
    """Its pilot ended (canceled, failed, out of runtime) before the unit finished."""
    CANCELED = "canceled"
    """It was canceled."""


@dataclass(slots=True)
class Outcome:
    """What a unit ended with, and why.

    :ivar ending: why it ended (:class:`Ending`).
    :ivar exit_code: the process's exit code (negative: killed by that signal); for a
        function 0 on return, 1 on an exception; None if nothing ran.
    :ivar stdout: the last characters (1024) of its standard output.
    :ivar stderr: the last characters (1024) of its standard error, with the notes of
        rp_executor (``rp_executor: ...`` lines) about why it failed.
    :ivar result: a function's pickled return value (None when it was large and
        written to ``result_file`` instead).
    :ivar result_file: the file holding a large pickled return value.
    :ivar exception: a function's pickled exception.
    :ivar traceback: the text of that exception's remote traceback.
    :ivar started: when its process or call started (seconds since the epoch).
    :ivar stopped: when it stopped.
    :ivar nodes: the names of the nodes it ran on.
    """

    ending: Ending
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    result: bytes | None = None
    result_file: str | None = None
    exception: bytes | None = None
    traceback: str | None = None
    started: float | None = None
    stopped: float | None = None
    nodes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> bool:
        """Whether the unit was lost with its pilot."""
        return self.ending is Ending.LOST

    def note(self, line: str) -> None:
        """Add ``line`` to :attr:`stderr`, on a line of its own."""
        self.stderr = f"{self.stderr.rstrip()}\n{line}" if self.stderr else line

    def to_wire(self) -> tuple:
        """The outcome for msgpack: its fields in their order (as the wire encodes its
        messages), the ending as its value."""
        return _FIELDS_OF(self)

    @classmethod
    def from_wire(cls, data: list | tuple) -> "Outcome":
        """The outcome :meth:`to_wire` encoded.

        :raises ValueError: not as many fields as an Outcome has, or an unknown ending.
        """
        if len(data) != len(_NAMES):
            raise ValueError(f"an outcome has {len(_NAMES)} fields; got {len(data)}: "
                             f"{data!r:.200}")
        ending = _ENDINGS.get(data[0])
        if ending is None:
            raise ValueError(f"unknown ending {data[0]!r}; known: {', '.join(_ENDINGS)}")
        out = cls(ending, *data[1:])
        # a million outcomes mostly repeat a few node lists and small results (a
        # pickled None): share them instead of holding a copy each
        nodes = out.nodes
        if nodes:
            key = tuple(nodes)
            out.nodes = _SHARED.get(key) or _share(key, nodes)
        result = out.result
        if result is not None and len(result) <= _SMALL:
            out.result = _SHARED.get(result) or _share(result, result)
        return out


_SMALL = 16          # bytes: results this short are shared between outcomes
_SHARED: dict = {}


def _share(key: object, value: object) -> object:
    """Keep ``value`` to be shared under ``key`` (bounded: a few thousand)."""
    if len(_SHARED) < 4096:
        _SHARED[key] = value
    return value


_NAMES = tuple(f.name for f in fields(Outcome))
_FIELDS_OF = attrgetter(*_NAMES)      # the fields as a tuple, in order, in one C call
_ENDINGS = {e.value: e for e in Ending}
