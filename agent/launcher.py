"""The launcher: a child process of the agent that starts and reaps executable units.

``python -m rp_executor.agent.launcher <pilot sandbox> <kill grace>`` reads
:class:`Run`, :class:`Signal` and :class:`Withdraw` requests from its stdin and
writes an :class:`Ended` record for every unit (a :class:`Withdrawn` one for a unit
given back unstarted) to its stdout, as frames (:func:`frame`).
The agent keeps one launcher per core of its node (:mod:`.executing`), so that
the units' starts (the ``vfork``/``exec`` the parent waits for), their sandboxes
and output files and the reading of their output run beside the agent's loop,
on every core, instead of inside it.

A :class:`Run` may name a ``lane`` (one core of a short unit): the launcher runs
one unit per lane at a time and starts the lane's next request the moment the
unit before it is reaped, without waiting for the agent (which queues short units
so, :mod:`.queueing`).  The agent keeps the same line, so both know which unit
follows which; it may take a waiting unit back (:class:`Withdraw`) when the unit
before it runs long while another core is free.

Each unit is spawned (``posix_spawn``: ``vfork`` and ``exec``) into its own
session and process group, with its stdin on ``/dev/null`` and its stdout and
stderr in its sandbox.  When the launcher's stdin ends (the agent closed it or
died) or it gets SIGTERM, it ends every unit's process group (SIGTERM, SIGKILL
after the grace) and exits: no unit outlives its launcher.

Standard library only (and :mod:`.output`): it starts in a few milliseconds.
"""

from __future__ import annotations

import collections
import errno
import logging
import marshal
import os
import select
import signal
import stat
import struct
import sys
import time
from typing import NamedTuple

from .output import tail

logger = logging.getLogger(__name__)

__all__ = ["Run", "Signal", "Withdraw", "Ended", "Withdrawn", "frame", "FrameReader",
           "make_sandbox", "main"]

_HEADER = struct.Struct("<I")
# signals a unit must not inherit as ignored (Python ignores SIGPIPE and SIGXFSZ;
# the launcher ignores SIGINT); handled ones go back to the default with exec anyway
_DEFAULT_SIGNALS = tuple(s for s in (signal.SIGPIPE, getattr(signal, "SIGXFSZ", None),
                                     signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)
                         if s is not None)
_OUTPUT_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


class Run(NamedTuple):
    """Start a unit: ``argv`` in ``sandbox`` (created when missing), stdout and
    stderr into the files ``out`` and ``err``, the launcher's environment updated
    with ``env``; ``script``, when given, is written to ``<sandbox>/<uid>.sh`` first.

    With a ``lane``, the unit starts once the units sent before it in the same lane
    ended (at once when none runs there); without, at once."""

    uid: str
    argv: list
    sandbox: str
    out: str
    err: str
    env: dict
    script: str | None
    lane: str | None = None


class Signal(NamedTuple):
    """Send ``signum`` to the process group of unit ``uid`` if it still runs; the
    unit then ends ``canceled``.  A unit that waits in its lane is taken out of it
    and ends ``canceled`` (exit code ``-signum``) without running."""

    uid: str
    signum: int


class Withdraw(NamedTuple):
    """Take unit ``uid`` out of its lane if it still waits there, unstarted, and
    report it :class:`Withdrawn`; one that started or ended is left as it is."""

    uid: str


class Withdrawn(NamedTuple):
    """A unit taken out of its lane (:class:`Withdraw`): it never started."""

    uid: str


class Ended(NamedTuple):
    """A unit that ended, or never started (then ``stderr`` says why).

    ``exit_code`` is negative for a signal, 127 for an executable not found, 126
    for one that cannot be executed, 1 for another failure to start; ``stdout`` and
    ``stderr`` are the tails of the output files (:func:`.output.tail`);
    ``started``/``stopped`` are ``time.time()`` stamps.
    """

    uid: str
    exit_code: int
    stdout: str
    stderr: str
    canceled: bool
    started: float
    stopped: float


def frame(records: list) -> bytes:
    """One frame: a length, then a list of records (as plain tuples) in marshal."""
    data = marshal.dumps([tuple(r) for r in records])
    return _HEADER.pack(len(data)) + data


