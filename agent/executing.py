"""Fork launch of units: one process group per unit, collected without blocking.

RP's POPEN executor (``agent/executing/popen.py``) without its watcher thread:
the agent's loop calls ``launch``, which starts the unit's process and returns
once it has exec'd, and, when SIGCHLD (or ``reap_timeout``) wakes it, ``reap``.
A unit's command follows RP 0.50's rule (:mod:`.arguments`): the executable goes
on one bash command line as it is, and each argument in double quotes (``$VAR``
expands, spaces stay inside it) unless it is empty (dropped), a redirection or
control operator, a glob, or wrapped in single quotes (then it passes as it is).
When that line means the same as the argv exec'd without a shell and there are no
``pre_exec``/``post_exec`` lines, the argv is exec'd directly
(:func:`.arguments.direct_argv`), which saves starting a shell.
"""

from __future__ import annotations

import errno
import logging
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .arguments import command_line, direct_argv
from .launch_methods import LaunchError, LaunchMethods
from .output import MAX_IO_LOGLENGTH, SHORTENED, tail
from .scheduler import Slots

logger = logging.getLogger(__name__)

__all__ = ["Finished", "ForkExecutor", "tail", "MAX_IO_LOGLENGTH", "SHORTENED", "KILL_GRACE"]

KILL_GRACE = 1.0
"""Seconds between SIGTERM and SIGKILL when a unit is canceled."""

# the units' output files: created, truncated, not inherited by other children
_OUTPUT_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
_devnull: int | None = None
# waitid(WNOWAIT) tells which child ended without reaping it (macOS only from 3.13)
_PEEK = hasattr(os, "waitid") and hasattr(os, "WNOWAIT")


def _stdin() -> int:
    """One read-only /dev/null for every unit's stdin, opened on first use.

    Popen's ``DEVNULL`` opens and closes it for every process.
    """
    global _devnull
    if _devnull is None:
        _devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _devnull


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
    # paths as str: they are only handed to the OS, and pathlib costs per unit
    __slots__ = ("proc", "slots", "started", "sandbox", "out", "err", "kill_at")

    def __init__(self, proc: subprocess.Popen, slots: Slots, started: float,
                 sandbox: str, out: str, err: str) -> None:
        self.proc = proc
        self.slots = slots
        self.started = started
        self.sandbox = sandbox
        self.out = out
        self.err = err
        self.kill_at: float | None = None  # monotonic SIGKILL deadline once canceled


