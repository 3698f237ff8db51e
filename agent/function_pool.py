"""Warm worker processes for Python function units.

A function unit carries a pickled callable and pickled arguments.  Starting a
process per call would cost more than most calls, so each pilot starts ``size``
workers (``python -m rp_executor.agent.worker``) once and hands them one unit
at a time: one pipe frame to the worker, one frame back.  Nothing here blocks
on a unit or starts a thread; the agent's loop polls ``filenos()`` and calls
``collect()``.

A worker that dies (``os._exit``, a segfault, the OOM killer) fails only the
unit it was running, and is replaced by a fresh one.  A unit handed to a worker
that died before it read the unit (killed while idle, just before the pool
noticed) never ran: it goes to the fresh worker instead, once.

Under load a busy worker also holds queued units (``queue_many``), which it
starts one after the other the moment the unit before ends, without waiting for
the agent's loop; each reply names the unit it starts next.  How many a worker
holds (``queue_depth``) follows the recent mean duration of the units: enough to
cover a few milliseconds of work when they are short, one when they are long.  A
queued unit never runs in a worker that was killed or died before it: it goes to
the fresh one.
"""

from __future__ import annotations

import collections
import fcntl
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .executing import _visible_devices
from .output import tail
from .queueing import LONG_UNIT, MAX_DEPTH, QUEUE_COVER, moving_mean, queue_depth
from .scheduler import Slots
from .worker import HEADER, PROTOCOL, FrameReader

logger = logging.getLogger(__name__)

__all__ = ["FuncResult", "FunctionPool", "RESULT_THRESHOLD", "EXIT_GRACE", "WORKERS_PER_CORE",
           "MAX_WORKERS", "MAX_DEPTH", "QUEUE_COVER", "LONG_UNIT", "pool_size", "queue_depth"]

RESULT_THRESHOLD = 1 << 20
"""Pickled return values larger than this many bytes go to ``<uid>/result.pkl``."""

EXIT_GRACE = 1.0
"""Seconds ``close()`` waits for idle workers to exit on end of input before SIGKILL."""

WORKERS_PER_CORE = 4
"""Warm workers per core of the agent's node at most: all workers run there, and
beyond a few per core they only add memory and start-up time (a pilot that
oversubscribes its node gets no more than this)."""

MAX_WORKERS = 256
"""Warm workers of one pilot at most, however large the pilot or its node."""

_LIVENESS_EVERY = 0.05  # seconds between checks that busy workers are still alive


def pool_size(cores: int, node_cores: int, limit: int | None = None) -> int:
    """How many warm workers a pilot of ``cores`` cores starts, its agent running on a
    node of ``node_cores`` cores: one per core of the pilot, but at most ``limit``
    when given (the session's ``function_workers``), else at most
    ``WORKERS_PER_CORE`` per core of the node and ``MAX_WORKERS``; at least 1.
    Function units beyond the workers wait for an idle one.

    >>> pool_size(2, 2), pool_size(1_000_000, 2), pool_size(1_000_000, 128)
    (2, 8, 256)
    >>> pool_size(64, 2, limit=16)
    16
    """
    ceiling = limit if limit is not None else min(WORKERS_PER_CORE * node_cores, MAX_WORKERS)
    return max(1, min(cores, ceiling))


@dataclass(slots=True)
class FuncResult:
    """The outcome of one function unit.

    ``result`` is the pickled return value, or None when it was larger than
    the pool's ``result_threshold`` and written to ``result_file`` instead.
    ``exception`` is the pickled exception and ``traceback`` its remote text.
    ``stdout``/``stderr`` are the last ``MAX_IO_LOGLENGTH`` characters the call
    printed (the whole text is in the unit's ``STDOUT``/``STDERR`` files, which
    exist only when non-empty).  ``exit_code`` is 0 for a return, 1 for an
    exception, and the worker's ``-signal`` or exit code when it died (1 if it
    exited with 0 in the middle of the unit).  ``started``/``stopped`` are
    ``time.time()`` stamps.  ``successor`` is the queued unit (see
    ``FunctionPool.queue_many``) that took over this unit's worker and ``slots`` as it
    ended: it runs now, and the slots are not free; None when they are.
    """

    uid: str
    ok: bool
    result: bytes | None
    result_file: str | None
    exception: bytes | None
    traceback: str | None
    stdout: str
    stderr: str
    canceled: bool
    slots: Slots | None
    started: float
    stopped: float
    exit_code: int
    successor: str | None = None


