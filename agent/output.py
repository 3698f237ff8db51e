"""How a unit's output is reported: its last characters, marked when cut (as RP does).

Executables' output files (:mod:`.executing`), function calls' captured text
(:mod:`.worker`) and a dying worker's crash dump (:mod:`.function_pool`) are all
reported this way. Standard library only: the workers import it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

MAX_IO_LOGLENGTH = 1024
"""How many characters of a unit's stdout/stderr are reported (RP's value)."""

SHORTENED = "[... CONTENT SHORTENED ...]\n"
"""The mark in front of a text that was cut."""


def shorten(text: str, limit: int = MAX_IO_LOGLENGTH) -> str:
    """The last ``limit`` characters of ``text``, marked with :data:`SHORTENED` when
    cut."""
    return text if len(text) <= limit else SHORTENED + text[-limit:]


def tail(path: Path | str, what: str = "stdout", limit: int = MAX_IO_LOGLENGTH,
         start: int = 0) -> str:
    """The last ``limit`` characters of a UTF-8 text file from byte ``start`` on, as
    :func:`shorten` gives them.

    For a file that is not text (undecodable, or holding NUL bytes) the text
    ``"unit <what> is binary -- use file staging"``. Reads only the end of the file.
    A missing or unreadable file gives ``""`` (the latter with a warning).
    """
    try:
        if os.stat(path).st_size <= start:
            return ""   # most units: one stat instead of open, seek, read, close
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            window = max(start, size - 4 * limit)  # a UTF-8 character is at most 4 bytes
            f.seek(window)
            data = f.read()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        logger.warning("cannot read %s: %s", path, exc)
        return ""
    if window > start:
        # skip the continuation bytes of a character cut by the window
        cut = 0
        while cut < 3 and cut < len(data) and 0x80 <= data[cut] <= 0xBF:
            cut += 1
        data = data[cut:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"unit {what} is binary -- use file staging"
    if "\x00" in text:
        return f"unit {what} is binary -- use file staging"
    if window > start:   # cut by the window, whatever the length left
        return SHORTENED + text[-limit:]
    return shorten(text, limit)