class FrameReader:
    """Splits the bytes read from a pipe into frames' record lists."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[tuple]:
        """The records of every frame completed by ``data``, in order."""
        buf = self._buf + data if self._buf else data
        records: list[tuple] = []
        at, end = 0, len(buf)
        while end - at >= 4:
            (size,) = _HEADER.unpack_from(buf, at)
            if end - at - 4 < size:
                break
            records += marshal.loads(buf[at + 4:at + 4 + size])
            at += 4 + size
        self._buf = buf[at:]
        return records


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the blocking ``fd`` (a signal may cut a write short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Unit:
    __slots__ = ("uid", "out", "err", "started", "canceled", "lane")

    def __init__(self, uid: str, out: str, err: str, started: float,
                 lane: str | None) -> None:
        self.uid = uid
        self.out = out
        self.err = err
        self.started = started
        self.canceled = False
        self.lane = lane


class Launcher:
    """The launcher's state: its units by pid, and what it owes the agent."""

    def __init__(self, kill_grace: float) -> None:
        self.kill_grace = kill_grace
        self.env = dict(os.environ)
        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.units: dict[int, _Unit] = {}    # by pid
        self.pids: dict[str, int] = {}       # by uid
        self.ended: list[Ended | Withdrawn] = []   # the reports, in order
        # the lanes that run a unit, with the requests that wait there; the lane of
        # each waiting unit
        self.lanes: dict[str, collections.deque[Run]] = {}
        self.queued: dict[str, str] = {}

    # -- requests ---------------------------------------------------------------------

    def handle(self, request: tuple) -> None:
        """Carry out one request (a :class:`Run`, :class:`Signal` or :class:`Withdraw`
        as a tuple)."""
        if len(request) == 2:
            self.signal(*request)
            return
        if len(request) == 1:
            self.withdraw(request[0])
            return
        req = Run._make(request)
        lane = req.lane
        if lane is None:
            self.run(req)
        elif lane in self.lanes:
            self.lanes[lane].append(req)
            self.queued[req.uid] = lane
        else:
            self.lanes[lane] = collections.deque()
            self._next_in(lane, req)

    def _next_in(self, lane: str, req: Run | None) -> None:
        """Start ``req`` in ``lane``, or the lane's next request when it is None; on
        to the one after while they fail to start; the lane ends when none is left."""
        line = self.lanes[lane]
        while True:
            if req is None:
                if not line:
                    del self.lanes[lane]
                    return
                req = line.popleft()
                del self.queued[req.uid]
            if self.run(req):
                return
            req = None

    def run(self, req: Run) -> bool:
        """Start a unit (whatever its lane); a failure to start becomes its
        :class:`Ended` at once.  Whether it started."""
        started = time.time()
        try:
            make_sandbox(req.sandbox)
        except OSError as exc:
            self._failed(req, 1, f"rp_executor: cannot create unit sandbox '{req.sandbox}': "
                                 f"{exc.strerror or exc}", started, write=False)
            return False
        try:
            if req.script is not None:
                with open(f"{req.sandbox}/{req.uid}.sh", "w") as f:
                    f.write(req.script)
            fout = os.open(req.out, _OUTPUT_FLAGS, 0o666)
            try:
                ferr = os.open(req.err, _OUTPUT_FLAGS, 0o666)
            except OSError:
                os.close(fout)
                raise
        except OSError as exc:
            self._failed(req, 1, f"rp_executor: cannot open unit output file: {exc}",
                         started, write=False)
            return False
        argv = req.argv
        try:
            env = self.env
            if req.env:
                env = {**env, **req.env}
            os.chdir(req.sandbox)
            pid = os.posix_spawn(
                _executable(argv[0], env), argv, env,
                file_actions=[(os.POSIX_SPAWN_DUP2, self.devnull, 0),
                              (os.POSIX_SPAWN_DUP2, fout, 1),
                              (os.POSIX_SPAWN_DUP2, ferr, 2)],
                setsid=True, setsigdef=_DEFAULT_SIGNALS)
        except OSError as exc:
            code = 127 if exc.errno in (errno.ENOENT, errno.ENOTDIR) else 126
            reason = exc.strerror or str(exc)
            self._failed(req, code, f"rp_executor: cannot execute '{argv[0]}': {reason}",
                         started)
            return False
        except (ValueError, TypeError) as exc:   # a NUL byte or an '=' in a name
            self._failed(req, 1, f"rp_executor: invalid unit description: {exc}", started)
            return False
        finally:
            os.close(fout)
            os.close(ferr)
        self.units[pid] = _Unit(req.uid, req.out, req.err, started, req.lane)
        self.pids[req.uid] = pid
        return True

    def _failed(self, req: Run, code: int, msg: str, started: float,
                write: bool = True) -> None:
        if write:   # the reason goes into the unit's stderr file, as its output would
            try:
                with open(req.err, "a", encoding="utf-8") as f:
                    f.write(msg + "\n")
            except OSError as exc:
                logger.warning("unit %s: cannot write %s: %s", req.uid, req.err, exc)
        stdout = tail(req.out, "stdout") if write else ""
        self.ended.append(Ended(req.uid, code, stdout, msg + "\n", False, started,
                                time.time()))

    def signal(self, uid: str, signum: int) -> None:
        """Signal a running unit's process group; one that ended is left as it ended,
        one that waits in its lane ends canceled without running."""
        self.reap()
        pid = self.pids.get(uid)
        if pid is None:
            if self._unqueue(uid):
                now = time.time()
                self.ended.append(Ended(uid, -signum, "", "", True, now, now))
            return
        self.units[pid].canceled = True
        _killpg(pid, signum)

    def withdraw(self, uid: str) -> None:
        """Give back a unit that waits in its lane (one that ended meanwhile is reaped
        first, so the unit behind it may have started: then it stays)."""
        self.reap()
        if self._unqueue(uid):
            self.ended.append(Withdrawn(uid))

    def _unqueue(self, uid: str) -> bool:
        """Take ``uid`` out of its lane's line; whether it waited there."""
        lane = self.queued.pop(uid, None)
        if lane is None:
            return False
        line = self.lanes[lane]
        line.remove(next(r for r in line if r.uid == uid))
        return True

    # -- ends -------------------------------------------------------------------------

    def reap(self) -> None:
        """Collect every unit that ended, without blocking."""
        while self.units:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._collect(pid, status)

    def _collect(self, pid: int, status: int) -> None:
        unit = self.units.pop(pid, None)
        if unit is None:
            return
        del self.pids[unit.uid]
        rc = os.waitstatus_to_exitcode(status)
        if unit.canceled or rc < 0:
            # the group can outlive its leader (background children, the command of a
            # shell killed in pre_exec): a canceled unit's does not, nor does one whose
            # leader a signal killed (the OOM killer, a user's kill)
            _killpg(pid, signal.SIGKILL)
        self.ended.append(Ended(unit.uid, rc, tail(unit.out, "stdout"),
                                tail(unit.err, "stderr"), unit.canceled, unit.started,
                                time.time()))
        if unit.lane in self.lanes:   # gone once end_all cleared them
            self._next_in(unit.lane, None)

    def end_all(self) -> None:
        """End every unit's process group (SIGTERM, SIGKILL after the grace) and
        collect them all; the units that wait in lanes end FAILED without running."""
        now = time.time()
        for uid in self.queued:
            self.ended.append(Ended(uid, 1, "", "rp_executor: the launcher ended before "
                                    "the unit started\n", False, now, now))
        self.queued.clear()
        self.lanes.clear()
        for pid in self.units:
            _killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.kill_grace
        while self.units and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.01)
        for pid in self.units:
            _killpg(pid, signal.SIGKILL)
        for pid in list(self.units):
            try:
                self._collect(*os.waitpid(pid, 0))
            except ChildProcessError:   # reaped already: its status is lost
                unit = self.units.pop(pid)
                del self.pids[unit.uid]


