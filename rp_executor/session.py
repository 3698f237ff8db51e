"""Session: the root object owning the journal, the wire, the managers and their threads."""

from __future__ import annotations

import getpass
import itertools
import json
import logging
import os
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from rp_executor._core import reattach, wire
from rp_executor._core.gcpause import thaw
from rp_executor._core.journal import Journal
from rp_executor._core.lifecycle import CallbackThread, check_open
from rp_executor.context import Context
from rp_executor.exceptions import BadParameter, DatabaseError, DoesNotExist
from rp_executor.resource_config import ResourceConfig, ResourceRegistry

log = logging.getLogger(__name__)

#: Settings of a session; ``Session(cfg={...})`` overrides any of them.
DEFAULT_CFG: dict[str, Any] = {
    "heartbeat_interval": 1.0,        # seconds between heartbeats, both ways
    "heartbeat_timeout": 10.0,        # client: a silent agent for this long has died
    "reconnect_grace": 120.0,         # agent: carries on this long without a client
    "watch_interval": 1.0,            # client: how often providers are asked for job states
    "agent_log_level": "INFO",
    "function_workers": None,         # agent: warm workers for function units at most
                                      # (None: one per core, <= 4 per node core, <= 256)
    "bind_host": "127.0.0.1",         # the address agents connect to
    "globus_deadline": 3600.0,        # staging: seconds until Globus expires a transfer task
    "globus_timeout": None,           # staging: seconds to wait for a task (None: deadline + 60)
    "globus_poll_interval": 2.0,      # staging: seconds between looks at a task's status
}


