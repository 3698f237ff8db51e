"""The session journal: an SQLite database (WAL) of managers, pilots, units and every
state transition with its timestamp.

Writes are queued and applied by one writer thread in batches (one transaction per
batch, ``executemany`` per statement), so the hot path never waits for the disk.
:meth:`Journal.flush` waits until everything queued so far is written.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import reprlib
import sqlite3
import threading
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable

from rp_executor.exceptions import DatabaseError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS session (uid TEXT PRIMARY KEY, created REAL, cfg TEXT,
                                    closed REAL);
CREATE TABLE IF NOT EXISTS managers (uid TEXT PRIMARY KEY, kind TEXT, created REAL,
                                     scheduler TEXT);
CREATE TABLE IF NOT EXISTS pilots (uid TEXT PRIMARY KEY, pmgr TEXT, description TEXT,
                                   job_id TEXT, sandbox TEXT, resources TEXT,
                                   seq INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS units (uid TEXT PRIMARY KEY, umgr TEXT, pilot TEXT,
                                  description TEXT, exit_code INTEGER, stdout TEXT,
                                  stderr TEXT, result BLOB, result_file TEXT,
                                  exception BLOB, traceback TEXT, function INTEGER,
                                  fn INTEGER, args BLOB);
CREATE TABLE IF NOT EXISTS functions (id INTEGER PRIMARY KEY, data BLOB);
CREATE TABLE IF NOT EXISTS bindings (seq INTEGER PRIMARY KEY, pilot TEXT, uids TEXT);
CREATE TABLE IF NOT EXISTS umgr_pilots (umgr TEXT, pilot TEXT, PRIMARY KEY (umgr, pilot));
CREATE TABLE IF NOT EXISTS transitions (seq INTEGER PRIMARY KEY, kind TEXT, entries TEXT);
CREATE TABLE IF NOT EXISTS metadata (seq INTEGER PRIMARY KEY, injected REAL, data TEXT);
"""

# seconds the writer waits for more after a first write arrives: a transaction costs
# far more than a row, and nothing waits for the disk (flush() does, and skips this)
_GATHER = 0.05

_INSERT_TRANSITIONS = "INSERT INTO transitions (kind, entries) VALUES (?, ?)"

# columns added since the first journals, for reading (reattaching to) older ones
_ADDED = {"session": ("closed REAL",), "managers": ("scheduler TEXT",),
          "pilots": ("resources TEXT", "seq INTEGER DEFAULT 0"),
          "units": ("result BLOB", "result_file TEXT", "exception BLOB", "traceback TEXT",
                    "function INTEGER", "fn INTEGER", "args BLOB")}


_repr = reprlib.Repr()
_repr.maxother = _repr.maxstring = 200


def _entries(rows: list[tuple]) -> list[list]:
    """``['S1,S2', 't1,t2', [uid, ...]]`` groups (one time when all the states share
    it) of ``(kind, uid, states, stamps)`` rows whose states and times may be lists:
    the objects that passed the same states at the same times share one group, in
    the order the first of each came (an object that comes again starts new groups,
    so that its own entries keep their order). A float's text is made once per
    call: the units of one report share their times, and mostly their states too."""
    texts: dict[float, str] = {}

    def text(t: float) -> str:
        out = texts.get(t)
        if out is None:
            out = texts[t] = repr(float(t))
        return out

    out: list[list] = []
    groups: dict[tuple, list] = {}
    seen: set = set()
    for _, uid, names, stamps in rows:
        one = type(uid) is not list      # a list: objects that took these steps alike
        if (uid in seen) if one else not seen.isdisjoint(uid):
            out.extend(groups.values())
            groups, seen = {}, set()
        if one:
            seen.add(uid)
        else:
            seen.update(uid)
        key = (names if type(names) is str else tuple(names),
               tuple(stamps) if type(stamps) is list else stamps)
        group = groups.get(key)
        if group is None:
            if type(names) is not str:
                names = ",".join(names)
            t = type(stamps)
            if t is list:
                stamps = ",".join([text(x) for x in stamps])
            elif t is not str:
                stamps = text(stamps)
            group = groups[key] = [names, stamps, []]
        if one:
            group[2].append(uid)
        else:
            group[2] += uid
    out.extend(groups.values())
    return out


