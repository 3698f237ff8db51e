"""A read-only model of one session, read from its journal.

:func:`load` opens a session directory (closed, or open in another process) and reads
its journal through a read-only SQLite connection: SQLite's WAL lets it read beside
the session's writer without blocking it, and it never writes. Each read is one
transaction, so what it sees is one consistent moment of the journal.
:meth:`SessionModel.refresh` reads only what was added since (``watch`` calls it
every second).

Pilots are few and kept as records with their whole history. Units may be a million:
they are kept as columns (``array`` of C doubles and ints), one slot per unit, and the
transitions table is streamed into them row by row; a unit costs about 150 bytes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from rp_executor import states
from rp_executor._core import sessiondir
from rp_executor._core.journal import entries_of, stamps_of

log = logging.getLogger(__name__)

NAN = math.nan

UNIT_STATES = states.UNIT_STATES
"""The unit states in their order; a unit's state is kept as its index here."""
CODE = {s: i for i, s in enumerate(UNIT_STATES)}
"""The index of each unit state in :data:`UNIT_STATES`."""
FINAL_CODES = frozenset(CODE[s] for s in states.FINAL)
"""The codes of the final states."""
TIMED = len(UNIT_STATES) - len(states.FINAL) + 1
"""How many time columns a unit has: one per state before the final ones, and one for
whichever final state it reached (its state code says which)."""
FINAL_COLUMN = TIMED - 1
"""The time column of the final state."""
STATE_COLUMNS = tuple(UNIT_STATES[:FINAL_COLUMN]) + ("FINAL",)
"""The names of the time columns."""


def column_of(code: int) -> int:
    """The time column of a state code."""
    return code if code < FINAL_COLUMN else FINAL_COLUMN


class SessionNotFound(LookupError):
    """No session directory (one with a journal) answers to the name given."""


@dataclass
class PilotInfo:
    """A pilot as the journal has it.

    :ivar uid: the pilot's uid.
    :ivar pmgr: its pilot manager's uid.
    :ivar state: its current state.
    :ivar history: ``[(state, time), ...]`` in order.
    :ivar description: the attributes of its description that differ from the
        defaults (as journaled).
    :ivar resources: what its agent reported when it started (cores, gpus, nodes,
        hostname, pid, sandbox); {} before that.
    :ivar job_id: the provider's job id, once launched.
    :ivar sandbox: the pilot sandbox, once launched.
    """

    uid: str
    pmgr: str
    state: str = states.NEW
    history: list[tuple[str, float]] = field(default_factory=list)
    description: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)
    job_id: str | None = None
    sandbox: str | None = None

    @property
    def cores(self) -> int:
        """The cores it holds: as its agent reported them, else as described."""
        return int(self.resources.get("cores") or self.description.get("cores") or 0)

    @property
    def gpus(self) -> int:
        """The GPUs it holds: as its agent reported them, else as described."""
        return int(self.resources.get("gpus") or self.description.get("gpus") or 0)

    @property
    def resource(self) -> str:
        """The resource label of its description."""
        return str(self.description.get("resource") or "")

    def time_of(self, state: str) -> float | None:
        """When it reached ``state`` (None: it did not)."""
        for name, ts in self.history:
            if name == state:
                return ts
        return None

    @property
    def ended(self) -> float | None:
        """When it reached its final state (None: it has not)."""
        if self.history and self.state in states.FINAL_STATES:
            return self.history[-1][1]
        return None


@dataclass
class SessionSummary:
    """One line of ``rp-executor list``: a session directory at a glance.

    :ivar uid: the session's uid.
    :ivar path: its directory.
    :ivar created: when it was created (seconds since the epoch).
    :ivar status: 'closed', 'open' (its client runs) or 'client gone' (its client
        ended without closing it).
    :ivar pilots: its pilots' uids and states.
    :ivar units: how many units are in each state (states with none left out).
    """

    uid: str
    path: Path
    created: float | None
    status: str
    pilots: dict[str, str]
    units: dict[str, int]


