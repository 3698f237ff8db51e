"""Reattaching: a new client takes over the session of one that died.

``Session(uid=...)`` of a session directory that holds a journal comes here. The
client of that session must be gone (``client.json`` names its process). The
journal gives back the managers, pilots and units with their state histories and
what ended units left (exit code, stdout, stderr, a function's return value); the
session's CURVE keys (0600 files of the session directory) let the pilots' agents
in again, and each agent, asked to resume after the last frame the journal holds,
sends what the client missed, once. An agent that is gone left what it could not
send in its pilot sandbox (``outbox.spill``, ``agent.end.json``); that is read
instead, and the pilot and what it held end.

The files of a session directory:

- ``session.sqlite``: the journal (0600)
- ``client.key``: the client's CURVE key pair (0600)
- ``<pilot uid>.key``: a pilot agent's key pair (0600)
- ``client.json``: the process of the client and its address (0600)
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import socket
import time
from pathlib import Path
from typing import Any

from rp_executor import states
from rp_executor._core import wire
from rp_executor._core.lifecycle import passage_of
from rp_executor._core.sessiondir import CLIENT_FILE, JOURNAL, find  # noqa: F401 (re-exported)
from rp_executor._core.sessiondir import client_running, read_client
from rp_executor.agent.outbox import END_FILE, SPILL, read_spill
from rp_executor._core.sessiondir import process_started as _started
from rp_executor.exceptions import BadParameter, IncorrectState

log = logging.getLogger(__name__)

CLIENT_KEY = "client.key"
#: a unit in one of these states was in the client only, never sent to a pilot
_IN_CLIENT = (states.NEW, states.UMGR_SCHEDULING_PENDING, states.UMGR_SCHEDULING,
              states.UMGR_STAGING_INPUT_PENDING, states.UMGR_STAGING_INPUT)
_STAGING_OUT = (states.UMGR_STAGING_OUTPUT_PENDING, states.UMGR_STAGING_OUTPUT)


def key_path(directory: Path, owner: str) -> Path:
    """The 0600 file of the CURVE key pair of ``owner`` ('client' or a pilot uid)."""
    return directory / (CLIENT_KEY if owner == "client" else f"{owner}.key")


def save_keys(directory: Path, owner: str, keys: wire.KeyPair) -> None:
    """Keep a key pair in the session directory, mode 0600."""
    wire.write_secret(key_path(directory, owner), {"public": keys.public,
                                                   "secret": keys.secret})


def load_keys(directory: Path, owner: str) -> wire.KeyPair | None:
    """A key pair kept by :func:`save_keys`, or None if there is none."""
    try:
        data = wire.read_secret(key_path(directory, owner))
    except FileNotFoundError:
        return None
    return wire.KeyPair(data["public"], data["secret"])


def agent_keys(directory: Path) -> list[str]:
    """The public keys of the session's pilots, kept in its directory."""
    return [wire.read_secret(path)["public"] for path in sorted(directory.glob("*.key"))
            if path.name != CLIENT_KEY]


def write_client(directory: Path, endpoint: str) -> None:
    """Record this process as the session's client, with its address."""
    wire.write_secret(directory / CLIENT_FILE, {
        "pid": os.getpid(), "started": _started(os.getpid()),
        "host": socket.gethostname(), "endpoint": endpoint})


def check_client_gone(directory: Path, uid: str) -> dict:
    """What the former client recorded; it must be gone.

    :raises IncorrectState: the session's client still runs on this host.
    """
    client = read_client(directory)
    pid = client.get("pid")
    if pid != os.getpid() and client_running(client):
        raise IncorrectState(f"session {uid} is still open in process {pid}: a session "
                             "has one client at a time (reattach once it has ended)")
    return client


# --------------------------------------------------------------------------- rebuilding

def rebuild_description(cls: type, text: str | None) -> tuple[Any, bool]:
    """A description from its journal JSON, and whether it described a function.

    Values the journal holds only as a summary (a function, its arguments, a
    provider object) are left out."""
    data = json.loads(text or "{}")
    function = "function" in data
    d = cls()
    for name, value in data.items():
        if name in ("function", "args", "kwargs") or (name == "provider" and (
                not isinstance(value, str) or not value.isidentifier())):
            continue
        try:
            setattr(d, name, value)
        except (BadParameter, TypeError, ValueError) as exc:
            log.warning("reattach: %s.%s not restored: %s", cls.__name__, name, exc)
    return d, function


