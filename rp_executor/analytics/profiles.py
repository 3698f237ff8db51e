"""RADICAL-Pilot's profiles, written from the journal, so that radical.analytics reads
our sessions: ``radical.analytics.Session(<dir>, 'radical')``.

A profile is a CSV file ``<name>.prof`` of events, one a line::

    #time,event,comp,thread,uid,state,msg
    1700000000.1234567,sync_abs,umgr.0000,MainThread,,,host:127.0.0.1:1700000000.1:1700000000.1:sys
    1700000001.0000000,advance,umgr.0000,MainThread,unit.000000,NEW,

As RADICAL-Pilot 0.50 recorded them, a state transition is an ``advance`` event with
the entity's uid and its new state (radical.analytics reads ``advance`` as ``state``).
The first event of each file, ``sync_abs`` at the session's creation, is what
radical.analytics aligns the files of one host by (its message is ``host:ip:system
time:NTP time:mode``; ``sys`` says no NTP correction was taken).

One file per manager, in the target directory: ``<pmgr uid>.prof`` holds its pilots'
transitions, ``<umgr uid>.prof`` its units'. All of an entity's events are in one
file, in the order of its states: radical.analytics sorts events by time, stably, and
states that share a timestamp keep their order.
"""

from __future__ import annotations

import os
from pathlib import Path

from rp_executor.analytics.model import SessionModel

HEADER = "#time,event,comp,thread,uid,state,msg\n"
"""The first line of a profile: its field names (radical.utils' ``Profiler.fields``)."""
THREAD = "MainThread"
"""The thread named in the events (the journal does not record threads)."""


def _sync(model: SessionModel, comp: str) -> str:
    client = model.client
    host = str(client.get("host") or "localhost")
    endpoint = str(client.get("endpoint") or "")
    ip = endpoint.rpartition("//")[2].rpartition(":")[0] or "127.0.0.1"
    t0 = model.created if model.created is not None else 0.0
    return f"{t0:.7f},sync_abs,{comp},{THREAD},,,{host}:{ip}:{t0!r}:{t0!r}:sys\n"


def write_profiles(model: SessionModel, tgt: str | os.PathLike | None = None) -> list[str]:
    """Write the session's state transitions as RADICAL-Pilot profiles into ``tgt``
    (default: the session directory): ``<manager uid>.prof`` per manager with pilots
    or units. Returns the paths written (existing files of those names are replaced).
    """
    target = Path(tgt) if tgt is not None else model.path
    target.mkdir(parents=True, exist_ok=True)
    written = []
    by_pmgr: dict[str, list] = {}
    for pilot in model.pilots.values():
        by_pmgr.setdefault(pilot.pmgr, []).append(pilot)
    for pmgr, pilots in by_pmgr.items():
        path = target / f"{pmgr}.prof"
        with open(path, "w") as fh:
            fh.write(HEADER)
            fh.write(_sync(model, pmgr))
            for pilot in pilots:
                fh.writelines(f"{ts:.7f},advance,{pmgr},{THREAD},{pilot.uid},{state},\n"
                              for state, ts in pilot.history)
        written.append(str(path))
    handles = {}
    try:
        for i in range(len(model)):
            umgr = model.umgr_of(i)
            fh = handles.get(umgr)
            if fh is None:
                path = target / f"{umgr}.prof"
                fh = handles[umgr] = open(path, "w", buffering=1 << 20)
                fh.write(HEADER)
                fh.write(_sync(model, umgr))
                written.append(str(path))
            uid = model.uids[i]
            fh.writelines(f"{ts:.7f},advance,{umgr},{THREAD},{uid},{state},\n"
                          for state, ts in model.history(i))
    finally:
        for fh in handles.values():
            fh.close()
    return written