class _Queued:
    """A request sent to a busy worker, to run after its unit; ``canceled`` once the
    pool canceled it (it stays in line until the worker says it dropped it)."""

    __slots__ = ("uid", "request", "end", "sent", "canceled")

    def __init__(self, uid: str, request: tuple, end: int, sent: bool) -> None:
        self.uid, self.request, self.end, self.sent = uid, request, end, sent
        self.canceled = False


class _Worker:
    __slots__ = ("slot", "proc", "cmd_fd", "res_fd", "reader", "err_path", "err_start",
                 "uid", "slots", "started", "request", "end", "sent", "again", "announced",
                 "queue", "written", "plain")

    def __init__(self, slot: int, proc: subprocess.Popen, cmd_fd: int, res_fd: int,
                 err_path: Path, err_start: int) -> None:
        self.slot = slot
        self.proc = proc
        self.cmd_fd = cmd_fd
        self.res_fd = res_fd
        self.reader = FrameReader(res_fd)
        self.err_path = err_path
        self.err_start = err_start  # where this process's part of worker.<n>.err begins
        self.uid: str | None = None
        self.slots: Slots | None = None
        self.started = 0.0
        # the unit's request while it runs, to hand it to another worker if this one
        # died before reading it; whether the frame went into the pipe whole; whether
        # the unit was handed on so once already
        self.request: tuple | None = None
        self.end = 0     # where its frame ends in the stream of the request pipe
        self.sent = False
        self.again = False
        # whether a reply named the unit as started next (else it started when the
        # worker read it, if it did); the units queued behind it, in the order the
        # worker reads them (canceled ones too, until it dropped them); the bytes
        # written into the request pipe
        self.announced = False
        self.queue: collections.deque[_Queued] = collections.deque()
        self.written = 0
        # whether it runs a unit of one core without GPUs or threads, which units
        # queued behind it may follow, taking over its slots
        self.plain = False


