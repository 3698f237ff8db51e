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
"""

from __future__ import annotations

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
from .scheduler import Slots
from .worker import HEADER, PROTOCOL, FrameReader, write_frame

logger = logging.getLogger(__name__)

__all__ = ["FuncResult", "FunctionPool", "RESULT_THRESHOLD", "EXIT_GRACE", "WORKERS_PER_CORE",
           "MAX_WORKERS", "pool_size"]

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
    ``time.time()`` stamps.
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


class _Worker:
    __slots__ = ("slot", "proc", "cmd_fd", "res_fd", "reader", "err_path", "err_start",
                 "uid", "slots", "started", "request", "frame_size", "sent", "again")

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
        self.frame_size = 0
        self.sent = False
        self.again = False


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

    def _hand(self, worker: _Worker, request: tuple, slots: Slots | None,
              again: bool) -> None:
        """Send ``request`` (its unit's id first) to an idle ``worker``."""
        uid = request[0]
        payload = pickle.dumps(request, PROTOCOL)
        worker.uid, worker.slots, worker.started = uid, slots, time.time()
        worker.request, worker.again, worker.sent = request, again, False
        worker.frame_size = HEADER.size + len(payload)
        self._busy[uid] = worker
        try:
            write_frame(worker.cmd_fd, payload)
            worker.sent = True
        except OSError as exc:
            # the worker is dead or wedged: make sure of it; collect() reports the unit
            logger.warning("unit %s: cannot send to worker %d: %s", uid, worker.proc.pid, exc)
            _kill(worker.proc)

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
            worker = workers[fd]
            if not self._read(worker, done):
                lost.append(worker)
        now = time.monotonic()
        if self._busy and now >= self._next_check:
            # a death normally shows as end of file; this catches one whose
            # result pipe is still held open (a child forked by the function)
            self._next_check = now + _LIVENESS_EVERY
            for worker in list(self._busy.values()):
                if worker not in lost and worker.proc.poll() is not None:
                    self._read(worker, done)  # it may have answered just before
                    lost.append(worker)
        for worker in lost:
            self._lost(worker, done)
        if self._dying:
            self._dying = [p for p in self._dying if p.poll() is None]
        return done

    def _read(self, worker: _Worker, done: list[FuncResult]) -> bool:
        """Turn what the worker's pipe holds into results; False at end of file."""
        while True:
            try:
                frames = worker.reader.read()
            except BlockingIOError:
                return True
            if frames is None:
                return False
            for payload in frames:
                done.append(self._result(worker, payload))
            if frames:
                return True  # one unit per worker: nothing more until the next submit

    def _result(self, worker: _Worker, payload: bytes) -> FuncResult:
        (uid, code, value, result_file, exc, tb, out, err, started,
         stopped) = pickle.loads(payload)
        if uid != worker.uid:
            raise RuntimeError(f"worker {worker.proc.pid} answered for unit {uid!r} while "
                               f"running {worker.uid!r}: the pool's protocol is broken")
        del self._busy[uid]
        slots = worker.slots
        worker.uid = worker.slots = worker.request = None
        self._idle.append(worker)
        return FuncResult(uid, code == 0, value, result_file, exc, tb, out, err, False, slots,
                          started, stopped, code)

    def _lost(self, worker: _Worker, done: list[FuncResult]) -> None:
        rc = _reap(worker.proc)
        death = _describe(rc)
        if worker.uid is not None and not worker.again and self._unread(worker):
            # it died before it read the unit, which never ran: the next worker takes it
            logger.warning("worker process %d died (%s) before it read %s; its "
                           "replacement runs it", worker.proc.pid, death, worker.uid)
            request, slots = worker.request, worker.slots
            self._retire(worker)
            self._replace(worker.slot)
            if self._idle:
                self._hand(self._idle.pop(), request, slots, again=True)
                return
            worker.uid, worker.slots = request[0], slots   # no worker: fail it below
        logger.warning("worker process %d died (%s)%s", worker.proc.pid, death,
                       f" while running {worker.uid}" if worker.uid else "")
        if worker.uid is not None:
            msg = f"worker process {worker.proc.pid} died ({death}) while running {worker.uid}"
            dump = tail(worker.err_path, "stderr", start=worker.err_start).strip()
            stderr = f"{msg}\nworker stderr:\n{dump}" if dump else msg
            done.append(FuncResult(worker.uid, False, None, None, None, None, "", stderr, False,
                                   worker.slots, worker.started, time.time(), rc or 1))
        if self._workers.get(worker.res_fd) is worker:   # not retired above
            self._retire(worker)
            self._replace(worker.slot)

    @staticmethod
    def _unread(worker: _Worker) -> bool:
        """Whether the busy worker's request never left its pipe: not sent at all, or
        still all of it in the pipe (Linux tells how much a pipe holds at either end)."""
        if not worker.sent:
            return True
        try:
            held = struct.unpack("i", fcntl.ioctl(worker.cmd_fd, termios.FIONREAD,
                                                  b"\0\0\0\0"))[0]
        except OSError:
            return False   # not known here: the unit may have run
        return held == worker.frame_size

    def cancel(self, uid: str) -> bool:
        """Kill the worker running ``uid`` (SIGKILL) and start a fresh one.

        The unit shows up in the next ``collect()`` with ``canceled=True``.
        Returns False when the unit is not running here (unknown, or already
        collected).
        """
        worker = self._busy.get(uid)
        if worker is None:
            return False
        logger.debug("unit %s: canceling (SIGKILL to worker %d)", uid, worker.proc.pid)
        _kill(worker.proc)
        self._dying.append(worker.proc)
        self._retire(worker)
        self._done.append(FuncResult(uid, False, None, None, None, None, "", "", True,
                                     worker.slots, worker.started, time.time(),
                                     -signal.SIGKILL))
        self._replace(worker.slot)
        return True

    def close(self) -> list[FuncResult]:
        """Stop every worker; returns the units still running, as canceled.

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
        if worker.cmd_fd >= 0:
            os.close(worker.cmd_fd)
            worker.cmd_fd = -1
        os.close(worker.res_fd)
        self._fds = list(self._workers)


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