def make_sandbox(path: str) -> None:
    """Create a unit sandbox; one mkdir when the pilot sandbox is there."""
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)


def _executable(name: str, env: dict) -> str:
    """The file to exec for ``name``: itself when it holds a ``/``, else the first
    executable file of that name on the unit's ``PATH`` (as ``execvpe`` finds it).

    :raises FileNotFoundError: none there; :raises PermissionError: only files that
        cannot be executed.
    """
    if "/" in name:
        return name
    denied = None
    for folder in os.get_exec_path(env):
        path = os.path.join(folder, name)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(path, os.X_OK):
            return path
        denied = path
    if denied is not None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), denied)
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # the group is already gone
    except PermissionError as exc:
        logger.warning("cannot signal process group %d: %s", pgid, exc)


def serve(launcher: Launcher, requests: int = 0, reports: int = 1) -> None:
    """The launcher's loop: requests from ``requests``, reports to ``reports``,
    until ``requests`` ends or SIGTERM comes; then every unit is ended."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    stop = []
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # a terminal's ^C is the agent's
    poller = select.poll()
    poller.register(requests, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    reader = FrameReader()
    try:
        while not stop:
            woken = False
            for fd, _ in poller.poll():
                if fd == wake_r:
                    # a signal came (SIGCHLD: a unit ended); one read empties the pipe
                    # unless thousands came
                    try:
                        os.read(wake_r, 4096)
                    except BlockingIOError:
                        pass
                    woken = True
                    continue
                data = os.read(requests, 1 << 16)
                if not data:
                    return   # the agent closed the pipe or died
                for request in reader.feed(data):
                    launcher.handle(request)
            if woken:
                launcher.reap()
            if launcher.ended:
                ended, launcher.ended = launcher.ended, []
                try:
                    write_all(reports, frame(ended))
                except BrokenPipeError:
                    return   # the agent is gone
    finally:
        launcher.end_all()
        if launcher.ended:
            # never blocks: an agent that is gone or stopped does not read it
            os.set_blocking(reports, False)
            try:
                os.write(reports, frame(launcher.ended))
            except OSError:
                logger.info("%d unit end(s) not reported: the agent does not read them",
                            len(launcher.ended))


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m rp_executor.agent.launcher <pilot sandbox> <grace>``;
    the pilot sandbox names the pilot on the command line (for the sweep)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m rp_executor.agent.launcher <pilot sandbox> <kill grace>",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s launcher %(process)d: %(message)s")
    serve(Launcher(float(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
