"""The session directory as readers see it: where its journal is, which process is its
client, and whether that process still runs.

Standard library only: the command line and the analytics read session directories
without importing the client's wire (ZMQ) or Parsl.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

JOURNAL = "session.sqlite"
"""The journal's file name in a session directory."""
CLIENT_FILE = "client.json"
"""The file naming the session's client process (pid, start, host, endpoint; 0600)."""


def find(uid: str | os.PathLike, base: Path) -> Path | None:
    """The directory of an existing session ``uid`` (a uid under ``base``, or the
    path of a session directory), or None when there is none."""
    given = Path(uid)
    for path in ((given,) if given.is_absolute() or len(given.parts) > 1
                 else (base / given,)):
        if (path / JOURNAL).is_file():
            return path
    return None


def process_started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), None if there is none."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def read_client(directory: Path) -> dict:
    """What the session's client recorded in ``client.json`` ({} if nothing readable)."""
    try:
        with open(Path(directory) / CLIENT_FILE) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def client_running(client: dict) -> bool:
    """Whether the process a ``client.json`` record names still runs on this host (the
    same pid started at the same time; a client on another host counts as gone)."""
    pid = client.get("pid")
    return bool(pid) and client.get("host") == socket.gethostname() \
        and client.get("started") is not None and process_started(pid) == client["started"]
