"""A warm worker of the function pool: runs pickled Python calls, one at a time.

Started once per pilot slot by ``FunctionPool`` as::

    python -m rp_executor.agent.worker RESULT_FD PILOT_SANDBOX RESULT_THRESHOLD

Requests come on stdin, results go to the pipe ``RESULT_FD``; both are frames,
a 4-byte big-endian length and a pickle.  The worker's fd 1 and 2 are files in
the pilot sandbox that catch output not written through ``sys.stdout`` /
``sys.stderr`` (C extensions, child processes, a fatal error's dump).

A request is ``(uid, fn, args, omp_threads, cuda_devices, name)``: ``fn`` is a
pickled callable, ``args`` a pickled ``(args, kwargs)``; or ``(uid,)``, which
drops the request of ``uid`` if the worker has not started it.  A reply is
``(uid, exit_code, result, result_file, exception, traceback, stdout, stderr,
started, stopped, next, dropped)``: ``exit_code`` 0 with ``result`` (the pickled
return value) or ``result_file`` (where a result larger than
``RESULT_THRESHOLD`` bytes was written), or 1 with ``exception`` (the pickled
exception) and ``traceback``.

Requests may queue behind the one running (the pool hands a busy worker its
next unit, so that the worker does not wait for the pool between units).  Before
it replies, the worker takes in what its pipe holds, and the reply names the
unit it starts right after (``next``, None when it has none yet: it then starts
the next request the moment it reads it) and the queued requests it dropped
(``dropped``). A reply whose ``uid`` is None only reports dropped requests.

The module imports little at start, so that a worker is ready soon; the
function's own pickle imports cloudpickle when it is loaded.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import select
import struct
import sys
import time

from .output import shorten

__all__ = ["FrameReader", "Inbox", "write_frame", "Worker", "main", "HEADER", "PROTOCOL",
           "FN_CACHE_SIZE"]

HEADER = struct.Struct("!I")
"""A frame's header: the payload's length in bytes."""

PROTOCOL = pickle.HIGHEST_PROTOCOL

FN_CACHE_SIZE = 256
"""How many unpickled functions a worker keeps, keyed by their pickle."""

_READ_SIZE = 1 << 16  # a Linux pipe's default capacity
_BIG_FRAME = 1 << 20  # frames above this are read straight into their own buffer

_ENV_KEYS = ("RP_UNIT_ID", "RP_UNIT_NAME", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES")


class FrameReader:
    """Splits the byte stream of a pipe into frame payloads.

    ``read()`` does one ``os.read`` and returns the payloads (bytes-like) of the
    frames it completed, possibly none; ``None`` at end of file.  On a
    non-blocking fd with nothing to read it raises ``BlockingIOError``.
    """

    __slots__ = ("fd", "buf", "big", "view", "got")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()
        self.big: bytearray | None = None  # a large frame being read in place
        self.view: memoryview | None = None
        self.got = 0

    def read(self) -> list | None:
        """The payloads completed by one read; None at end of file."""
        if self.big is not None:
            return self._read_big()
        data = os.read(self.fd, _READ_SIZE)
        if not data:
            return None
        buf = self.buf
        if not buf and len(data) >= 4:
            # the common case: one whole frame in one read, no buffering
            (n,) = HEADER.unpack_from(data)
            if len(data) == n + 4:
                return [memoryview(data)[4:]]
        buf += data
        frames = []
        pos, end = 0, len(buf)
        while end - pos >= 4:
            (n,) = HEADER.unpack_from(buf, pos)
            if end - pos - 4 < n:
                if n > _BIG_FRAME:
                    self._start_big(n, buf, pos + 4, end)
                    pos = end
                break
            frames.append(bytes(buf[pos + 4:pos + 4 + n]))
            pos += 4 + n
        if pos:
            del buf[:pos]
        return frames

    def _start_big(self, n: int, buf: bytearray, start: int, end: int) -> None:
        self.big = bytearray(n)
        self.big[:end - start] = buf[start:end]
        self.got = end - start
        self.view = memoryview(self.big)

    def _read_big(self) -> list | None:
        assert self.big is not None and self.view is not None
        n = os.readv(self.fd, [self.view[self.got:]])
        if n == 0:
            return None
        self.got += n
        if self.got < len(self.big):
            return []
        frame = self.big
        self.view.release()
        self.big = self.view = None
        return [frame]


class Inbox:
    """The requests a worker has read and not started yet, in order.

    ``fd`` is the worker's request pipe, made non-blocking: ``fill`` reads what it
    holds, waiting for it or not. A cancel request ``(uid,)`` drops the pending
    request of ``uid`` (noted in ``dropped`` for the next reply); one for a unit
    that is not pending (it ran, or runs now) is ignored.
    """

    __slots__ = ("fd", "reader", "pending", "dropped", "ended")

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self.reader = FrameReader(fd)
        self.pending: collections.deque[tuple] = collections.deque()
        self.dropped: list[str] = []
        self.ended = False   # end of input was read

    def fill(self, wait: bool) -> bool:
        """Read the requests the pipe holds (waiting for some if ``wait``); False at
        the end of input."""
        loads, pending = pickle.loads, self.pending
        while not self.ended:
            try:
                frames = self.reader.read()
            except BlockingIOError:
                if not wait:
                    return True
                select.select([self.fd], [], [])
                continue
            if frames is None:
                self.ended = True
                break
            for payload in frames:
                request = loads(payload)
                if len(request) == 1:
                    self._drop(request[0])
                else:
                    pending.append(request)
            if frames and (pending or not wait):
                return True
        return bool(pending)

    def _drop(self, uid: str) -> None:
        for request in self.pending:
            if request[0] == uid:
                self.pending.remove(request)
                self.dropped.append(uid)
                return

    def take_dropped(self) -> tuple:
        """The units dropped since the last call."""
        dropped, self.dropped = tuple(self.dropped), []
        return dropped


def write_frame(fd: int, payload: bytes) -> None:
    """Write one frame to a blocking fd, all of it.

    Raises ``BrokenPipeError`` when the reader is gone.
    """
    header = HEADER.pack(len(payload))
    if len(payload) <= _READ_SIZE:
        data = memoryview(header + payload)
    else:
        _write_all(fd, memoryview(header))
        data = memoryview(payload)
    _write_all(fd, data)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data):]


class Worker:
    """Runs calls for one pool slot: unpickles, calls, pickles the outcome."""

    def __init__(self, pilot_sandbox: str, result_threshold: int) -> None:
        self.sandbox = pilot_sandbox
        self.threshold = result_threshold
        self.functions: dict[bytes, object] = {}
        self._inherited = {k: os.environ.get(k) for k in _ENV_KEYS}
        self._env = dict(self._inherited)  # what os.environ holds now for _ENV_KEYS

    def call(self, uid: str, fn: bytes, args: bytes, omp: str | None, cuda: str | None,
             name: str | None) -> tuple:
        """Run one request; returns the reply's first ten fields (never raises for the
        call's sake)."""
        self._environ(uid, name, omp, cuda)
        out, err = io.StringIO(), io.StringIO()
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        started = time.time()
        try:
            function = self.functions.get(fn)
            if function is None:
                function = self._load(fn)
            a, kw = pickle.loads(args)
            value = function(*a, **kw)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: the unit's outcome
            stopped = time.time()
            sys.stdout, sys.stderr = saved
            blob, text = _exception(exc, strip=1)
            return self._reply(uid, 1, None, None, blob, text, out, err, started, stopped)
        stopped = time.time()
        sys.stdout, sys.stderr = saved
        try:
            data = _dumps(value)
        except Exception as exc:
            problem = TypeError(f"the return value of type {_type_name(value)} cannot be "
                                f"pickled: {type(exc).__name__}: {exc}")
            blob, text = _exception(problem, strip=0)
            return self._reply(uid, 1, None, None, blob, text, out, err, started, stopped)
        if len(data) > self.threshold:
            path = os.path.join(self._unit_dir(uid), "result.pkl")
            try:
                with open(path, "wb") as f:
                    f.write(data)
            except OSError as exc:
                blob, text = _exception(exc, strip=0)
                return self._reply(uid, 1, None, None, blob, text, out, err, started, stopped)
            return self._reply(uid, 0, None, path, None, None, out, err, started, stopped)
        return self._reply(uid, 0, data, None, None, None, out, err, started, stopped)

    def _load(self, fn: bytes | str) -> object:
        if isinstance(fn, str):  # an importable "module:name"
            import importlib
            module, _, name = fn.partition(":")
            function = importlib.import_module(module)
            for part in name.split("."):
                function = getattr(function, part)
        else:
            function = pickle.loads(fn)
        if not callable(function):
            raise TypeError(f"the unit's function is a {_type_name(function)}, not a callable")
        functions = self.functions
        if len(functions) >= FN_CACHE_SIZE:
            del functions[next(iter(functions))]  # the oldest
        functions[fn] = function
        return function

    def _environ(self, uid: str, name: str | None, omp: str | None, cuda: str | None) -> None:
        env, now, inherited = os.environ, self._env, self._inherited
        for key, value in (("RP_UNIT_ID", uid), ("RP_UNIT_NAME", name),
                           ("OMP_NUM_THREADS", omp), ("CUDA_VISIBLE_DEVICES", cuda)):
            if value is None:
                value = inherited[key]
            if now[key] != value:
                if value is None:
                    env.pop(key, None)
                else:
                    env[key] = value
                now[key] = value

    def _unit_dir(self, uid: str) -> str:
        path = os.path.join(self.sandbox, uid)
        os.makedirs(path, exist_ok=True)
        return path

    def _reply(self, uid: str, code: int, result: bytes | None, result_file: str | None,
               exception: bytes | None, traceback: str | None, out: io.StringIO,
               err: io.StringIO, started: float, stopped: float) -> tuple:
        stdout, stderr = out.getvalue(), err.getvalue()
        if stdout or stderr:
            stdout, stderr = self._save_output(uid, stdout, stderr)
        return (uid, code, result, result_file, exception, traceback, stdout, stderr,
                started, stopped)

    def _save_output(self, uid: str, stdout: str, stderr: str) -> tuple[str, str]:
        """Write the call's output to the unit's STDOUT/STDERR; returns their tails."""
        try:
            folder = self._unit_dir(uid)
            for fname, text in (("STDOUT", stdout), ("STDERR", stderr)):
                if text:
                    with open(os.path.join(folder, fname), "w", encoding="utf-8",
                              errors="backslashreplace") as f:
                        f.write(text)
        except OSError as exc:
            stderr += f"\nrp_executor: cannot write the unit's output files: {exc}\n"
        return shorten(stdout), shorten(stderr)