class SessionModel:
    """A session read from its journal: its pilots (:attr:`pilots`) and the state
    histories of its units, kept as columns.

    Made by :func:`load`; :meth:`refresh` reads what the journal gained since.

    :ivar path: the session directory.
    :ivar uid: the session's uid.
    :ivar created: when it was created.
    :ivar closed: when it was closed (None: it is not).
    :ivar cfg: its settings.
    :ivar managers: ``{uid: kind}`` of its pilot ('pmgr') and unit ('umgr') managers.
    :ivar pilots: ``{uid: PilotInfo}`` in the order they were submitted.
    :ivar read_at: when the journal was last read.
    :ivar uids: the units' uids, in the order they were submitted.
    :ivar times: one column (``array('d')``) per entry of :data:`STATE_COLUMNS`; the
        time a unit reached that state (NaN: it did not).
    :ivar codes: each unit's current state, as its index in :data:`UNIT_STATES`.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path).resolve()
        self.journal = self.path / sessiondir.JOURNAL
        self.uid = self.path.name
        self.created: float | None = None
        self.closed: float | None = None
        self.cfg: dict = {}
        self.managers: dict[str, str] = {}
        self.pilots: dict[str, PilotInfo] = {}
        self.read_at = 0.0
        # units, as columns
        self.uids: list[str] = []
        self.index: dict[str, int] = {}
        self.umgr_index: array = array("i")     # index into umgr_names
        self.umgr_names: list[str] = []
        self.pilot_index: array = array("i")    # index into pilot_names, -1: none
        self.pilot_names: list[str] = []
        self.cores: array = array("i")
        self.gpus: array = array("i")
        self.exit_codes: list[int | None] = []
        self.codes: array = array("b")
        self.times: list[array] = [array("d") for _ in range(TIMED)]
        self._last_rowid = 0        # units read up to this rowid
        self._last_seq = 0          # transitions read up to this seq
        self._last_binding = 0      # bindings read up to this seq
        self._recheck: list[int] = []   # units whose pilot or exit code may be late
        self._decoded: dict[str, tuple[tuple[array, ...], int]] = {}
        self._defaults: tuple[int, int, int] | None = None

    # reading ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if not self.journal.is_file():
            raise SessionNotFound(f"{self.path} holds no journal ({sessiondir.JOURNAL})")
        return open_journal(self.journal)

    def refresh(self) -> bool:
        """Read what the journal gained since the last read; returns whether there
        was anything new. One read transaction: a consistent moment of the journal.

        :raises sqlite3.Error: the journal cannot be read.
        """
        db = self._connect()
        try:
            db.execute("BEGIN")
            changed = self._read_session(db)
            changed |= self._read_pilots(db)
            new_units = self._read_units(db)
            bound = self._read_bindings(db)
            self._read_unit_details(db, self._recheck)
            touched = self._read_transitions(db)
            # a unit's results are journaled just after its final state: one that
            # ended without them yet is read again next time
            exits, codes = self.exit_codes, self.codes
            self._recheck = [i for i in touched if codes[i] in FINAL_CODES
                             and exits[i] is None] if self.closed is None else []
            db.execute("COMMIT")
        finally:
            db.close()
        self.read_at = time.time()
        return changed or bool(new_units) or bool(touched) or bound

    def _read_session(self, db: sqlite3.Connection) -> bool:
        row = db.execute("SELECT uid, created, cfg, closed FROM session").fetchone()
        before = (self.created, self.closed)
        if row:
            self.uid, self.created, cfg, self.closed = row
            if not self.cfg and cfg:
                self.cfg = json.loads(cfg)
        for uid, kind in db.execute("SELECT uid, kind FROM managers ORDER BY created"):
            self.managers[uid] = kind
        return before != (self.created, self.closed)

    def _read_pilots(self, db: sqlite3.Connection) -> bool:
        changed = False
        for uid, pmgr, desc, job_id, sandbox, resources in db.execute(
                "SELECT uid, pmgr, description, job_id, sandbox, resources FROM pilots "
                "ORDER BY rowid"):
            pilot = self.pilots.get(uid)
            if pilot is None:
                pilot = self.pilots[uid] = PilotInfo(uid, pmgr, description=_load(desc))
                changed = True
            if (job_id, sandbox) != (pilot.job_id, pilot.sandbox) or \
                    (resources and not pilot.resources):
                pilot.job_id, pilot.sandbox = job_id, sandbox
                pilot.resources = _load(resources)
                changed = True
        return changed

    def _unit_defaults(self) -> tuple[int, int, int]:
        if self._defaults is None:
            from rp_executor.description import ComputeUnitDescription
            d = ComputeUnitDescription()
            self._defaults = (d.cpu_processes, d.cpu_threads, d.gpu_processes)
        return self._defaults

    def _read_units(self, db: sqlite3.Connection) -> int:
        """Append the units added since the last read; returns how many."""
        # most descriptions keep the defaults: only those that may not are fetched
        cursor = db.execute(
            "SELECT rowid, uid, umgr, pilot, exit_code, CASE WHEN instr(description, "
            "'\"cpu_') OR instr(description, '\"gpu_') THEN description END "
            "FROM units WHERE rowid > ? ORDER BY rowid", (self._last_rowid,))
        before = len(self.uids)
        while True:
            rows = cursor.fetchmany(1 << 16)
            if not rows:
                break
            self._add_units(rows)
        return len(self.uids) - before

    def _add_units(self, rows: list[tuple]) -> None:
        procs, threads, gpu_procs = self._unit_defaults()
        self._last_rowid = rows[-1][0]
        start = len(self.uids)
        uids = [row[1] for row in rows]
        self.uids.extend(uids)
        self.index.update(zip(uids, range(start, start + len(uids))))
        umgrs = {name: i for i, name in enumerate(self.umgr_names)}
        for row in rows:
            if row[2] not in umgrs:
                umgrs[row[2]] = len(self.umgr_names)
                self.umgr_names.append(row[2])
        self.umgr_index.extend(array("i", [umgrs[row[2]] for row in rows]))
        pilots = {name: i for i, name in enumerate(self.pilot_names)}
        self.pilot_index.extend(array("i", [self._pilot_code(row[3], pilots)
                                            for row in rows]))
        self.exit_codes.extend([row[4] for row in rows])
        cores = array("i", [procs * threads]) * len(rows)
        gpus = array("i", [gpu_procs]) * len(rows)
        for k, row in enumerate(rows):
            if row[5] is not None:
                d = _load(row[5])
                cores[k] = int(d.get("cpu_processes", procs)) * \
                    int(d.get("cpu_threads", threads))
                gpus[k] = int(d.get("gpu_processes", gpu_procs))
        self.cores.extend(cores)
        self.gpus.extend(gpus)
        self.codes.extend(array("b", [-1]) * len(rows))
        nans = array("d", [NAN]) * len(rows)
        for column in self.times:
            column.extend(nans)

    def _pilot_code(self, pilot: str | None, pilots: dict[str, int]) -> int:
        if pilot is None:
            return -1
        p = pilots.get(pilot)
        if p is None:
            p = pilots[pilot] = len(self.pilot_names)
            self.pilot_names.append(pilot)
        return p

    def _read_transitions(self, db: sqlite3.Connection) -> list[int]:
        """Apply the transitions added since the last read; returns the indices of
        the units that changed."""
        touched: list[int] = []
        loads = entries_of
        for seq, kind, entries in db.execute(
                "SELECT seq, kind, entries FROM transitions WHERE seq > ? ORDER BY seq",
                (self._last_seq,)):
            self._last_seq = seq
            if kind == "unit":
                self._apply_units(loads(entries), touched)
            else:
                for uid, names, stamps in loads(entries):
                    pilot = self.pilots.get(uid)
                    if pilot is None:
                        continue
                    for state, ts in zip(names.split(","), stamps_of(names, stamps)):
                        pilot.history.append((state, ts))
                        pilot.state = state
        return touched

    def _apply_units(self, entries: list, touched: list[int]) -> None:
        # the hot loop of a load: about 1.5 us an entry here
        index, decoded, codes = self.index, self._decoded, self.codes
        touch = touched.append
        for uid, names, stamps in entries:
            try:
                i = index[uid]
                columns, codes[i] = decoded[names]
            except KeyError:
                if uid not in index:
                    log.debug("%s: transition of unknown unit %s", self.uid, uid)
                    continue
                i = index[uid]
                columns, codes[i] = self._decode(names)
            if "," in stamps:
                for column, ts in zip(columns, stamps.split(",")):
                    column[i] = float(ts)
            else:               # one time for all the states
                ts = float(stamps)
                for column in columns:
                    column[i] = ts
            touch(i)

    def _decode(self, names: str) -> tuple[tuple[array, ...], int]:
        """The time columns of the comma-separated states ``names``, and the code of
        the last; kept, as the same few combinations come again and again."""
        codes = [CODE[s] for s in names.split(",")]
        known = self._decoded[names] = (tuple(self.times[column_of(c)] for c in codes),
                                        codes[-1])
        return known

    def _read_bindings(self, db: sqlite3.Connection) -> bool:
        """Take the pilots units were bound to (the journal's bindings rows, one per
        bound batch; a later row of a unit wins) since the last read."""
        pilots = {name: i for i, name in enumerate(self.pilot_names)}
        index, changed = self.index, False
        for seq, pilot, uids in db.execute("SELECT seq, pilot, uids FROM bindings "
                                           "WHERE seq > ? ORDER BY seq",
                                           (self._last_binding,)):
            self._last_binding = seq
            code = self._pilot_code(pilot, pilots)
            for uid in json.loads(uids):
                i = index.get(uid)
                if i is not None:
                    self.pilot_index[i] = code
                    changed = True
        return changed

    def _read_unit_details(self, db: sqlite3.Connection, indices: list[int]) -> None:
        """Read again the pilot and exit code of these units (set after their rows
        were added: when bound, when ended)."""
        if not indices:
            return
        pilots = {name: i for i, name in enumerate(self.pilot_names)}
        index = self.index
        for lo, hi in _runs(indices, gap=64):
            for uid, pilot, exit_code in db.execute(
                    "SELECT uid, pilot, exit_code FROM units WHERE uid IN "
                    f"({','.join('?' * (hi - lo + 1))})", self.uids[lo:hi + 1]):
                i = index[uid]
                if pilot is not None:
                    self.pilot_index[i] = self._pilot_code(pilot, pilots)
                self.exit_codes[i] = exit_code

    # what it holds ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.uids)

    @property
    def end(self) -> float:
        """Where the session's time ends: when it closed, else when it was read."""
        return self.closed if self.closed is not None else self.read_at

    @property
    def client(self) -> dict:
        """What the session's client recorded (pid, started, host, endpoint)."""
        return sessiondir.read_client(self.path)

    @property
    def status(self) -> str:
        """'closed', 'open' (its client runs) or 'client gone' (it ended unclosed)."""
        if self.closed is not None:
            return "closed"
        return "open" if sessiondir.client_running(self.client) else "client gone"

    def state_counts(self) -> dict[str, int]:
        """How many units are in each state now, every state listed, in order."""
        data = self.codes.tobytes()
        counts = [data.count(code) for code in range(len(UNIT_STATES))]
        counts[0] += data.count(255)     # no transition read yet: NEW (code -1)
        return dict(zip(UNIT_STATES, counts))

    def state_of(self, i: int) -> str:
        """The current state of unit ``i``."""
        code = self.codes[i]
        return UNIT_STATES[code if code >= 0 else 0]

    def pilot_of(self, i: int) -> str | None:
        """The uid of the pilot unit ``i`` was bound to (None: not bound)."""
        p = self.pilot_index[i]
        return self.pilot_names[p] if p >= 0 else None

    def umgr_of(self, i: int) -> str:
        """The uid of the unit manager of unit ``i``."""
        return self.umgr_names[self.umgr_index[i]]

    def history(self, i: int) -> list[tuple[str, float]]:
        """Unit ``i``'s ``[(state, time), ...]``, in order."""
        out = []
        for column, name in enumerate(STATE_COLUMNS):
            ts = self.times[column][i]
            if ts == ts:
                out.append((name if column < FINAL_COLUMN else self.state_of(i), ts))
        return out

    def unit_rows(self, columns: tuple[str, ...] = ("stderr",), where: str = "",
                  params: tuple = ()) -> Iterator[tuple]:
        """``(uid, *columns)`` rows of the journal's units table, streamed (for what
        the model does not keep: stdout, stderr, description...); ``where`` is an SQL
        condition on it."""
        db = self._connect()
        try:
            yield from db.execute(f"SELECT uid, {', '.join(columns)} FROM units "
                                  f"{'WHERE ' + where if where else ''} ORDER BY rowid",
                                  params)
        finally:
            db.close()