class ForkExecutor:
    """Starts units as local child processes and collects them without blocking.

    ``pilot_sandbox`` holds the unit sandboxes; ``base_env`` (for example
    ``RP_SESSION_ID``, ``RP_PILOT_ID``) is added to every unit's environment.

    One loop drives it (``launch``, ``reap``, ``cancel``, ``kill_all``), from one
    thread.  ``launch`` starts the process itself and returns once the unit has
    exec'd (a vfork'd child: a fraction of a millisecond), never waiting for the
    unit's run; handing the start to threads cost more in hand-offs than it saved.
    ``reap`` pays for the units that ended, not for all that run.  ``launch``
    chooses the launch method per unit (``mpirun``, ``srun``...); without it, or
    when both methods fork, a unit's command is exec'd as it is.
    """

    def __init__(self, pilot_sandbox: Path | str, base_env: Mapping[str, str] | None = None,
                 kill_grace: float = KILL_GRACE, launch: LaunchMethods | None = None) -> None:
        self.pilot_sandbox = Path(pilot_sandbox)
        self._root = str(self.pilot_sandbox)
        # None or all-fork: units are exec'd as they are, at no extra cost
        self._launch = None if launch is None or launch.trivial else launch
        self.base_env = dict(base_env or {})
        self.kill_grace = kill_grace
        self._env = {**os.environ, **self.base_env}   # decoded once, copied per unit
        self._running: dict[str, _Running] = {}
        self._pids: dict[int, str] = {}   # of the running units
        self._canceling: set[str] = set()   # sent SIGTERM, their SIGKILL is still due
        self._exited: list[str] = []   # reaped by cancel's check, to report in reap
        self._failed: list[Finished] = []

    @property
    def running(self) -> int:
        """How many units have a process not reaped yet."""
        return len(self._running)

    def running_uids(self) -> list[str]:
        """The units that have a process not reaped yet."""
        return list(self._running)

    @property
    def reap_timeout(self) -> float | None:
        """Seconds until ``reap`` must run again to escalate a cancel to SIGKILL.

        0 when a result is already waiting, None when only SIGCHLD matters.
        """
        if self._failed or self._exited:
            return 0.0
        if not self._canceling:
            return None
        deadline = min(self._running[uid].kill_at for uid in self._canceling)
        return max(0.0, deadline - time.monotonic())

    # -- launch ---------------------------------------------------------------

    def sandbox_of(self, unit: Mapping[str, Any]) -> Path:
        """The unit's sandbox: its description's ``sandbox`` (relative to the
        pilot sandbox) or ``<pilot_sandbox>/<uid>``."""
        sandbox = (unit.get("description") or {}).get("sandbox")
        return self.pilot_sandbox / (sandbox or unit["uid"])

    def launch(self, unit: Mapping[str, Any], slots: Slots) -> None:
        """Start ``unit`` (``{"uid": ..., "description": {...}}``) on ``slots``.

        Never blocks on the unit's run and never raises for a bad unit: a
        failure to start is written to the unit's stderr file and reported by
        the next ``reap()`` (``reap_timeout`` is then 0).
        """
        started = time.time()
        try:
            self._start(unit, slots, started)
        except Exception as exc:  # the loop must survive anything a unit holds
            logger.exception("unit %s: cannot launch", unit["uid"])
            self._failed.append(Finished(unit["uid"], 1, "", f"rp_executor: cannot launch: "
                                         f"{exc}\n", False, slots, started, time.time()))

    def _start(self, unit: Mapping[str, Any], slots: Slots, started: float) -> None:
        uid = unit["uid"]
        descr = unit.get("description") or {}
        # pathlib's normalization only where a description names the sandbox
        sandbox = str(self.sandbox_of(unit)) if descr.get("sandbox") else f"{self._root}/{uid}"
        out = f"{sandbox}/{descr.get('stdout') or 'STDOUT'}"
        err = f"{sandbox}/{descr.get('stderr') or 'STDERR'}"
        try:
            _make_sandbox(sandbox)
        except OSError as exc:
            logger.warning("unit %s: cannot create sandbox %s: %s", uid, sandbox, exc)
            msg = f"rp_executor: cannot create unit sandbox '{sandbox}': {exc.strerror or exc}"
            self._failed.append(Finished(uid, 1, "", msg, False, slots, started, time.time(),
                                         Path(sandbox)))
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
                argv = method.command(argv, descr, slots, env, Path(sandbox))
            except (LaunchError, OSError) as exc:
                logger.warning("unit %s: cannot launch with %s: %s", uid, method.name, exc)
                self._fail(uid, 1, f"rp_executor: cannot launch with {method.name}: {exc}",
                           slots, started, sandbox, out, err)
                return
        try:
            fout = os.open(out, _OUTPUT_FLAGS, 0o666)
            try:
                ferr = os.open(err, _OUTPUT_FLAGS, 0o666)
            except OSError:
                os.close(fout)
                raise
        except OSError as exc:
            logger.warning("unit %s: cannot open output files: %s", uid, exc)
            msg = f"rp_executor: cannot open unit output file: {exc}"
            self._failed.append(Finished(uid, 1, "", msg, False, slots, started, time.time(),
                                         Path(sandbox)))
            return
        try:
            proc = subprocess.Popen(
                argv, cwd=sandbox, env=env, stdin=_stdin(), stdout=fout, stderr=ferr,
                start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            code = 127 if exc.errno == errno.ENOENT else 126
            reason = exc.strerror or str(exc)
            logger.info("unit %s: cannot execute %r: %s", uid, argv[0], reason)
            self._fail(uid, code, f"rp_executor: cannot execute '{argv[0]}': {reason}",
                       slots, started, sandbox, out, err)
            return
        except ValueError as exc:  # a NUL byte or an '=' in a name, which the OS cannot take
            logger.warning("unit %s: invalid description: %s", uid, exc)
            self._fail(uid, 1, f"rp_executor: invalid unit description: {exc}", slots,
                       started, sandbox, out, err)
            return
        finally:
            os.close(fout)
            os.close(ferr)
        self._running[uid] = _Running(proc, slots, started, sandbox, out, err)
        self._pids[proc.pid] = uid
        logger.debug("unit %s: started pid %d: %s", uid, proc.pid, argv)

    def _fail(self, uid: str, code: int, msg: str, slots: Slots, started: float,
              sandbox: str, out: str, err: str) -> None:
        try:
            with open(out, "ab"):
                pass
            with open(err, "a", encoding="utf-8") as f:
                f.write(msg + "\n")
        except OSError as exc:
            logger.warning("unit %s: cannot write %s: %s", uid, err, exc)
        self._failed.append(Finished(uid, code, tail(out, "stdout"), msg + "\n", False,
                                     slots, started, time.time(), Path(sandbox)))

    def _command(self, uid: str, descr: Mapping[str, Any], sandbox: str) -> list[str]:
        exe = descr.get("executable")
        if not exe or not isinstance(exe, str):
            raise ValueError(f"'executable' must be a non-empty string, got {exe!r}")
        args = list(descr.get("arguments") or [])
        pre = list(descr.get("pre_exec") or [])
        post = list(descr.get("post_exec") or [])
        if not pre and not post and (argv := direct_argv(exe, args)) is not None:
            return argv
        script = f"{sandbox}/{uid}.sh"
        with open(script, "w") as f:
            f.write(_script(sandbox, exe, args, pre, post))
        return ["/bin/bash", script]

    def _environment(self, uid: str, descr: Mapping[str, Any], sandbox: str,
                     slots: Slots) -> dict[str, str]:
        env = dict(self._env)
        env["RP_UNIT_ID"] = uid
        if descr.get("name"):
            env["RP_UNIT_NAME"] = str(descr["name"])
        env["RP_UNIT_SANDBOX"] = sandbox
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
        done, self._failed = self._failed, []
        done += [self._finish(uid, rc) for uid, rc in self._ended()]
        now = time.monotonic()
        for uid in [u for u in self._canceling if now >= self._running[u].kill_at]:
            logger.info("unit %s: still alive %.1fs after SIGTERM, sending SIGKILL",
                        uid, self.kill_grace)
            _killpg(self._running[uid].proc.pid, signal.SIGKILL)
            self._canceling.discard(uid)   # its end comes with SIGCHLD
        return done

    def _ended(self) -> list[tuple[str, int]]:
        """``(uid, exit code)`` of the units whose process has ended, reaped.

        Asks the kernel which child has ended (without reaping it) instead of
        asking every running unit, so that a pilot with many running units pays
        per unit that ended.  The agent has other children (function workers,
        staging tools), reaped by their owners: while one of those is a zombie,
        every unit is asked.
        """
        ended = {uid: self._running[uid].proc.returncode for uid in self._exited}
        self._exited = []
        while _PEEK:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:   # no child at all
                return list(ended.items())
            if info is None:
                return list(ended.items())
            uid = self._pids.get(info.si_pid)
            rc = None if uid is None else self._running[uid].proc.poll()
            if rc is None:
                break
            ended[uid] = rc
        for uid, run in self._running.items():
            if uid not in ended and (rc := run.proc.poll()) is not None:
                ended[uid] = rc
        return list(ended.items())

    def _finish(self, uid: str, rc: int) -> Finished:
        run = self._running.pop(uid)
        del self._pids[run.proc.pid]
        self._canceling.discard(uid)
        canceled = run.kill_at is not None
        if canceled or rc < 0:
            # the group can outlive its leader (background children, the command of a
            # shell killed in pre_exec): a canceled unit's does not, nor does one whose
            # leader a signal killed (the OOM killer, a user's kill)
            _killpg(run.proc.pid, signal.SIGKILL)
        return Finished(uid, rc, tail(run.out, "stdout"), tail(run.err, "stderr"), canceled,
                        run.slots, run.started, time.time(), Path(run.sandbox))

    def cancel(self, uid: str) -> bool:
        """Terminate the unit's process group (SIGTERM, SIGKILL after the grace).

        Returns False if the unit is not running (unknown, or its process has
        already ended: it is then reported by ``reap`` as it ended).  The unit
        shows up in ``reap()`` with ``canceled=True``.
        """
        run = self._running.get(uid)
        if run is None:
            return False
        if run.proc.poll() is not None:
            self._exited.append(uid)
            return False
        if run.kill_at is None:
            run.kill_at = time.monotonic() + self.kill_grace
            self._canceling.add(uid)
            logger.debug("unit %s: canceling (SIGTERM to group %d)", uid, run.proc.pid)
            _killpg(run.proc.pid, signal.SIGTERM)
        return True

    def kill_all(self) -> list[Finished]:
        """End every unit's process group and reap them all (for shutdown).

        Sends SIGTERM, waits up to ``kill_grace`` seconds, then SIGKILL.
        Returns the results not yet reported; the units that were still
        running are ``canceled``.
        """
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
        done, self._failed, self._exited = self._failed, [], []
        for uid, run in list(self._running.items()):
            done.append(self._finish(uid, run.proc.wait()))
        return done


def _make_sandbox(path: str) -> None:
    """Create a unit sandbox; one mkdir when the pilot sandbox is there."""
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)


def _guarded(kind: str, cmd: str) -> str:
    # braces keep `export`/`cd`/`source` in this shell; the newline ends a trailing comment
    msg = shlex.quote(f"{kind} failed: {cmd}")
    return f"{{\n{cmd}\n}} || {{ echo {msg} >&2; exit 1; }}\n"


def _script(sandbox: str, exe: str, args: list[Any], pre: list[str], post: list[str]) -> str:
    lines = ["#!/bin/bash\n", f"cd {shlex.quote(sandbox)} || exit 1\n"]
    lines += [_guarded("pre_exec", str(c)) for c in pre]
    lines.append(command_line(exe, args) + "\n")
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