def _restore_call(uid: str, description: Any, fn_data: bytes | str | None,
                  args: bytes | None) -> tuple:
    """A function unit's call from its journal row (its pickled function and
    arguments, or for a FUNC unit its description), with the function and arguments
    put back into ``description``; :data:`CALL_NOT_KEPT` when the row lacks them (a
    journal of an older version)."""
    from rp_executor._core.calls import dump_call
    from rp_executor.unit import CALL_NOT_KEPT
    if fn_data is None:
        if description.executable and description.cpu_process_type == "FUNC":
            return dump_call(description)
        return CALL_NOT_KEPT
    try:
        call_args, kwargs = pickle.loads(args)
        description.__dict__["function"] = pickle.loads(fn_data) \
            if isinstance(fn_data, bytes) else fn_data
        if call_args:
            description.__dict__["args"] = list(call_args)
        if kwargs:
            description.__dict__["kwargs"] = kwargs
    except Exception as exc:   # its module is not importable here: the worker may be
        log.warning("reattach: the function of %s cannot be unpickled here: %s", uid, exc)
    return fn_data, args


def _histories(journal: Any) -> dict[str, list]:
    """Every object's flat ``[state, time, ...]`` history, from the journal."""
    out: dict[str, list] = {}
    for _, uid, state, ts in journal.transitions():
        history = out.setdefault(uid, [])
        history.append(state)
        history.append(ts)
    return out


def restore(session: Any) -> None:
    """Rebuild the session's managers, pilots and units from its journal, and let
    its agents in again; pilots whose agent is gone end with what it left."""
    from rp_executor.description import ComputePilotDescription, ComputeUnitDescription
    from rp_executor.outcome import Ending, Outcome
    from rp_executor.pilot import ComputePilot
    from rp_executor.pilot_manager import PilotManager
    from rp_executor.unit import CALL_NOT_KEPT, ComputeUnit
    from rp_executor.unit_manager import UnitManager

    started = time.monotonic()
    journal = session._journal
    histories = _histories(journal)
    bound = journal.bindings()
    db = journal.connect()
    try:
        managers = db.execute("SELECT uid, kind, scheduler FROM managers "
                              "ORDER BY created").fetchall()
        added = db.execute("SELECT umgr, pilot FROM umgr_pilots ORDER BY rowid").fetchall()
        pilot_rows = db.execute("SELECT uid, pmgr, description, job_id, sandbox, resources, "
                                "seq FROM pilots ORDER BY rowid").fetchall()
        unit_rows = db.execute("SELECT u.uid, u.umgr, u.pilot, u.description, u.exit_code, "
                               "u.stdout, u.stderr, u.result, u.result_file, u.exception, "
                               "u.traceback, u.function, f.data, u.args FROM units u "
                               "LEFT JOIN functions f ON f.id = u.fn "
                               "ORDER BY u.rowid").fetchall()
    finally:
        db.close()

    _ENDINGS = {states.DONE: Ending.DONE, states.FAILED: Ending.FAILED,
                states.CANCELED: Ending.CANCELED}
    pmgrs, umgrs = {}, {}
    for uid, kind, scheduler in managers:
        if kind == "pmgr":
            pmgrs[uid] = PilotManager(session, uid=uid)
        else:
            known = scheduler in ("round_robin", "backfilling")
            umgrs[uid] = UnitManager(session, scheduler=scheduler if known else None, uid=uid)
    session._continue_ids([m[0] for m in managers], [p[0] for p in pilot_rows],
                          [u[0] for u in unit_rows])

    pilots: dict[str, ComputePilot] = {}
    for uid, pmgr_uid, text, job_id, sandbox, resources, seq in pilot_rows:
        pmgr = pmgrs[pmgr_uid]
        description, _ = rebuild_description(ComputePilotDescription, text)
        pilot = ComputePilot(uid, pmgr, description)
        pilot._restored = True
        flat = histories.get(uid)
        pilot._history = [passage_of(flat, "pilot")] if flat else []
        pilot._state = flat[-2] if flat else states.NEW
        pilot.job_id = job_id
        pilot._seq = pilot._acked = int(seq or 0)
        pilot.resource_details = json.loads(resources) if resources else {}
        pilot._launched.set()
        if sandbox:
            sb = Path(sandbox)
            pilot._sandboxes = {"pilot": str(sb), "session": str(sb.parent),
                                "resource": str(sb.parent.parent)}
        try:
            pilot._rcfg = session._resources.get(description.resource,
                                                 description.access_schema)
        except Exception as exc:   # a resource config of the former client's only
            log.warning("reattach: %s: %s", uid, exc)
        keys = load_keys(session._dir, uid)
        if keys is not None:
            pilot._keys = keys
            session._channel.allow(keys.public)
        pilots[uid] = pilot

    ended, unsent, lost_staging = [], [], []
    for (uid, umgr_uid, pilot_uid, text, exit_code, stdout, stderr, result, result_file,
         exception, traceback, function, fn_data, args) in unit_rows:
        umgr = umgrs[umgr_uid]
        description, was_function = rebuild_description(ComputeUnitDescription, text)
        unit = ComputeUnit(uid, umgr, description)
        flat = histories.get(uid)
        unit._history = [passage_of(flat, "unit")] if flat else []
        unit._state = flat[-2] if flat else states.NEW
        if function or was_function:
            unit._call = _restore_call(uid, description, fn_data, args) \
                if function else CALL_NOT_KEPT
        pilot_uid = pilot_uid or bound.get(uid)
        unit._pilot = pilots.get(pilot_uid) if pilot_uid else None
        if unit._state in states.FINAL_STATES:
            unit._outcome = Outcome(_ENDINGS[unit._state], exit_code, stdout, stderr,
                                    result, result_file, exception, traceback)
        umgr._units[uid] = unit
        session._units[uid] = unit
        if unit.is_final:
            continue
        if unit._state in _IN_CLIENT:
            unsent.append(unit)
        elif unit._state in _STAGING_OUT:
            lost_staging.append(unit)
        else:
            ended.append(unit)
    _bind_restored(umgrs, pilots, ended)

    for umgr_uid, umgr in umgrs.items():
        umgr._restored([pilots[p] for u, p in added if u == umgr_uid and p in pilots],
                       [u for u in unsent if u._manager is umgr],
                       [u for u in lost_staging if u._manager is umgr])
    # the pilots are known (their agents' reports are taken) only now that their units
    # and managers are whole: what an agent said before comes again on Resume
    for uid, pilot in pilots.items():
        if not pilot.is_final:
            pilot._unconfirmed = {u.uid for u in ended if u._pilot is pilot}
        with pilot._manager._lock:
            pilot._manager._pilots[uid] = pilot
        session._pilots[uid] = pilot
    for pilot in pilots.values():
        if pilot.is_final:
            continue
        if pilot.pilot_sandbox:
            try:
                wire.write_secret(Path(pilot.pilot_sandbox) / CLIENT_FILE,
                                  {"endpoint": session._channel.endpoint,
                                   "server_public": session._channel.keys.public,
                                   "client": [os.getpid(), time.time()]})
            except OSError as exc:
                log.warning("reattach: cannot tell %s's agent the new address: %s",
                            pilot.uid, exc)
        if pilot.job_id is None:
            pilot._manager._set_states([(pilot, [(states.FAILED, time.time())])],
                                       cause="the client was lost while it launched the pilot")
        elif agent_gone(pilot):
            pilot._manager._agent_gone(pilot)
    log.info("reattached to %s: %d pilot manager(s), %d unit manager(s), %d pilot(s), "
             "%d unit(s) in %.2f s", session.uid, len(pmgrs), len(umgrs), len(pilots),
             len(unit_rows), time.monotonic() - started)


