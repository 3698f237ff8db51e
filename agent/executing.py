"""Fork launch of units: one process group per unit, collected by polling.

RP's POPEN executor (``agent/executing/popen.py``) without its watcher thread:
the agent's loop calls ``launch`` and, when SIGCHLD (or ``reap_timeout``) wakes
it, ``reap``.  A unit's command follows RP's semantics: the executable and its
arguments are shell text on one command line.  When nothing in them is special
to the shell and there are no ``pre_exec``/``post_exec`` lines, the argv is
exec'd directly, which gives the same result without starting a shell.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import re
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Callable

from .launch_methods import LaunchError, LaunchMethods
from .scheduler import Slots

logger = logging.getLogger(__name__)

__all__ = ["Finished", "ForkExecutor", "tail", "MAX_IO_LOGLENGTH", "KILL_GRACE"]

MAX_IO_LOGLENGTH = 1024
"""How many characters of a unit's stdout/stderr are reported (RP's value)."""

KILL_GRACE = 1.0
"""Seconds between SIGTERM and SIGKILL when a unit is canceled."""

SHORTENED = "[... CONTENT SHORTENED ...]\n"

# Words the shell would treat differently from a program of that name; these
# executables always go through bash.
_SHELL_WORDS = frozenset(
    "alias bg bind break builtin caller case cd command compgen complete continue coproc "
    "declare dirs disown do done elif else enable esac eval exec exit export fc fg fi for "
    "function getopts hash help history if in jobs let local logout mapfile popd pushd read "
    "readarray readonly return select set shift shopt source suspend then time times trap "
    "type typeset ulimit umask unalias unset until wait while".split()
)
_PLAIN = re.compile(r"[A-Za-z0-9_\-+=.,/:@%^]+")


@dataclass
class Finished:
    """A unit whose process ended (or never started).

    ``exit_code`` is the process's return code: negative for a signal
    (``-signum``), 127 when the executable was not found, 126 when it could
    not be executed.  ``stdout``/``stderr`` are the last ``MAX_IO_LOGLENGTH``
    characters of the unit's output files.  ``started``/``stopped`` are
    ``time.time()`` stamps.  ``sandbox`` is the unit's working directory.
    """

    uid: str
    exit_code: int
    stdout: str
    stderr: str
    canceled: bool
    slots: Slots
    started: float
    stopped: float
    sandbox: Path | None = None


class _Running:
    __slots__ = ("proc", "slots", "started", "sandbox", "out", "err", "kill_at")

    def __init__(self, proc: subprocess.Popen, slots: Slots, started: float,
                 sandbox: Path, out: Path, err: Path) -> None:
        self.proc = proc
        self.slots = slots
        self.started = started
        self.sandbox = sandbox
        self.out = out
        self.err = err
        self.kill_at: float | None = None  # monotonic deadline once canceled


class ForkExecutor:
    """Starts units as local child processes and collects them without blocking.

    ``pilot_sandbox`` holds the unit sandboxes; ``base_env`` (for example
    ``RP_SESSION_ID``, ``RP_PILOT_ID``) is added to every unit's environment.

    One loop drives it (``launch``, ``reap``, ``cancel``, ``kill_all``). Starting a
    process (sandbox, output files, fork and exec) takes most of a unit's cost and
    ``fork_exec`` releases the GIL, so ``launchers`` threads (a fixed number, not one
    per unit) do it in parallel; ``wake`` is called when a launch failed, so that the
    loop reaps the failure (a started process wakes it with SIGCHLD). ``launch``
    chooses the launch method per unit (``mpirun``, ``srun``...); without it, or
    when both methods fork, a unit's command is exec'd as it is.
    """

    def __init__(self, pilot_sandbox: Path | str, base_env: Mapping[str, str] | None = None,
                 kill_grace: float = KILL_GRACE, launchers: int = 2,
                 wake: Callable[[], None] | None = None,
                 launch: LaunchMethods | None = None) -> None:
        self.pilot_sandbox = Path(pilot_sandbox)
        # None or all-fork: units are exec'd as they are, at no extra cost
        self._launch = None if launch is None or launch.trivial else launch
        self.base_env = dict(base_env or {})
        self.kill_grace = kill_grace
        self._env = {**os.environ, **self.base_env}   # decoded once, copied per unit
        self._running: dict[str, _Running] = {}
        self._failed: list[Finished] = []
        self._starting: set[str] = set()      # handed to a launcher, not started yet
        self._cancel_early: set[str] = set()  # canceled while starting
        self._lock = threading.Lock()
        self._wake = wake or (lambda: None)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._launchers = [threading.Thread(target=self._launch_loop, daemon=True,
                                            name=f"rp-launcher-{i}")
                           for i in range(max(1, launchers))]
        for thread in self._launchers:
            thread.start()

    @property
    def running(self) -> int:
        """How many units are starting or have a process not reaped yet."""
        return len(self._running) + len(self._starting)

    @property
    def reap_timeout(self) -> float | None:
        """Seconds until ``reap`` must run again to escalate a cancel to SIGKILL.

        0 when a result is already waiting, None when only SIGCHLD matters.
        """
        if self._failed:
            return 0.0
        deadlines = [r.kill_at for r in self._running.values() if r.kill_at is not None]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    # -- launch ---------------------------------------------------------------

    def sandbox_of(self, unit: Mapping[str, Any]) -> Path:
        """The unit's sandbox: its description's ``sandbox`` (relative to the
        pilot sandbox) or ``<pilot_sandbox>/<uid>``."""
        sandbox = (unit.get("description") or {}).get("sandbox")
        return self.pilot_sandbox / (sandbox or unit["uid"])

    def launch(self, unit: Mapping[str, Any], slots: Slots) -> None:
        """Start ``unit`` (``{"uid": ..., "description": {...}}``) on ``slots``.

        Never blocks on the unit and never raises for a bad unit: a failure to
        start is written to the unit's stderr file and reported by a later
        ``reap()``.
        """
        with self._lock:
            self._starting.add(unit["uid"])
        self._queue.put((unit, slots))

    def _launch_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._start(*item)
            except Exception:  # a launcher must survive anything a unit does
                logger.exception("launching %s failed", item[0].get("uid"))

    def _start(self, unit: Mapping[str, Any], slots: Slots) -> None:
        uid = unit["uid"]
        started = time.time()
        descr = unit.get("description") or {}
        sandbox = self.sandbox_of(unit)
        out = sandbox / (descr.get("stdout") or "STDOUT")
        err = sandbox / (descr.get("stderr") or "STDERR")
        try:
            sandbox.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            logger.warning("unit %s: cannot create sandbox %s: %s", uid, sandbox, exc)
            msg = f"rp_executor: cannot create unit sandbox '{sandbox}': {exc.strerror or exc}"
            self._failed_now(Finished(uid, 1, "", msg, False, slots, started, time.time(),
                                      sandbox))
            return
        try:
            argv = self._command(uid, descr, sandbox)
            env = self._environment(uid, descr, sandbox, slots)
        except (TypeError, ValueError, AttributeError) as exc:
            logger.warning("unit %s: invalid description: %s", uid, exc)
            self._fail(uid, 1, f"rp_executor: invalid unit description: {exc}", slots, started, sandbox, out, err)
            return
        method = self._launch.for_unit(descr) if self._launch is not None else None
        if method is not None:
            try:
                argv = method.command(argv, descr, slots, env, sandbox)
            except (LaunchError, OSError) as exc:
                logger.warning("unit %s: cannot launch with %s: %s", uid, method.name, exc)
                self._fail(uid, 1, f"rp_executor: cannot launch with {method.name}: {exc}",
                           slots, started, sandbox, out, err)
                return
        try:
            fout, ferr = open(out, "wb"), open(err, "wb")
        except OSError as exc:
            logger.warning("unit %s: cannot open output files: %s", uid, exc)
            msg = f"rp_executor: cannot open unit output file: {exc}"
            self._failed_now(Finished(uid, 1, "", msg, False, slots, started, time.time(),
                                      sandbox))
            return
        try:
            with fout, ferr:
                proc = subprocess.Popen(
                    argv, cwd=sandbox, env=env, stdin=subprocess.DEVNULL, stdout=fout,
                    stderr=ferr, start_new_session=True, close_fds=True,
                )
        except OSError as exc:
            code = 127 if exc.errno == errno.ENOENT else 126
            reason = exc.strerror or str(exc)
            logger.info("unit %s: cannot execute %r: %s", uid, argv[0], reason)
            self._fail(uid, code, f"rp_executor: cannot execute '{argv[0]}': {reason}",
                       slots, started, sandbox, out, err)
            return
        run = _Running(proc, slots, started, sandbox, out, err)
        with self._lock:
            self._starting.discard(uid)
            self._running[uid] = run
            canceled = uid in self._cancel_early
            self._cancel_early.discard(uid)
        logger.debug("unit %s: started pid %d: %s", uid, proc.pid, argv)
        if canceled:
            self._terminate(uid, run)
        else:
            self._wake()  # it may already have ended, its SIGCHLD seen before it was here

    def _failed_now(self, result: Finished) -> None:
        with self._lock:
            self._starting.discard(result.uid)
            self._cancel_early.discard(result.uid)
            self._failed.append(result)
        self._wake()

    def _fail(self, uid: str, code: int, msg: str, slots: Slots, started: float,
              sandbox: Path, out: Path, err: Path) -> None:
        try:
            out.touch()
            with open(err, "a", encoding="utf-8") as f:
                f.write(msg + "\n")
        except OSError as exc:
            logger.warning("unit %s: cannot write %s: %s", uid, err, exc)
        self._failed_now(Finished(uid, code, tail(out, "stdout"), msg + "\n", False,
                                  slots, started, time.time(), sandbox))

    def _command(self, uid: str, descr: Mapping[str, Any], sandbox: Path) -> list[str]:
        exe = descr.get("executable")
        if not exe or not isinstance(exe, str):
            raise ValueError(f"'executable' must be a non-empty string, got {exe!r}")
        args = [str(a) for a in descr.get("arguments") or []]
        pre = list(descr.get("pre_exec") or [])
        post = list(descr.get("post_exec") or [])
        if not pre and not post and _direct(exe, args):
            return [exe, *args]
        script = sandbox / f"{uid}.sh"
        script.write_text(_script(sandbox, exe, args, pre, post))
        return ["/bin/bash", str(script)]

    def _environment(self, uid: str, descr: Mapping[str, Any], sandbox: Path,
                     slots: Slots) -> dict[str, str]:
        env = dict(self._env)
        env["RP_UNIT_ID"] = uid
        if descr.get("name"):
            env["RP_UNIT_NAME"] = str(descr["name"])
        env["RP_UNIT_SANDBOX"] = str(sandbox)
        env["OMP_NUM_THREADS"] = str(descr.get("cpu_threads") or 1)
        gpus = slots.gpu_indices
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = _visible_devices(gpus, env.get("CUDA_VISIBLE_DEVICES"))
        env.update({str(k): str(v) for k, v in (descr.get("environment") or {}).items()})
        return env

    # -- collect --------------------------------------------------------------

    def reap(self) -> list[Finished]:
        """Units that ended since the last call; never blocks.

        Also sends SIGKILL to canceled units still alive ``kill_grace`` seconds
        after their SIGTERM.
        """
        with self._lock:
            done, self._failed = self._failed, []
            running = list(self._running.items())
        now = time.monotonic()
        for uid, run in running:
            rc = run.proc.poll()
            if rc is None:
                if run.kill_at is not None and now >= run.kill_at:
                    logger.info("unit %s: still alive %.1fs after SIGTERM, sending SIGKILL",
                                uid, self.kill_grace)
                    _killpg(run.proc.pid, signal.SIGKILL)
                continue
            done.append(self._finish(uid, rc))
        return done

    def _finish(self, uid: str, rc: int) -> Finished:
        with self._lock:
            run = self._running.pop(uid)
        canceled = run.kill_at is not None
        if canceled:
            # the group can outlive its leader (background children)
            _killpg(run.proc.pid, signal.SIGKILL)
        return Finished(uid, rc, tail(run.out, "stdout"), tail(run.err, "stderr"), canceled,
                        run.slots, run.started, time.time(), run.sandbox)

    def cancel(self, uid: str) -> bool:
        """Terminate the unit's process group (SIGTERM, SIGKILL after the grace).

        Returns False if the unit is not running (unknown, or its process has
        already ended: it is then reported by ``reap`` as it ended).  The unit
        shows up in ``reap()`` with ``canceled=True``; one still being started is
        terminated as soon as it has started.
        """
        with self._lock:
            if uid in self._starting:
                self._cancel_early.add(uid)
                return True
            run = self._running.get(uid)
        if run is None or run.proc.poll() is not None:
            return False
        self._terminate(uid, run)
        return True

    def _terminate(self, uid: str, run: _Running) -> None:
        if run.kill_at is None:
            run.kill_at = time.monotonic() + self.kill_grace
            logger.debug("unit %s: canceling (SIGTERM to group %d)", uid, run.proc.pid)
            _killpg(run.proc.pid, signal.SIGTERM)
        self._wake()  # so that the loop sets its timer for the SIGKILL

    def kill_all(self) -> list[Finished]:
        """End every unit's process group and reap them all (for shutdown).

        Stops the launchers, sends SIGTERM, waits up to ``kill_grace`` seconds, then
        SIGKILL. Returns the results not yet reported; the units that were still
        running are ``canceled``.
        """
        with self._lock:
            self._cancel_early.update(self._starting)
        for _ in self._launchers:
            self._queue.put(None)
        for thread in self._launchers:
            if thread is not threading.current_thread():
                thread.join()
        # units queued behind the stop markers never started: they failed to start
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                unit, slots = item
                now = time.time()
                self._failed_now(Finished(unit["uid"], 1, "", "rp_executor: not started",
                                          True, slots, now, now, None))
        for uid in list(self._running):
            self.cancel(uid)  # a unit that already ended is reported as it ended
        deadline = time.monotonic() + self.kill_grace
        while time.monotonic() < deadline and any(
            r.proc.poll() is None for r in self._running.values()
        ):
            time.sleep(0.02)
        for run in self._running.values():
            if run.proc.poll() is None:
                _killpg(run.proc.pid, signal.SIGKILL)
        with self._lock:
            done, self._failed = self._failed, []
        for uid, run in list(self._running.items()):
            done.append(self._finish(uid, run.proc.wait()))
        return done


def tail(path: Path, what: str = "stdout", limit: int = MAX_IO_LOGLENGTH) -> str:
    """The last ``limit`` characters of a UTF-8 text file, as RP reports them.

    Prefixed with ``"[... CONTENT SHORTENED ...]\\n"`` when cut; for a file that
    is not text (undecodable, or holding NUL bytes) the text
    ``"unit <what> is binary -- use file staging"``.  Reads only the end of
    the file.  A missing file gives ``""``.
    """
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - 4 * limit)  # a UTF-8 character is at most 4 bytes
            f.seek(start)
            data = f.read()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        logger.warning("cannot read %s: %s", path, exc)
        return ""
    if start:
        # skip the continuation bytes of a character cut by the window
        cut = 0
        while cut < 3 and cut < len(data) and 0x80 <= data[cut] <= 0xBF:
            cut += 1
        data = data[cut:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"unit {what} is binary -- use file staging"
    if "\x00" in text:
        return f"unit {what} is binary -- use file staging"
    if start or len(text) > limit:
        return SHORTENED + text[-limit:]
    return text


def _direct(exe: str, args: list[str]) -> bool:
    """Whether ``exe args`` means the same exec'd directly as on a shell line."""
    if "=" in exe or exe in _SHELL_WORDS or not _PLAIN.fullmatch(exe):
        return False
    return all(_PLAIN.fullmatch(a) for a in args)