class FunctionPool:
    """``size`` warm worker processes that run function units one at a time each.

    ``pilot_sandbox`` holds the workers' ``worker.<n>.out``/``.err`` files and
    the units' output and large-result files; ``base_env`` (``RP_SESSION_ID``,
    ``RP_PILOT_ID``, ...) is added to the workers' environment.  Workers start
    now and are not waited for: requests queue in their pipes.  Not
    thread-safe: one loop drives it.  Raises ``OSError`` if a worker cannot be
    started.
    """

    def __init__(self, size: int, pilot_sandbox: Path | str,
                 base_env: Mapping[str, str] | None = None,
                 result_threshold: int = RESULT_THRESHOLD, python: str = sys.executable) -> None:
        if size < 1:
            raise ValueError(f"a function pool needs at least one worker, got size={size}")
        self.pilot_sandbox = Path(pilot_sandbox)
        self.pilot_sandbox.mkdir(parents=True, exist_ok=True)
        self.result_threshold = int(result_threshold)
        self.python = python
        self._env = {**os.environ, **(base_env or {}),
                     "RP_PILOT_SANDBOX": str(self.pilot_sandbox)}
        self._inherited_cuda = self._env.get("CUDA_VISIBLE_DEVICES")
        self._workers: dict[int, _Worker] = {}  # by result fd
        self._idle: list[_Worker] = []
        self._busy: dict[str, _Worker] = {}  # by unit id
        self._done: list[FuncResult] = []  # results known without reading a pipe
        self._mean: float | None = None   # moving mean duration of plain units (s)
        self._dying: list[subprocess.Popen] = []  # killed, not yet reaped
        self._fds: list[int] = []
        self._next_check = 0.0
        try:
            for slot in range(size):
                self._start(slot)
        except OSError:
            self.close()
            raise

    # -- state -------------------------------------------------------------------

    @property
    def size(self) -> int:
        """How many workers the pool has now."""
        return len(self._workers)

    @property
    def pids(self) -> list[int]:
        """The process ids of the workers the pool knows as alive."""
        return [w.proc.pid for w in self._workers.values()]

    @property
    def idle(self) -> int:
        """How many workers have no unit."""
        return len(self._idle)

    @property
    def running(self) -> int:
        """How many units are in workers and not collected yet."""
        return len(self._busy)

    def running_uids(self) -> list[str]:
        """The units in workers, not collected yet."""
        return list(self._busy)

    @property
    def collect_timeout(self) -> float | None:
        """0 when ``collect()`` has results that no fd will signal (after a cancel), else None."""
        return 0.0 if self._done else None

    def filenos(self) -> list[int]:
        """The fds to poll for readability, one result pipe per worker.

        The list changes when a worker is replaced; it is rebuilt, not mutated.
        """
        return self._fds

    # -- units -------------------------------------------------------------------

    def submit(self, uid: str, fn: bytes, args: bytes, slots: Slots | None,
               cpu_threads: int = 1, gpus: Iterable[int] = (), name: str | None = None) -> None:
        """Hand a unit to an idle worker.

        ``fn`` is ``cloudpickle.dumps(callable)``, ``args`` is
        ``cloudpickle.dumps((args, kwargs))``.  During the call the worker's
        ``os.environ`` has ``RP_UNIT_ID``, ``RP_UNIT_NAME`` (if ``name``),
        ``OMP_NUM_THREADS=cpu_threads`` and, for ``gpus``,
        ``CUDA_VISIBLE_DEVICES``.  Raises ``RuntimeError`` when no worker is
        idle and ``ValueError`` for a unit already running.  A worker that died
        meanwhile is noticed by ``collect()``, which fails the unit.
        """
        if uid in self._busy:
            raise ValueError(f"unit {uid} is already running in worker "
                             f"{self._busy[uid].proc.pid}")
        if not self._idle:
            raise RuntimeError(f"no idle worker for unit {uid}: all {self.size} are busy "
                               f"(check pool.idle before submit)")
        gpus = list(gpus)
        cuda = _visible_devices(gpus, self._inherited_cuda) if gpus else None
        self._hand(self._idle.pop(), (uid, fn, args, str(cpu_threads), cuda, name), slots,
                   again=False)

    @property
    def depth(self) -> int:
        """How many queued units a busy worker may hold now (see ``queue_depth``)."""
        return queue_depth(self._mean)

    @property
    def mean_duration(self) -> float | None:
        """The moving mean duration in seconds of the recent units of one core
        without GPUs or threads; None before one ended."""
        return self._mean

    def queue_room(self, depth: int | None = None) -> int:
        """How many units ``queue_many`` would take now, at most."""
        return sum((depth or queue_depth(self._mean)) - len(w.queue)
                   for w in self._open(depth))

    def _open(self, depth: int | None) -> list[_Worker]:
        """The busy workers that may take queued units: running a plain unit,
        holding fewer than ``depth``. Without a ``depth`` given, the policy's
        (``queue_depth``), and only behind a unit that has not run ``LONG_UNIT`` yet
        (a long one among short ones would strand what waits behind it)."""
        if depth is not None:
            return [w for w in self._workers.values() if w.plain and len(w.queue) < depth]
        depth = queue_depth(self._mean)
        if not depth:
            return []
        now = time.time()
        return [w for w in self._workers.values()
                if w.plain and len(w.queue) < depth and now - w.started < LONG_UNIT]

    def queue(self, uid: str, fn: bytes, args: bytes, name: str | None = None,
              depth: int | None = None) -> bool:
        """Queue one unit as ``queue_many`` does; False (nothing done) when no
        worker can take one now."""
        return self.queue_many([(uid, fn, args, name)], depth) == 1

    def queue_many(self, units: list[tuple[str, bytes, bytes, str | None]],
                   depth: int | None = None) -> int:
        """Queue units of one core behind the units of one core that busy workers
        run; returns how many were taken: the first ones of ``units``, possibly none.

        ``units`` are ``(uid, fn, args, name)``, in the order they should start
        (``fn``, ``args`` and ``name`` as for ``submit``).  A worker starts its
        queued units one after the other the moment the unit before ends, without
        waiting for the pool: the unit that ended comes out of ``collect()`` with
        the next one as its ``successor``, which takes over its slots.  A worker
        holds ``depth`` queued units at most (by default the policy's, see
        ``queue_depth`` and ``_open``), and the units are spread evenly: the
        workers with the fewest queued units get the next ones (so a long line
        never waits behind one worker while another has room).
        """
        if not units:
            return 0
        busy = self._busy
        for unit in units:
            if unit[0] in busy:
                raise ValueError(f"unit {unit[0]} is already running in worker "
                                 f"{busy[unit[0]].proc.pid}")
        open_ = self._open(depth)
        depth = depth or queue_depth(self._mean)
        if not open_:
            return 0
        # level by level: every worker holding ``level`` units or fewer takes one more
        plan: dict[int, list[tuple]] = {}
        taken, count = 0, len(units)
        level = min(len(w.queue) for w in open_)
        while taken < count and level < depth:
            for worker in open_:
                if len(worker.queue) + len(plan.get(worker.res_fd, ())) <= level:
                    uid, fn, args, name = units[taken]
                    plan.setdefault(worker.res_fd, []).append((uid, fn, args, "1", None, name))
                    taken += 1
                    if taken == count:
                        break
            level += 1
        workers = self._workers
        for fd, requests in plan.items():
            worker = workers[fd]
            for entry in self._send(worker, requests):
                worker.queue.append(entry)
                busy[entry.uid] = worker
        return taken

    def _hand(self, worker: _Worker, request: tuple, slots: Slots | None,
              again: bool) -> None:
        """Send ``request`` (its unit's id first) to an idle ``worker``."""
        uid = request[0]
        worker.uid, worker.slots, worker.started = uid, slots, time.time()
        worker.request, worker.again, worker.announced = request, again, False
        worker.plain = _plain(request, slots)
        self._busy[uid] = worker
        (entry,) = self._send(worker, [request])
        worker.end, worker.sent = entry.end, entry.sent

    def _send(self, worker: _Worker, requests: list[tuple]) -> list[_Queued]:
        """Write ``requests`` (each its unit's id first) into the worker's pipe, in
        one write: for each, where its frame ends in the pipe's stream and whether
        it went in whole."""
        dumps, pack = pickle.dumps, HEADER.pack
        parts, ends, at = [], [], worker.written
        for request in requests:
            payload = dumps(request, PROTOCOL)
            parts.append(pack(len(payload)))
            parts.append(payload)
            at += HEADER.size + len(payload)
            ends.append(at)
        data = memoryview(b"".join(parts))
        try:
            while data:
                n = os.write(worker.cmd_fd, data)
                worker.written += n
                data = data[n:]
        except OSError as exc:
            # the worker is dead or wedged: make sure of it; collect() reports the units
            logger.warning("unit(s) %s: cannot send to worker %d: %s",
                           ", ".join(r[0] for r in requests), worker.proc.pid, exc)
            _kill(worker.proc)
        got = worker.written
        worker.written = at
        return [_Queued(r[0], r, end, end <= got) for r, end in zip(requests, ends)]

    def collect(self, ready: Container[int] | None = None) -> list[FuncResult]:
        """The results available now; never blocks (beyond reaping a dead worker).

        Reads the pipes of the workers whose fd is in ``ready`` (what a poll of
        ``filenos()`` found readable), or of every worker when it is None; a
        worker found dead fails its unit with a message naming the death, and is
        replaced.  Busy workers are also checked for life every few hundredths
        of a second, whatever ``ready`` holds.
        """
        done, self._done = self._done, []
        lost = []
        workers = self._workers
        for fd in self._fds if ready is None else [fd for fd in self._fds if fd in ready]:
            worker = workers.get(fd)
            if worker is not None and not self._read(worker, done):
                lost.append(worker)
        now = time.monotonic()
        if self._busy and now >= self._next_check:
            # a death normally shows as end of file; this catches one whose
            # result pipe is still held open (a child forked by the function)
            self._next_check = now + _LIVENESS_EVERY
            for worker in list(self._workers.values()):
                if worker.uid is not None and worker not in lost \
                        and worker.proc.poll() is not None:
                    self._read(worker, done, drain=True)  # it may have answered just before
                    if workers.get(worker.res_fd) is worker:
                        lost.append(worker)
        for worker in lost:
            self._lost(worker, done)
        if self._dying:
            self._dying = [p for p in self._dying if p.poll() is None]
        return done

    def _read(self, worker: _Worker, done: list[FuncResult], drain: bool = False) -> bool:
        """Turn what the worker's pipe holds into results; False at end of file.

        Without ``drain`` one read that brought replies is enough: a poll tells of
        more."""
        while True:
            try:
                frames = worker.reader.read()
            except BlockingIOError:
                return True
            if frames is None:
                return False
            for payload in frames:
                self._reply(worker, pickle.loads(payload), done)
                if self._workers.get(worker.res_fd) is not worker:
                    return True   # killed for a canceled unit it may run (see _reply)
            if frames and not drain:
                return True

    def _reply(self, worker: _Worker, reply: tuple, done: list[FuncResult]) -> None:
        (uid, code, value, result_file, exc, tb, out, err, started, stopped, following,
         dropped) = reply
        queue = worker.queue
        if dropped:
            # canceled units that the worker took out of its line: they will not run
            worker.queue = queue = collections.deque(e for e in queue if e.uid not in dropped)
        if uid is None:
            return   # only dropped requests
        if uid != worker.uid:
            raise RuntimeError(f"worker {worker.proc.pid} answered for unit {uid!r} while "
                               f"running {worker.uid!r}: the pool's protocol is broken")
        del self._busy[uid]
        slots, successor = worker.slots, None
        if worker.plain:
            self._mean = moving_mean(self._mean, stopped - started)
        if queue:
            head = queue[0]
            if following is not None and following != head.uid:
                raise RuntimeError(f"worker {worker.proc.pid} started unit {following!r} "
                                   f"after {uid!r}, not {head.uid!r}: the pool's protocol "
                                   f"is broken")
            if head.canceled:
                # a canceled unit is next, and the worker did not drop it: it runs it
                # now, or will when it reads it; the units behind it never started
                logger.debug("unit %s was canceled while queued: killing worker %d, "
                             "which may run it", head.uid, worker.proc.pid)
                self._kill_retire(worker)
                successor = self._hand_on(queue, slots, done)
            else:
                # it runs now (named in the reply), or the moment the worker reads it
                queue.popleft()
                successor = head.uid
                worker.uid, worker.request, worker.started = head.uid, head.request, time.time()
                worker.end, worker.sent, worker.again = head.end, head.sent, False
                worker.announced = following is not None
                worker.plain = True
        else:
            worker.uid = worker.slots = worker.request = None
            worker.plain = False
            self._idle.append(worker)
        done.append(FuncResult(uid, code == 0, value, result_file, exc, tb, out, err, False,
                               slots, started, stopped, code, successor))

    def _lost(self, worker: _Worker, done: list[FuncResult]) -> None:
        rc = _reap(worker.proc)
        death = _describe(rc)
        uid, request, slots, queue = worker.uid, worker.request, worker.slots, worker.queue
        # a unit that a reply named as started did run; one handed to an idle worker
        # ran if the worker read it; a queued one did not run
        unread = uid is not None and not worker.again and not worker.announced \
            and self._unread(worker)
        self._retire(worker)
        self._replace(worker.slot)
        if unread and self._idle:
            # it died before it read the unit, which never ran: the next worker takes it
            logger.warning("worker process %d died (%s) before it read %s; its "
                           "replacement runs it", worker.proc.pid, death, uid)
            fresh = self._idle.pop()
            self._hand(fresh, request, slots, again=True)
            self._requeue(fresh, queue)
            return
        logger.warning("worker process %d died (%s)%s", worker.proc.pid, death,
                       f" while running {uid}" if uid else "")
        if uid is None:
            return
        msg = f"worker process {worker.proc.pid} died ({death}) while running {uid}"
        dump = tail(worker.err_path, "stderr", start=worker.err_start).strip()
        stderr = f"{msg}\nworker stderr:\n{dump}" if dump else msg
        successor = self._hand_on(queue, slots, done)
        done.append(FuncResult(uid, False, None, None, None, None, "", stderr, False,
                               slots, worker.started, time.time(), rc or 1, successor))

    def _hand_on(self, queue: Iterable[_Queued], slots: Slots | None,
                 done: list[FuncResult]) -> str | None:
        """Give the queued units whose worker is gone (none started there) to an idle
        worker, the first with the ``slots`` of the unit they waited for, the others
        queued behind it; the first one's uid, or None.  Canceled ones are left out
        (they ended when canceled)."""
        waiting = [e for e in queue if not e.canceled]
        if not waiting:
            return None
        if self._idle:
            fresh = self._idle.pop()
            self._hand(fresh, waiting[0].request, slots, again=False)
            self._requeue(fresh, waiting[1:])
            return waiting[0].uid
        now = time.time()
        for entry in waiting:
            done.append(FuncResult(entry.uid, False, None, None, None, None, "",
                                   "no function worker is left to run the unit", False, None,
                                   now, now, 1))
        return None

    def _requeue(self, worker: _Worker, queue: Iterable[_Queued]) -> None:
        """Queue behind ``worker``'s unit the queued units of a worker that is gone
        (whatever the depth: they were promised a place), but the canceled ones."""
        requests = [e.request for e in queue if not e.canceled]
        if requests:
            for entry in self._send(worker, requests):
                worker.queue.append(entry)
                self._busy[entry.uid] = worker

    def _unread(self, worker: _Worker) -> bool:
        """Whether the busy worker's request never left its pipe: not sent at all, or
        not all of it read (Linux tells how much a pipe holds at either end)."""
        if not worker.sent:
            return True
        try:
            held = struct.unpack("i", fcntl.ioctl(worker.cmd_fd, termios.FIONREAD,
                                                  b"\0\0\0\0"))[0]
        except OSError:
            return False   # not known here: the unit may have run
        return worker.written - held < worker.end

    def cancel(self, uid: str) -> bool:
        """Kill the worker running ``uid`` (SIGKILL) and start a fresh one.

        The units queued behind it go to the fresh worker; a queued unit itself is
        dropped from its worker's queue (the worker is killed only if it may have
        started it meanwhile).  The unit shows up in the next ``collect()`` with
        ``canceled=True``.  Returns False when the unit is not running here
        (unknown, or already collected, or it ended just now: its result comes
        from the next ``collect()``).
        """
        worker = self._busy.get(uid)
        if worker is None:
            return False
        now = time.time()
        queue = worker.queue
        if worker.uid != uid:
            entry = next(e for e in queue if e.uid == uid)
            entry.canceled = True
            del self._busy[uid]
            self._send(worker, [(uid,)])
            self._done.append(FuncResult(uid, False, None, None, None, None, "", "", True,
                                         None, now, now, -signal.SIGKILL))
            return True
        if queue and not self._halt(worker):
            # its unit ended as it was stopped: a queued one runs now
            return uid in self._busy and self.cancel(uid)
        logger.debug("unit %s: canceling (SIGKILL to worker %d)", uid, worker.proc.pid)
        self._kill_retire(worker)
        successor = self._hand_on(queue, worker.slots, self._done)
        self._done.append(FuncResult(uid, False, None, None, None, None, "", "", True,
                                     worker.slots, worker.started, now, -signal.SIGKILL,
                                     successor))
        return True

    def _halt(self, worker: _Worker) -> bool:
        """Stop a busy worker that has a unit queued, to tell whether its unit still
        runs (True: the worker stays stopped, to be killed) or ended meanwhile
        (False: its reply is collected, and it goes on)."""
        uid, pid = worker.uid, worker.proc.pid
        try:
            os.kill(pid, signal.SIGSTOP)
            info = os.waitid(os.P_PID, pid, os.WSTOPPED | os.WEXITED | os.WNOWAIT)
            if info is not None and info.si_code == os.CLD_STOPPED:
                os.waitid(os.P_PID, pid, os.WSTOPPED | os.WNOHANG)   # take the report
        except (ProcessLookupError, ChildProcessError):
            pass   # it is gone: its end of file says so
        alive = self._read(worker, self._done, drain=True)
        if not alive:
            self._lost(worker, self._done)
            return False
        if self._workers.get(worker.res_fd) is not worker:
            return False   # killed for a canceled unit it was to run next (see _reply)
        if worker.uid == uid:
            return True
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        return False

    def _kill_retire(self, worker: _Worker) -> None:
        """Kill a worker, forget it and start its replacement."""
        _kill(worker.proc)
        self._dying.append(worker.proc)
        self._retire(worker)
        self._replace(worker.slot)

    def close(self) -> list[FuncResult]:
        """Stop every worker; returns the units still running or queued, as canceled.

        Idle workers exit at the end of their input; busy ones, and any not
        gone after ``EXIT_GRACE`` seconds, are killed.  No worker process is
        left when it returns.
        """
        done, self._done = self._done, []
        now = time.time()
        for worker in list(self._workers.values()):
            os.close(worker.cmd_fd)
            worker.cmd_fd = -1
            if worker.uid is not None:
                _kill(worker.proc)
                done.append(FuncResult(worker.uid, False, None, None, None, None, "", "", True,
                                       worker.slots, worker.started, now, -signal.SIGKILL))
            for entry in worker.queue:
                if not entry.canceled:
                    done.append(FuncResult(entry.uid, False, None, None, None, None, "",
                                           "", True, None, now, now, -signal.SIGKILL))
        procs = [w.proc for w in self._workers.values()] + self._dying
        deadline = time.monotonic() + EXIT_GRACE
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("worker %d did not exit in %.1fs, killing it", proc.pid, EXIT_GRACE)
                _kill(proc)
                proc.wait()
        for worker in list(self._workers.values()):
            self._retire(worker)
        self._dying = []
        return done

    def __enter__(self) -> FunctionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- workers -----------------------------------------------------------------

    def _start(self, slot: int) -> None:
        out = self.pilot_sandbox / f"worker.{slot}.out"
        err = self.pilot_sandbox / f"worker.{slot}.err"
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        argv = [self.python, "-m", "rp_executor.agent.worker", str(res_w),
                str(self.pilot_sandbox), str(self.result_threshold)]
        try:
            with open(out, "ab") as fout, open(err, "ab") as ferr:
                err_start = ferr.tell()
                proc = subprocess.Popen(argv, stdin=cmd_r, stdout=fout, stderr=ferr,
                                        pass_fds=(res_w,), cwd=self.pilot_sandbox,
                                        env=self._env, start_new_session=True)
        except OSError:
            os.close(cmd_w)
            os.close(res_r)
            raise
        finally:
            os.close(cmd_r)
            os.close(res_w)
        os.set_blocking(res_r, False)
        worker = _Worker(slot, proc, cmd_w, res_r, err, err_start)
        self._workers[res_r] = worker
        self._idle.append(worker)
        self._fds = list(self._workers)
        logger.debug("worker %d started (pid %d)", slot, proc.pid)

    def _replace(self, slot: int) -> None:
        try:
            self._start(slot)
        except OSError as exc:
            logger.error("cannot start a worker to replace slot %d (%s); the pool has %d left",
                         slot, exc, self.size)

    def _retire(self, worker: _Worker) -> None:
        """Forget a worker whose process is dead or killed, and close its pipes."""
        del self._workers[worker.res_fd]
        if worker.uid is not None:
            self._busy.pop(worker.uid, None)
        elif worker in self._idle:
            self._idle.remove(worker)
        for entry in worker.queue:
            if not entry.canceled:
                self._busy.pop(entry.uid, None)
        if worker.cmd_fd >= 0:
            os.close(worker.cmd_fd)
            worker.cmd_fd = -1
        os.close(worker.res_fd)
        self._fds = list(self._workers)


def _plain(request: tuple, slots: Slots | None) -> bool:
    """Whether a request runs a unit of one core, without GPUs or threads (which
    another such unit may follow, taking over its slots)."""
    return request[3] == "1" and request[4] is None and slots is not None \
        and len(slots.nodes) == 1 and len(slots.nodes[0].cores) == 1 \
        and not slots.nodes[0].gpus


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone (and maybe reaped by poll())


def _reap(proc: subprocess.Popen) -> int:
    """The exit status of a worker whose result pipe ended; kills one that lingers."""
    try:
        return proc.wait(0.5)
    except subprocess.TimeoutExpired:
        logger.warning("worker %d closed its result pipe but did not exit; killing it", proc.pid)
        _kill(proc)
        return proc.wait()


def _describe(rc: int) -> str:
    if rc < 0:
        try:
            return signal.Signals(-rc).name
        except ValueError:
            return f"signal {-rc}"
    return f"exit code {rc}"