def _bind_restored(umgrs: dict, pilots: dict, units: list) -> None:
    """Count units that were sent to pilots as theirs, in their managers."""
    for unit in units:
        umgr, pilot = unit._manager, unit._pilot
        if pilot is None:
            continue
        with umgr._lock:
            umgr._by_pilot.setdefault(pilot.uid, set()).add(unit.uid)
            if states.unit_value(unit._state) < states.unit_value(states.EXECUTING):
                umgr._queued.add(unit.uid)
            if unit._description.restartable:
                umgr._restartable.setdefault(pilot.uid, set()).add(unit.uid)
            if umgr._late:
                umgr._hold(pilot.uid, [unit], 1)


def agent_gone(pilot: Any) -> bool:
    """Whether the pilot's agent has certainly ended: it left its end file, or (on
    this host) its process is gone."""
    sandbox = pilot.pilot_sandbox
    if sandbox and (Path(sandbox) / END_FILE).exists():
        return True
    details = pilot.resource_details or {}
    pid = details.get("pid")
    if pid and details.get("hostname") == socket.gethostname():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
    return False


def read_agent_end(pilot: Any) -> dict:
    """What the pilot's agent wrote when it ended ({} if nothing)."""
    if not pilot.pilot_sandbox:
        return {}
    try:
        return wire.read_secret(Path(pilot.pilot_sandbox) / END_FILE)
    except (OSError, ValueError):
        return {}


def replay_spill(pilot: Any) -> int:
    """Apply what the pilot's agent left unacknowledged in its spill file, in order
    and once (frames the journal holds are skipped); returns how many were applied."""
    if not pilot.pilot_sandbox:
        return 0
    applied = 0
    for seq, frame in read_spill(Path(pilot.pilot_sandbox) / SPILL):
        if seq <= pilot._seq:
            continue
        try:
            messages = wire.decode(frame)
        except ValueError as exc:
            log.warning("%s: a frame of the spill file is unreadable: %s", pilot.uid, exc)
            continue
        pilot._apply(messages, seq, force=True)
        applied += 1
    return applied