def stamps_of(names: str, stamps: str) -> list[float]:
    """The time of each state of a journal entry, as floats."""
    times = [float(t) for t in stamps.split(",")]
    return times * (names.count(",") + 1) if len(times) == 1 else times


def _batch_row(rows: list[tuple]) -> list[tuple[str, bytes]]:
    """One transitions row for the entries of one ``add_transitions`` call (one kind):
    their groups (:func:`_entries`) as JSON, compressed (zlib, fastest level). uids,
    state names and timestamps repeat from entry to entry, so a no-op unit's whole
    history takes ~25 bytes instead of ~600 as text."""
    text = json.dumps(_entries(rows), separators=(",", ":"))
    return [(rows[0][0], zlib.compress(text.encode(), 1))]


def entries_of(data: str | bytes) -> list:
    """The ``[uid, states, stamps]`` entries of one transitions row: compressed JSON
    of groups (``[states, stamps, [uid, ...]]``, as :func:`_entries` makes them) or
    of entries (bytes, as journals before groups held them), or JSON text of entries
    (journals before compression). An object appears at most once in a row."""
    if isinstance(data, bytes):
        data = zlib.decompress(data)
    out = []
    for item in json.loads(data):
        if type(item[2]) is list:
            names, stamps, uids = item
            out.extend([uid, names, stamps] for uid in uids)
        else:
            out.append(item)
    return out


_encoder = json.JSONEncoder(default=_repr.repr, sort_keys=True)   # made once: cheaper


def to_json(data: Any) -> str:
    """JSON text for a description; what JSON cannot hold is written as a short repr."""
    return _encoder.encode(data)


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})
_CALL_PARTS = ("function", "args", "kwargs")


def _exact(value: Any) -> bool:
    """Whether JSON gives ``value`` back as it is (no tuple, no object, str keys)."""
    t = type(value)
    if t in _JSON_SCALARS:
        return True
    if t is list:
        return all(map(_exact, value))
    if t is dict:
        return all(type(k) is str and _exact(v) for k, v in value.items())
    return False


def description_record(d: Any) -> tuple[str, bool]:
    """A unit description as journal JSON, and whether it can be rebuilt exactly
    from its journal row (then a DONE unit need not keep it in memory).

    The JSON holds the attributes that differ from their defaults (the rest is the
    schema's), but not a function and its arguments: the journal keeps those
    pickled beside it (the ``fn`` and ``args`` columns)."""
    data = d.non_defaults()
    for name in _CALL_PARTS:
        data.pop(name, None)
    if not data:
        return "{}", True      # the common case of function units: no encoder call
    return to_json(data), all(map(_exact, data.values()))