def _dumps(value: object) -> bytes:
    # plain pickle is several times faster for the common values; cloudpickle
    # handles what it cannot (lambdas, classes defined in the function)
    try:
        return pickle.dumps(value, PROTOCOL)
    except Exception:
        import cloudpickle
        return cloudpickle.dumps(value, PROTOCOL)


def _exception(exc: BaseException, strip: int) -> tuple[bytes, str]:
    """The pickled exception and its traceback text, without ``strip`` worker frames."""
    import traceback
    tb = exc.__traceback__
    for _ in range(strip):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    try:
        blob = _dumps(exc)
        pickle.loads(blob)  # an exception class whose __init__ needs more args fails here
    except Exception as problem:
        stand_in = RuntimeError(f"{_type_name(exc)}: {exc!r} (the exception itself cannot be "
                                f"sent back: {type(problem).__name__}: {problem})")
        blob = pickle.dumps(stand_in, PROTOCOL)
    return blob, text


def _type_name(value: object) -> str:
    kind = type(value)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _ignore(signum: int, frame: object) -> None:
    """A handler that does nothing: unlike SIG_IGN it is not inherited by exec'd children."""


def main(argv: list[str] | None = None) -> int:
    """Serve requests from stdin until it closes; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print("usage: python -m rp_executor.agent.worker RESULT_FD PILOT_SANDBOX "
              "RESULT_THRESHOLD", file=sys.stderr)
        return 2
    result_fd, sandbox, threshold = int(argv[0]), argv[1], int(argv[2])
    import faulthandler
    import signal
    faulthandler.enable()  # a segfault's Python stack goes to worker.<n>.err
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _ignore)
    # Neither pipe may leak into processes the functions start: a child reading
    # stdin would steal requests, one holding the result pipe would hide our death.
    os.set_inheritable(result_fd, False)
    request_fd = os.dup(0)  # not inheritable
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)

    worker = Worker(sandbox, threshold)
    inbox = Inbox(request_fd)
    call, dumps, pending = worker.call, pickle.dumps, inbox.pending
    try:
        while True:
            if not pending:
                if inbox.dropped:
                    write_frame(result_fd, dumps((None,) * 10 + (None, inbox.take_dropped()),
                                                 PROTOCOL))
                if inbox.ended or not inbox.fill(wait=True):
                    return 0
                continue
            reply = call(*pending.popleft())
            inbox.fill(wait=False)
            write_frame(result_fd, dumps((*reply, pending[0][0] if pending else None,
                                          inbox.take_dropped()), PROTOCOL))
    except BrokenPipeError:
        return 0  # the pool is gone


if __name__ == "__main__":
    sys.exit(main())