def _guarded(kind: str, cmd: str) -> str:
    # braces keep `export`/`cd`/`source` in this shell; the newline ends a trailing comment
    msg = shlex.quote(f"{kind} failed: {cmd}")
    return f"{{\n{cmd}\n}} || {{ echo {msg} >&2; exit 1; }}\n"


def _script(sandbox: Path, exe: str, args: list[str], pre: list[str], post: list[str]) -> str:
    lines = ["#!/bin/bash\n", f"cd {shlex.quote(str(sandbox))} || exit 1\n"]
    lines += [_guarded("pre_exec", str(c)) for c in pre]
    lines.append(" ".join([exe, *args]) + "\n")
    lines.append("RETVAL=$?\n")
    lines += [_guarded("post_exec", str(c)) for c in post]
    lines.append("exit $RETVAL\n")
    return "".join(lines)


def _visible_devices(gpus: list[int], inherited: str | None) -> str:
    """Map node-local GPU indices through an inherited ``CUDA_VISIBLE_DEVICES``.

    A batch system that gives the block GPUs 2 and 3 sets
    ``CUDA_VISIBLE_DEVICES=2,3``; the unit's index 0 then means device 2.
    """
    visible = [v.strip() for v in (inherited or "").split(",") if v.strip()]
    if visible and max(gpus) < len(visible):
        return ",".join(visible[g] for g in gpus)
    return ",".join(str(g) for g in gpus)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # the group is already gone
    except PermissionError as exc:
        logger.warning("cannot signal process group %d: %s", pgid, exc)