class Journal:
    """An SQLite journal at ``path``.

    :raises DatabaseError: the database cannot be created (the message names the path
        and the cause).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            # owner only: it holds units' environments (SQLite gives its -wal and -shm
            # files the database file's mode)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            os.chmod(self.path, 0o600)
            self._db = sqlite3.connect(self.path, check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            _add_columns(self._db)
            # a reopened journal (reattach) goes on after the ids it holds
            (last,) = self._db.execute("SELECT coalesce(max(id), 0) FROM functions").fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise DatabaseError(f"cannot create the session journal {self.path}: {exc}") from exc
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._functions: dict[bytes | str, int] = {}
        self._function_ids = itertools.count(last + 1)
        self._tickets = itertools.count(1)
        #: the highest ticket (:meth:`set_pilot_seq`) whose write is committed
        self.committed = 0
        self._hurry = threading.Event()    # a flush or close waits: stop gathering
        self._error: Exception | None = None
        self._closed = False
        # one read-only connection for the reads that come once per unit (a DONE
        # unit's description): opening one per read costs ~0.3 ms each
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._thread = threading.Thread(target=self._write_loop, name="rp-journal",
                                        daemon=True)
        self._thread.start()

    # producers --------------------------------------------------------------------

    def execute(self, sql: str, rows: list[tuple],
                prepare: Callable[[list], list[tuple]] | None = None) -> None:
        """Queue ``sql`` to be run once per row of ``rows`` (of ``prepare(rows)``,
        called on the writer thread, when given)."""
        if rows:
            self._queue.put((sql, rows, prepare, 0))

    def add_session(self, uid: str, created: float, cfg: dict) -> None:
        """Record the session."""
        self.execute("INSERT OR REPLACE INTO session (uid, created, cfg) VALUES (?, ?, ?)",
                     [(uid, created, to_json(cfg))])

    def add_metadata(self, injected: float, data: dict) -> None:
        """Record a dict of the user's metadata (``Session.inject_metadata``)."""
        self.execute("INSERT INTO metadata (injected, data) VALUES (?, ?)",
                     [(injected, to_json(data))])

    def metadata(self) -> list[dict]:
        """The metadata dicts recorded so far (after a flush), in the order given."""
        db = self.connect()
        try:
            return [json.loads(data) for (data,) in
                    db.execute("SELECT data FROM metadata ORDER BY seq")]
        finally:
            db.close()

    def connect(self) -> sqlite3.Connection:
        """A new read-only connection to the journal file (the caller closes it)."""
        return sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)

    def close_session(self, uid: str, closed: float) -> None:
        """Record that the session was closed."""
        self.execute("UPDATE session SET closed = ? WHERE uid = ?", [(closed, uid)])

    def add_manager(self, uid: str, kind: str, created: float,
                    scheduler: str | None = None) -> None:
        """Record a pilot or unit manager (``kind`` is 'pmgr' or 'umgr', a unit
        manager with the name of its ``scheduler``)."""
        self.execute("INSERT OR REPLACE INTO managers VALUES (?, ?, ?, ?)",
                     [(uid, kind, created, scheduler)])

    def add_pilots(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Record pilots as ``(uid, pmgr uid, description JSON)`` rows."""
        self.execute("INSERT INTO pilots (uid, pmgr, description) VALUES (?, ?, ?)",
                     list(rows))

    def set_pilot_job(self, uid: str, job_id: str, sandbox: str) -> None:
        """Record the provider's job id and the sandbox of a launched pilot."""
        self.execute("UPDATE pilots SET job_id = ?, sandbox = ? WHERE uid = ?",
                     [(job_id, sandbox, uid)])

    def add_umgr_pilots(self, umgr: str, pilots: list[str]) -> None:
        """Record that pilots were added to a unit manager."""
        self.execute("INSERT OR IGNORE INTO umgr_pilots VALUES (?, ?)",
                     [(umgr, p) for p in pilots])

    def remove_umgr_pilots(self, umgr: str, pilots: list[str]) -> None:
        """Record that pilots were removed from a unit manager."""
        self.execute("DELETE FROM umgr_pilots WHERE umgr = ? AND pilot = ?",
                     [(umgr, p) for p in pilots])

    def set_pilot_resources(self, uid: str, resources: str) -> None:
        """Record what a pilot's agent reported (its Hello), as JSON."""
        self.execute("UPDATE pilots SET resources = ? WHERE uid = ?", [(resources, uid)])

    def set_pilot_seq(self, uid: str, seq: int) -> int:
        """Record that the pilot's frames up to ``seq`` are applied; returns a ticket:
        when :attr:`committed` reaches it, every write queued before is committed."""
        ticket = next(self._tickets)
        self._queue.put(("UPDATE pilots SET seq = ? WHERE uid = ?", [(seq, uid)], None,
                         ticket))
        return ticket

    def add_units(self, rows: list[tuple]) -> None:
        """Record units as ``(uid, umgr uid, description JSON, function, fn, args)``
        rows: ``function`` is 1 for a function unit, else None; ``fn`` the id of its
        pickled function (:meth:`function_id`) and ``args`` its pickled arguments,
        when it has a ``function`` (both may be left out: None)."""
        if rows and len(rows[0]) == 4:
            rows = [(*row, None, None) for row in rows]
        self.execute("INSERT INTO units (uid, umgr, description, function, fn, args) "
                     "VALUES (?, ?, ?, ?, ?, ?)", rows)

    def function_id(self, data: bytes | str) -> int:
        """The id of a pickled function (or ``module:name`` text) in the journal's
        ``functions`` table, recorded on first sight: units made from one function
        share its row."""
        fid = self._functions.get(data)
        if fid is None:
            if len(self._functions) >= 4096:   # a new function per unit: bounded
                self._functions.clear()
            fid = self._functions[data] = next(self._function_ids)
            self.execute("INSERT INTO functions (id, data) VALUES (?, ?)",
                         [(fid, data)])
        return fid

    def unit_description(self, uid: str) -> tuple | None:
        """``(description JSON, pickled function, pickled arguments)`` of a unit as
        recorded (the last two None unless it has a ``function``), or None if the
        journal has no such unit. Waits for the writer first when the unit's row is
        not written yet."""
        for attempt in (0, 1):
            row = self._read_one("SELECT u.description, f.data, u.args FROM units u "
                                 "LEFT JOIN functions f ON f.id = u.fn WHERE u.uid = ?",
                                 (uid,))
            if row is not None or attempt or self._closed:
                return row
            self.flush()
        return None

    def _read_one(self, sql: str, args: tuple) -> tuple | None:
        """The first row of a query, through the journal's shared read-only connection
        while it is open (one at a time), or through a new one once it is closed."""
        with self._reader_lock:
            if not self._closed:
                if self._reader is None:
                    self._reader = sqlite3.connect(
                        f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                        check_same_thread=False, isolation_level=None)
                return self._reader.execute(sql, args).fetchone()
        db = self.connect()
        try:
            return db.execute(sql, args).fetchone()
        finally:
            db.close()

    def bind_units(self, pilot: str, uids: list[str]) -> None:
        """Record that units were bound to a pilot: one row per call, not an update
        per unit (a later row of a unit wins)."""
        self.execute("INSERT INTO bindings (pilot, uids) VALUES (?, ?)",
                     [(pilot, json.dumps(uids))])

    def bindings(self) -> dict[str, str]:
        """The pilot each bound unit was bound to last (after a flush)."""
        db = self.connect()
        try:
            out: dict[str, str] = {}
            for pilot, uids in db.execute("SELECT pilot, uids FROM bindings ORDER BY seq"):
                out.update(dict.fromkeys(json.loads(uids), pilot))
            return out
        finally:
            db.close()

    def set_unit_results(self, rows: list[tuple]) -> None:
        """Record ``(pilot, exit_code, stdout, stderr, result, result_file, exception,
        traceback, uid)`` rows of ended units (a function's return value or exception
        pickled, as its outcome holds them)."""
        self.execute("UPDATE units SET pilot = ?, exit_code = ?, stdout = ?, stderr = ?, "
                     "result = ?, result_file = ?, exception = ?, traceback = ? "
                     "WHERE uid = ?", rows)

    def add_transitions(self, rows: list[tuple]) -> None:
        """Record ``(kind, uid, states, stamps)`` entries, in the order given; ``uid``
        may be a list of the uids of objects that took the same steps.

        An entry holds the states one object passed in one step (a list, or text,
        comma-separated) and their timestamps (a list of floats, text likewise made of
        their ``repr``, or a single float or text when all the states share it). The
        lists must not change once given: they are made into text on the writer
        thread. The entries of one call, one batch of a manager's state
        changes, are one database row (JSON of groups: the objects that passed the
        same states at the same times share one), which costs the writer a fraction
        of what a row (and an index entry) per entry did. An object's entries keep
        their order; those of different objects in one call may not.
        :meth:`transitions` reads them back one transition at a time.
        """
        self.execute(_INSERT_TRANSITIONS, rows, _batch_row)

    def flush(self, timeout: float | None = 30) -> None:
        """Wait until everything queued so far is written.

        :raises DatabaseError: a write failed, or did not finish within ``timeout``.
        """
        if self._closed:
            self._raise_pending()
            return
        done = threading.Event()
        self._queue.put(done)
        self._hurry.set()
        if not done.wait(timeout):
            raise DatabaseError(f"the journal {self.path} did not flush within {timeout} s")
        self._raise_pending()

    def close(self) -> None:
        """Flush and close the database; idempotent."""
        if self._closed:
            return
        self._queue.put(None)
        self._hurry.set()
        self._thread.join()
        with self._reader_lock:
            self._closed = True
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        self._db.close()
        self._raise_pending()

    # readers ----------------------------------------------------------------------

    def transitions(self, uid: str | None = None) -> list[tuple[str, str, str, float]]:
        """Every ``(kind, uid, state, timestamp)`` written so far (after a flush), in
        the order the transitions happened; only those of ``uid`` if given."""
        db = self.connect()
        try:
            out = []
            for kind, entries in db.execute("SELECT kind, entries FROM transitions "
                                            "ORDER BY seq"):
                for who, states, stamps in entries_of(entries):
                    if uid is not None and who != uid:
                        continue
                    out.extend((kind, who, state, ts) for state, ts in
                               zip(states.split(","), stamps_of(states, stamps)))
            return out
        finally:
            db.close()

    # the writer thread ------------------------------------------------------------

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise DatabaseError(f"writing the session journal {self.path} failed: {error}") \
                from error

    def _write_loop(self) -> None:
        stop = False
        while not stop:
            batch = [self._queue.get()]
            if not isinstance(batch[0], threading.Event) and batch[0] is not None:
                # a transaction costs far more than a row: let a trickle of small
                # writes (one unit at a time, as Parsl submits) gather for a moment
                self._hurry.wait(_GATHER)
                self._hurry.clear()
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            # flushes and the stop are taken first: a failed write must not lose them
            events = [item for item in batch if isinstance(item, threading.Event)]
            stop = any(item is None for item in batch)
            writes = [item for item in batch
                      if item is not None and not isinstance(item, threading.Event)]
            if writes and not self._commit(writes):
                # one bad write must not cost the others theirs: each on its own
                for item in writes:
                    self._commit([item])
            for event in events:
                event.set()
            # what was written is not kept while the writer waits for more: a batch
            # after a backlog may hold the rows of a hundred thousand units
            batch = writes = events = []

    def _commit(self, writes: list) -> bool:
        """Run ``writes`` in one transaction; False (and the error kept for the next
        flush) if it failed and was rolled back."""
        try:
            self._db.execute("BEGIN")
            for sql, rows, prepare, _ in writes:
                self._db.executemany(sql, rows if prepare is None else prepare(rows))
            self._db.execute("COMMIT")
            self.committed = max(self.committed, max(write[3] for write in writes))
            return True
        except sqlite3.Error as exc:
            log.error("journal write to %s failed: %s", self.path, exc)
            self._error = exc
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                log.debug("rollback after a failed journal write failed too")
            return False


def _add_columns(db: sqlite3.Connection) -> None:
    """Add the columns of :data:`_ADDED` that a journal of an older version lacks."""
    for table, columns in _ADDED.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for column in columns:
            if column.split()[0] not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