def open_journal(path: Path) -> sqlite3.Connection:
    """A read-only connection to the journal at ``path`` (autocommit: the caller
    begins and ends its read transactions; the caller closes it).

    While the journal's writer runs (its ``-wal`` file exists, or a writer died and
    left one) the connection reads beside it through SQLite's WAL index; a closed
    journal, which has no ``-wal`` file, is opened as immutable, so that reading it
    creates no ``-wal`` and ``-shm`` files in the session directory.
    """
    wal = path.with_name(path.name + "-wal")
    options = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    return sqlite3.connect(f"{Path(path).resolve().as_uri()}?{options}", uri=True,
                           isolation_level=None)


def _load(text: str | None) -> dict:
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _runs(indices: list[int], gap: int) -> Iterator[tuple[int, int]]:
    """Sorted ``indices`` as ``(first, last)`` runs of at most ``gap`` elements."""
    start = 0
    while start < len(indices):
        lo = indices[start]
        stop = start
        while stop + 1 < len(indices) and indices[stop + 1] - lo < gap:
            stop += 1
        yield lo, indices[stop]
        start = stop + 1


# finding sessions ---------------------------------------------------------------------

def find_session(sid: str | os.PathLike, base: str | os.PathLike | None = None) -> Path:
    """The directory of session ``sid`` (an absolute path): a session uid under
    ``base`` (default: the working directory), or the path of a session directory.

    :raises SessionNotFound: neither holds a journal (the message lists the sessions
        found under ``base``).
    """
    where = Path(base) if base is not None else Path.cwd()
    path = Path(sid)
    if (path / sessiondir.JOURNAL).is_file():
        return path.resolve()
    found = sessiondir.find(sid, where)
    if found is not None:
        return found.resolve()
    known = [p.name for p in session_dirs(where)]
    raise SessionNotFound(
        f"no session {str(sid)!r}: neither {where / sid} nor {path} holds a journal "
        f"({sessiondir.JOURNAL}); sessions under {where}: "
        f"{', '.join(known) if known else 'none'}")


def session_dirs(base: str | os.PathLike) -> list[Path]:
    """The session directories right under ``base`` (those holding a journal), by
    name; ``base`` itself if it is one."""
    base = Path(base)
    if (base / sessiondir.JOURNAL).is_file():
        return [base]
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return []
    return [p for p in entries if (p / sessiondir.JOURNAL).is_file()]


def load(sid: str | os.PathLike, base: str | os.PathLike | None = None) -> SessionModel:
    """Read session ``sid`` (a uid under ``base``, default the working directory, or
    a session directory) from its journal; the session may be closed or running.

    :raises SessionNotFound: there is no such session.
    :raises sqlite3.Error: its journal cannot be read.
    """
    model = SessionModel(find_session(sid, base))
    model.refresh()
    return model


def summarize(path: str | os.PathLike) -> SessionSummary:
    """A :class:`SessionSummary` of the session directory ``path``."""
    model = load(path)
    counts = {state: n for state, n in model.state_counts().items() if n}
    return SessionSummary(model.uid, model.path, model.created, model.status,
                          {uid: p.state for uid, p in model.pilots.items()}, counts)