def _session_uid(base: Path) -> tuple[str, Path]:
    """``rp.session.<host>.<user>.<days since epoch>.<counter>`` and its new directory.

    The counter is unique on this host, not only in ``base``: the uid marks every
    process of the session (``RP_SESSION_ID``), and a session sweeps the processes
    with its uid when it ends, so two sessions in different directories must never
    share one. A name is taken by creating its marker file in a per-user directory
    under the temporary directory (``O_EXCL``, atomic between processes). The search
    starts after the highest counter taken today (in that directory, and in
    ``base``), so a new session costs one listing however many came before it.
    """
    host = socket.gethostname().split(".")[0] or "localhost"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    days = int(time.time() // 86400)
    prefix = f"rp.session.{host}.{user}.{days:06d}."
    registry, taken = _uid_registry(user, f".{days:06d}.")
    try:
        taken += os.listdir(base)
    except OSError:
        pass   # not there yet: nothing taken in it
    start = 1 + max((int(name[len(prefix):]) for name in taken
                     if name.startswith(prefix) and name[len(prefix):].isdigit()), default=-1)
    for counter in itertools.count(start):
        uid = f"{prefix}{counter:04d}"
        path = base / uid
        if path.exists():
            continue
        if registry is not None:
            try:
                os.close(os.open(registry / uid, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                continue  # taken by a session elsewhere on this host
        try:
            path.mkdir(mode=0o700, parents=True)
            return uid, path
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


def _uid_registry(user: str, today: str) -> tuple[Path | None, list[str]]:
    """The per-user directory of session uid markers, and the markers of today in it;
    markers of other days are removed. None (uids then are unique per base directory
    only) if it cannot be made."""
    import tempfile

    registry = Path(tempfile.gettempdir()) / f"rp_executor.{user}.sessions"
    kept = []
    try:
        registry.mkdir(mode=0o700, exist_ok=True)
        for name in os.listdir(registry):
            if today in name:
                kept.append(name)
            else:
                try:
                    os.unlink(registry / name)
                except FileNotFoundError:
                    pass   # another session removed it
    except OSError as exc:
        log.warning("session uids are unique per directory only: cannot use %s: %s",
                    registry, exc)
        return None, []
    return registry, kept


class Session:
    """The root of everything a script does with pilots.

    :param uid: the session's id; a new ``rp.session.<host>.<user>.<day>.<n>`` id by
        default. The uid of a session whose client died (its directory, under
        ``base_dir``, holds its journal), or the path of that directory, reattaches
        to it: see :ref:`reattach`.
    :param cfg: settings overriding :data:`DEFAULT_CFG` (for a reattach: those the
        session was made with).
    :param dburl: accepted for RADICAL-Pilot compatibility and ignored (the journal
        is an SQLite file in the session directory); so is ``$RADICAL_PILOT_DBURL``.
    :param base_dir: where the session directory ``<uid>/`` is made (default: the
        current directory).

    :raises DatabaseError: the session directory or its journal cannot be created.
    :raises IncorrectState: reattaching to a session whose client still runs.

    A client that dies is not the end of its pilots: their agents carry on for
    ``reconnect_grace`` seconds (a setting of ``cfg``, 120 by default), keep what
    they report, and follow a new client that reattaches with
    ``Session(uid=<the session's uid>)`` in that time. The reattached session has the
    managers, pilots and units of the journal with their state histories; units that
    ended meanwhile show how, units still running end and are delivered. Past the
    grace the agents end their units and exit.
    """

    def __init__(self, uid: str | None = None, cfg: dict | None = None,
                 dburl: str | None = None, base_dir: str | os.PathLike | None = None,
                 **_ignored: Any) -> None:
        unknown = set(cfg or {}) - set(DEFAULT_CFG)
        if unknown:
            name = sorted(unknown)[0]
            raise BadParameter(f"Session cfg has no setting {name!r}; allowed: "
                               f"{', '.join(DEFAULT_CFG)}", attribute=name,
                               value=(cfg or {})[name])
        self._client_sandbox = os.getcwd()
        base = Path(base_dir) if base_dir is not None else Path(self._client_sandbox)
        existing = reattach.find(uid, base) if uid is not None else None
        former: dict = {}
        if existing is not None:
            former = reattach.check_client_gone(existing, existing.name)
            cfg = {**_journal_cfg(existing), **(cfg or {})}
        self._cfg = {**DEFAULT_CFG, **(cfg or {})}
        workers = self._cfg["function_workers"]
        if workers is not None and (type(workers) is not int or workers < 1):
            raise BadParameter(f"Session cfg function_workers: got {workers!r}; allowed: "
                               "an int >= 1, or None", attribute="function_workers",
                               value=workers)
        try:
            if existing is not None:
                self._uid, self._dir = existing.name, existing
            elif uid is None:
                self._uid, self._dir = _session_uid(base)
            else:
                self._uid, self._dir = uid, base / uid
                self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self._dir, 0o700)   # the journal and keys live here: owner only
        except OSError as exc:
            raise DatabaseError(f"cannot create the session directory in {base}: {exc}") \
                from exc
        self._created = time.time()
        self._closed = False
        self._close_lock = threading.Lock()
        self._journal = Journal(self._dir / reattach.JOURNAL)
        if existing is not None:
            self._created = _journal_created(self._journal) or self._created
        self._journal.add_session(self._uid, self._created, self._cfg)
        self._callbacks = CallbackThread()
        self._close_callbacks: list = []
        self._resources = ResourceRegistry()
        self._contexts: list[Context] = []
        self._pmgrs: dict[str, Any] = {}
        self._umgrs: dict[str, Any] = {}
        self._pilots: dict[str, Any] = {}
        self._units: dict[str, Any] = {}
        self._counters: dict[str, itertools.count] = {}
        self._unit_counter = itertools.count()
        self._id_lock = threading.Lock()
        self._restoring = existing is not None
        keys = reattach.load_keys(self._dir, "client") if existing is not None else None
        self._channel = wire.ClientChannel(self._on_messages, self._on_tick,
                                           host=self._cfg["bind_host"],
                                           tick=self._cfg["heartbeat_interval"], keys=keys,
                                           port=_port_of(former.get("endpoint")),
                                           allowed=reattach.agent_keys(self._dir)
                                           if existing is not None else ())
        if keys is None:
            reattach.save_keys(self._dir, "client", self._channel.keys)
        reattach.write_client(self._dir, self._channel.endpoint)
        if existing is not None:
            try:
                reattach.restore(self)
            except Exception:
                self.close(terminate=False)
                raise
            finally:
                self._restoring = False
        log.info("session %s in %s", self._uid, self._dir)

    # identity -----------------------------------------------------------------------

    @property
    def uid(self) -> str:
        """The session's id."""
        return self._uid

    @property
    def path(self) -> str:
        """The session directory (journal, logs, keys)."""
        return str(self._dir)

    logdir = path

    @property
    def created(self) -> float:
        """When the session was created (seconds since the epoch)."""
        return self._created

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def connected(self) -> bool:
        """Whether the session is open (RADICAL-Pilot compatibility)."""
        return not self._closed

    is_connected = connected

    @property
    def journal(self) -> Journal:
        """The session's journal."""
        return self._journal

    @property
    def dburl(self) -> str:
        """Where the session's records are: the journal, as an ``sqlite:///`` URL
        (RADICAL-Pilot's MongoDB URL in its day)."""
        return f"sqlite:///{self._journal.path}"

    def get_db(self) -> sqlite3.Connection:
        """A read-only ``sqlite3`` connection to the journal, with everything written
        so far (RADICAL-Pilot gave its MongoDB database); the caller closes it.

        :raises DatabaseError: the journal could not be written or read.
        """
        self._journal.flush()
        try:
            return self._journal.connect()
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot read the journal {self._journal.path}: {exc}") \
                from exc

    def is_valid(self, term: bool = True) -> bool:
        """Whether the session can still be used: open, with its wire and callback
        threads alive. ``term`` is accepted for RADICAL-Pilot compatibility (there it
        closed an invalid session); an invalid session here stays as it is."""
        return not self._closed and self._channel.alive and self._callbacks.alive

    def inject_metadata(self, metadata: dict) -> None:
        """Record ``metadata`` (a dict, JSON-serialisable) in the session's journal,
        as RADICAL-Pilot pushed it onto its session document; each call adds one.

        :raises BadParameter: ``metadata`` is not a dict.
        """
        if not isinstance(metadata, dict):
            raise BadParameter(f"inject_metadata: expected a dict; got "
                               f"{type(metadata).__name__}: {metadata!r:.200}",
                               attribute="metadata", value=metadata)
        self._check_open()
        self._journal.add_metadata(time.time(), metadata)

    def fetch_json(self, tgt: str | os.PathLike | None = None,
                   fetch_client: bool = False) -> str:
        """Write the session as JSON (``<tgt>/<uid>.json``; ``tgt`` defaults to the
        session directory): the session, its managers, pilots and units as their
        ``as_dict()`` give them. Returns the file's path. ``fetch_client`` is accepted
        for RADICAL-Pilot compatibility."""
        target = Path(tgt) if tgt is not None else self._dir
        target.mkdir(parents=True, exist_ok=True)
        data = {**self.as_dict(),
                "pmgrs": [m.as_dict() for m in self._pmgrs.values()],
                "umgrs": [m.as_dict() for m in self._umgrs.values()],
                "pilots": [p.as_dict() for p in list(self._pilots.values())],
                "units": [u.as_dict() for u in list(self._units.values())]}
        path = target / f"{self._uid}.json"
        path.write_text(json.dumps(data, indent=1, default=repr))
        return str(path)

    def fetch_profiles(self, tgt: str | os.PathLike | None = None,
                       fetch_client: bool = False) -> list[str]:
        """Write the session's profiles in RADICAL-Pilot's format into ``tgt`` (the
        session directory by default), so that radical.analytics reads the session
        (``radical.analytics.Session(tgt, 'radical')``): the state transitions of the
        journal, one ``<manager uid>.prof`` per manager
        (:func:`rp_executor.analytics.write_profiles`), and the profiles (``*.prof``)
        found in the pilot sandboxes, gathered into ``<tgt>/<pilot uid>/``. Returns
        the paths of the files, the gathered ones first. ``fetch_client`` is accepted
        for RADICAL-Pilot compatibility.

        :raises DatabaseError: the journal could not be written or read.
        """
        from rp_executor.analytics import load, write_profiles
        gathered = self._gather(tgt, ("*.prof",))
        self._journal.flush()
        try:
            model = load(self._dir)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot read the journal {self._journal.path}: {exc}") \
                from exc
        return gathered + write_profiles(model, tgt if tgt is not None else self._dir)

    def fetch_logfiles(self, tgt: str | os.PathLike | None = None,
                       fetch_client: bool = False) -> list[str]:
        """Gather the logs of the session's pilot sandboxes (``*.log``, the agent's
        ``output``/``error`` files) into ``<tgt>/<pilot uid>/`` (``tgt`` defaults to
        the session directory); returns the paths of the gathered files.
        ``fetch_client`` is accepted for RADICAL-Pilot compatibility."""
        return self._gather(tgt, ("*.log", "*.out", "*.err"), agent_output=True)

    def _gather(self, tgt: str | os.PathLike | None, patterns: tuple[str, ...],
                agent_output: bool = False) -> list[str]:
        import shutil
        target = Path(tgt) if tgt is not None else self._dir
        found = []
        for pilot in list(self._pilots.values()):
            sandbox = pilot.pilot_sandbox
            if not sandbox or not os.path.isdir(sandbox):
                continue
            names = {pilot._description.output, pilot._description.error} - {None} \
                if agent_output else set()
            for path in sorted(Path(sandbox).iterdir()):
                if path.is_file() and (path.name in names or
                                       any(path.match(p) for p in patterns)):
                    dst = target / pilot.uid / path.name
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, dst)
                    found.append(str(dst))
        return found

    def as_dict(self) -> dict:
        """``{uid, created, connected, closed, dburl, cfg}`` as in RADICAL-Pilot."""
        return {"uid": self._uid, "created": self._created, "connected": self.connected,
                "closed": self._closed, "dburl": self.dburl, "cfg": dict(self._cfg)}

    def __repr__(self) -> str:
        from rp_executor.views.summary import session_text
        return session_text(self)

    def _repr_html_(self) -> str:
        """The session's view in a notebook: its directory, its pilots with their
        walltime left, its units' counts per state and first failures, its unit
        managers."""
        from rp_executor.views.html import session_view
        return session_view(self)

    # context manager ----------------------------------------------------------------

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self, cleanup: bool = False, terminate: bool = True,
              download: bool = False) -> None:
        """Close the managers (canceling pilots unless ``terminate=False``), flush the
        journal and stop the session's threads; runs once.

        ``cleanup=True`` also removes the pilots' sandboxes and implies ``terminate``.
        ``download`` is accepted for compatibility: everything is local already.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if cleanup is None or cleanup:
            terminate = True
        if terminate is None:
            terminate = True
        for cb in reversed(list(self._close_callbacks)):
            try:
                cb()
            except Exception:
                log.exception("close callback %r of %s failed", cb, self._uid)
        for umgr in list(self._umgrs.values()):
            umgr.close()
        for pmgr in list(self._pmgrs.values()):
            pmgr.close(terminate=terminate)
        self._callbacks.close()
        self._channel.close()
        self._journal.close_session(self._uid, time.time())
        if terminate:
            from rp_executor._core.providers import sweep_local_processes
            for pilot in self._pilots.values():
                if self._is_local(pilot) and pilot.pilot_sandbox:
                    sweep_local_processes(self._uid, pilot.uid, pilot.pilot_sandbox)
        if cleanup:
            import shutil
            for pilot in self._pilots.values():
                if pilot.pilot_sandbox:
                    shutil.rmtree(pilot.pilot_sandbox, ignore_errors=True)
        self._journal.close()
        # a bulk submit froze what it made (gcpause.freeze_survivors): the session's
        # units and managers are collectable again once unreferenced
        thaw()
        log.info("session %s closed", self._uid)

    def register_close_callback(self, cb: Any) -> None:
        """Call ``cb()`` when :meth:`close` begins, before the managers close (the
        newest first): for what is built on the session's pilots and must end
        with it, such as a :class:`~rp_executor.dask.cluster.DaskCluster`. A
        failing callback is logged."""
        from rp_executor._core.lifecycle import check_callable
        check_callable(cb)
        self._close_callbacks.append(cb)

    def unregister_close_callback(self, cb: Any) -> None:
        """Remove ``cb``, registered with :meth:`register_close_callback`.

        :raises BadParameter: ``cb`` is not registered.
        """
        if cb not in self._close_callbacks:
            raise BadParameter(f"close callback {cb!r} is not registered on {self._uid}",
                               attribute="cb", value=cb)
        self._close_callbacks.remove(cb)

    # contexts -----------------------------------------------------------------------

    def add_context(self, ctx: Context) -> None:
        """Add a security context; the newest is tried first."""
        if not isinstance(ctx, Context):
            raise BadParameter(f"add_context expects a Context; got {type(ctx).__name__}",
                               attribute="ctx", value=ctx)
        self._contexts.insert(0, ctx)

    def remove_context(self, ctx: Context) -> None:
        """Remove a security context.

        :raises DoesNotExist: it was not added.
        """
        for i, known in enumerate(self._contexts):
            if known is ctx:
                del self._contexts[i]
                return
        raise DoesNotExist(f"context {ctx!r} was not added to {self._uid}")

    def list_contexts(self) -> list[Context]:
        """The security contexts, newest first."""
        return list(self._contexts)

    @property
    def contexts(self) -> list[Context]:
        """The security contexts, newest first."""
        return list(self._contexts)

    # managers -----------------------------------------------------------------------

    def list_pilot_managers(self) -> list[str]:
        """The uids of the session's pilot managers."""
        return list(self._pmgrs)

    def get_pilot_managers(self, pmgr_uids: Any = None) -> Any:
        """Pilot managers by uid (all when None); a scalar uid gives one."""
        return self._get(self._pmgrs, pmgr_uids, "pilot manager")

    def list_unit_managers(self) -> list[str]:
        """The uids of the session's unit managers."""
        return list(self._umgrs)

    def get_unit_managers(self, umgr_uids: Any = None) -> Any:
        """Unit managers by uid (all when None); a scalar uid gives one."""
        return self._get(self._umgrs, umgr_uids, "unit manager")

    @staticmethod
    def _get(table: dict, uids: Any, what: str) -> Any:
        if uids is None:
            return list(table.values())
        scalar = isinstance(uids, str)
        out = []
        for uid in ([uids] if scalar else uids):
            if uid not in table:
                raise DoesNotExist(f"{what} {uid!r} is not known; known: "
                                   f"{', '.join(table) or 'none'}")
            out.append(table[uid])
        return out[0] if scalar else out

    # resources ----------------------------------------------------------------------

    def list_resources(self) -> list[str]:
        """The labels of the known resources, sorted (aliases not included)."""
        return self._resources.list()

    def get_resource_config(self, resource: str, schema: str | None = None) -> dict:
        """A copy of a resource's config, the schema's keys merged to the top level.

        :raises DoesNotExist: the resource is not known (close matches are suggested).
        """
        return self._resources.get(resource, schema)

    def add_resource_config(self, resource_config: ResourceConfig | str) -> list[str]:
        """Add a :class:`ResourceConfig` or the configs of a ``resource_<site>.json``."""
        return self._resources.add(resource_config)

    # internals for the managers ---------------------------------------------------

    def _next_id(self, prefix: str, width: int) -> str:
        with self._id_lock:
            counter = self._counters.setdefault(prefix, itertools.count())
            return f"{prefix}.{next(counter):0{width}d}"

    def _stored_description(self, uid: str) -> Any:
        """A DONE unit's description, rebuilt from its journal row (see
        :class:`rp_executor.unit.StoredDescription`).

        :raises DatabaseError: the journal has no row of the unit.
        """
        import pickle

        from rp_executor.description import ComputeUnitDescription
        row = self._journal.unit_description(uid)
        if row is None:
            raise DatabaseError(f"the journal {self._journal.path} has no unit {uid}")
        text, function, args = row
        d = ComputeUnitDescription.__new__(ComputeUnitDescription)
        # the values were checked when the unit was submitted, and JSON gives them
        # back as they were (journal.restorable), so no check is repeated here
        d.__dict__.update(json.loads(text or "{}"))
        if function is not None:
            d.__dict__["function"] = pickle.loads(function) \
                if isinstance(function, bytes) else function
            call_args, kwargs = pickle.loads(args)
            for name, value in (("args", list(call_args)), ("kwargs", kwargs)):
                if value:
                    d.__dict__[name] = value
                else:
                    d.__dict__.pop(name, None)
        return d

    def _next_unit_ids(self, n: int) -> list[str]:
        """The next ``n`` unit uids."""
        return [f"unit.{i:06d}" for i in itertools.islice(self._unit_counter, n)]

    def _register_pmgr(self, pmgr: Any) -> None:
        self._check_open()
        self._pmgrs[pmgr.uid] = pmgr
        self._journal.add_manager(pmgr.uid, "pmgr", time.time())

    def _register_umgr(self, umgr: Any) -> None:
        self._check_open()
        self._umgrs[umgr.uid] = umgr
        self._journal.add_manager(umgr.uid, "umgr", time.time(), umgr.scheduler)

    def _continue_ids(self, *uid_lists: list[str]) -> None:
        """Go on numbering after the uids of a reattached session's objects."""
        with self._id_lock:
            for uids in uid_lists:
                for uid in uids:
                    prefix, _, number = uid.rpartition(".")
                    if not number.isdigit():
                        continue
                    if prefix == "unit":
                        n = max(int(number) + 1, next(self._unit_counter))
                        self._unit_counter = itertools.count(n)
                    else:
                        counter = self._counters.get(prefix)
                        n = max(int(number) + 1, next(counter) if counter else 0)
                        self._counters[prefix] = itertools.count(n)

    def _check_open(self) -> None:
        check_open(self._closed, f"session {self._uid}")

    def _is_local(self, pilot: Any) -> bool:
        """Whether the pilot's block runs on this machine (a Parsl LocalProvider)."""
        if pilot._provider is not None:
            return type(pilot._provider).__name__ == "LocalProvider"
        return pilot._rcfg.get("provider", "LocalProvider") == "LocalProvider" and \
            pilot._description.provider is None

    # the wire (I/O thread) ----------------------------------------------------------

    def _on_messages(self, pilot_uid: str, messages: list, seq: int | None) -> None:
        pilot = self._pilots.get(pilot_uid)
        if pilot is None:
            # while a reattach rebuilds its pilots, their agents may speak already:
            # what is dropped now, they send again when asked to resume
            log.log(logging.DEBUG if self._restoring else logging.WARNING,
                    "message from unknown pilot %r", pilot_uid)
            return
        pilot._on_messages(messages, seq)

    def _route_unit_states(self, pilot: Any, groups: list) -> None:
        """Hand a pilot's :class:`~rp_executor._core.wire.UnitGroups` groups
        (``[steps, uids, outcomes]``) to the unit managers of their units, as
        ``(steps, units, outcomes)``."""
        units = self._units
        by_umgr: dict[Any, list] = {}
        for steps, uids, outcomes in groups:
            found = list(map(units.get, uids))
            if None in found:
                for uid, unit in zip(uids, found):
                    if unit is None:
                        log.warning("%s reported unknown unit %s", pilot.uid, uid)
                keep = [i for i, unit in enumerate(found) if unit is not None]
                found = [found[i] for i in keep]
                outcomes = None if outcomes is None else [outcomes[i] for i in keep]
                if not found:
                    continue
            umgr = found[0]._manager
            if all(unit._manager is umgr for unit in found):
                by_umgr.setdefault(umgr, []).append((steps, found, outcomes))
                continue
            split: dict[Any, tuple[list, list]] = {}
            for i, unit in enumerate(found):
                mine = split.setdefault(unit._manager, ([], []))
                mine[0].append(unit)
                mine[1].append(None if outcomes is None else outcomes[i])
            for umgr, (mine, outs) in split.items():
                by_umgr.setdefault(umgr, []).append(
                    (steps, mine, None if outcomes is None else outs))
        for umgr, mine in by_umgr.items():
            umgr._handle_updates(pilot, mine)

    def _route_withdrawn(self, pilot: Any, uids: list) -> None:
        by_umgr: dict[Any, list] = {}
        for uid in uids:
            unit = self._units.get(uid)
            if unit is not None:
                by_umgr.setdefault(unit._manager, []).append(uid)
        for umgr, group in by_umgr.items():
            umgr._withdrawn(pilot, group)

    def _on_tick(self) -> None:
        beat = wire.Heartbeat(time.time())
        committed = self._journal.committed
        for pilot in list(self._pilots.values()):
            if pilot._connected and not pilot.is_final:
                pilot._send(beat)
                ack = pilot._ack(committed)
                if ack is not None:
                    pilot._send(ack)


def _journal_cfg(directory: Path) -> dict:
    """The settings a session was made with, from its journal ({} if unreadable)."""
    try:
        db = sqlite3.connect(f"{(directory / reattach.JOURNAL).resolve().as_uri()}?mode=ro",
                             uri=True)
        try:
            row = db.execute("SELECT cfg FROM session").fetchone()
        finally:
            db.close()
        data = json.loads(row[0]) if row and row[0] else {}
    except (sqlite3.Error, ValueError):
        return {}
    return {k: v for k, v in data.items() if k in DEFAULT_CFG}


def _journal_created(journal: Journal) -> float | None:
    db = journal.connect()
    try:
        row = db.execute("SELECT created FROM session").fetchone()
    finally:
        db.close()
    return row[0] if row else None


def _port_of(endpoint: str | None) -> int | None:
    """The port of a ``tcp://host:port`` endpoint (None when there is none)."""
    if not endpoint:
        return None
    try:
        return int(endpoint.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None
