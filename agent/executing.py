"""Fork launch of units: one process group per unit, started and reaped by launchers.

RP's POPEN executor (``agent/executing/popen.py``) without its watcher thread,
split over processes: the agent's loop calls ``launch``, which hands the unit to
the launcher process of its first core (:mod:`.launcher`, a child of the agent)
and returns at once; the launcher creates the unit's sandbox and output files,
spawns it and, when it ends, reads the tails of its output and reports it.  The
loop polls the launchers' report pipes (``filenos()``) and calls ``reap``.  So the
starts of units (the ``vfork``/``exec`` a parent waits for) and their per-unit
file work run on every core, beside the loop, instead of inside it.

Short units of one core also queue behind the unit that runs on their core
(``queue_many``, as deep as :func:`.queueing.queue_depth` says): the launcher
starts the next one the moment it reaps the one before, and the agent learns of
it with that unit's end (its ``successor``, which takes over its slots).  So a
core does not idle while a unit's end travels to the agent's loop and the next
unit's start travels back.  When a core is free while units wait behind one that
has run long (a unit's length is known only at its end), the loop takes them back
(``withdraw_stranded``, then ``take_withdrawn``) to place them anew.

A unit's command follows RP 0.50's rule (:mod:`.arguments`): the executable goes
on one bash command line as it is, and each argument in double quotes (``$VAR``
expands, spaces stay inside it) unless it is empty (dropped), a redirection or
control operator, a glob, or wrapped in single quotes (then it passes as it is).
When that line means the same as the argv exec'd without a shell and there are no
``pre_exec``/``post_exec`` lines, the argv is exec'd directly
(:func:`.arguments.direct_argv`), which saves starting a shell.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .arguments import command_line, direct_argv
from .launch_methods import LaunchError, LaunchMethods
from .launcher import Ended, FrameReader, Run, Signal, Withdraw, frame, make_sandbox
from .output import MAX_IO_LOGLENGTH, SHORTENED, tail
from .queueing import LONG_UNIT, moving_mean, queue_depth
from .scheduler import Slots

logger = logging.getLogger(__name__)

__all__ = ["Finished", "ForkExecutor", "tail", "MAX_IO_LOGLENGTH", "SHORTENED", "KILL_GRACE"]

KILL_GRACE = 1.0
"""Seconds between SIGTERM and SIGKILL when a unit is canceled."""

_CLOSE_WAIT = 5.0   # seconds a launcher has to end its units and exit once closed
_RETRY = 0.01       # seconds until requests a launcher's full pipe refused are retried


@dataclass
class Finished:
    """A unit whose process ended (or never started).

    ``exit_code`` is the process's return code: negative for a signal
    (``-signum``), 127 when the executable was not found, 126 when it could
    not be executed.  ``stdout``/``stderr`` are the last ``MAX_IO_LOGLENGTH``
    characters of the unit's output files.  ``started``/``stopped`` are
    ``time.time()`` stamps.  ``sandbox`` is the unit's working directory.
    ``slots`` is None for a unit that ended while queued (it held none).
    ``successor`` is the queued unit that took over ``slots`` as this one ended:
    it runs now, and the slots are not free; None when they are.
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
    successor: str | None = None


class _Lane:
    """One core that runs a unit of one core (since ``since``, monotonic: when the
    agent sent it or learned that it started), with the units queued behind it in
    the order its launcher starts them."""

    __slots__ = ("since", "line")

    def __init__(self) -> None:
        self.since = time.monotonic()
        self.line: collections.deque[str] = collections.deque()


class _Launcher:
    """The agent's end of one launcher process: its two pipes, its units and its lanes
    (by name)."""

    __slots__ = ("index", "proc", "req_fd", "rep_fd", "reader", "unsent", "uids", "lanes")

    def __init__(self, index: int, proc: subprocess.Popen, req_fd: int, rep_fd: int) -> None:
        self.index = index
        self.proc = proc
        self.req_fd = req_fd
        self.rep_fd = rep_fd
        self.reader = FrameReader()
        self.unsent = b""          # requests its full pipe did not take yet
        self.uids: set[str] = set()
        self.lanes: dict[str, _Lane] = {}


class _Running:
    # paths as str: they are only handed to the OS, and pathlib costs per unit;
    # ``slots`` is None while the unit is queued in its ``lane``, and ``unit`` is
    # then what ``queue_many`` got (to give it back unstarted)
    __slots__ = ("launcher", "slots", "sandbox", "kill_at", "lane", "unit")

    def __init__(self, launcher: _Launcher, slots: Slots | None, sandbox: str,
                 lane: str | None, unit: Mapping[str, Any] | None = None) -> None:
        self.launcher = launcher
        self.slots = slots
        self.sandbox = sandbox
        self.kill_at: float | None = None  # monotonic SIGKILL deadline once canceled
        self.lane = lane
        self.unit = unit


class ForkExecutor:
    """Starts units as local processes, through launcher processes, and collects them.

    ``pilot_sandbox`` holds the unit sandboxes; ``base_env`` (for example
    ``RP_SESSION_ID``, ``RP_PILOT_ID``) is added to every unit's environment.
    ``launchers`` is how many launcher processes start units (one per core of the
    agent's node): a unit goes to the one of its first core, so that units on
    different cores start in parallel.  They are started on first use, as children
    of this process, and end when ``kill_all`` closes them or this process dies.

    One loop drives it (``launch``, ``reap``, ``cancel``, ``kill_all``), from one
    thread; it polls ``filenos()`` and calls ``reap`` when one is readable.
    ``launch`` never waits for the unit's start; ``reap`` pays for the units that
    ended, not for all that run.  ``launch`` chooses the launch method per unit
    (``mpirun``, ``srun``...); without it, or when both methods fork, a unit's
    command is exec'd as it is.
    """

    def __init__(self, pilot_sandbox: Path | str, base_env: Mapping[str, str] | None = None,
                 kill_grace: float = KILL_GRACE, launch: LaunchMethods | None = None,
                 launchers: int = 1, python: str = sys.executable) -> None:
        if launchers < 1:
            raise ValueError(f"an executor needs at least one launcher, got {launchers}")
        self.pilot_sandbox = Path(pilot_sandbox)
        self._root = str(self.pilot_sandbox)
        # None or all-fork: units are exec'd as they are, at no extra cost
        self._launch = None if launch is None or launch.trivial else launch
        self.base_env = dict(base_env or {})
        self.kill_grace = kill_grace
        self.python = python
        self._env = {**os.environ, **self.base_env}   # the launchers' environment
        self._launchers: list[_Launcher | None] = [None] * launchers
        self._by_fd: dict[int, _Launcher] = {}
        self._fds: list[int] = []
        self._poll = select.poll()
        self._running: dict[str, _Running] = {}
        self._canceling: set[str] = set()   # sent SIGTERM, their SIGKILL is still due
        self._done: list[Finished] = []     # ended, not yet handed out by reap
        self._mean: float | None = None     # moving mean duration of short units (s)
        self._queued = 0                    # units in the lanes' lines
        self._withdrawing: set[str] = set()  # asked back from their launcher
        self._given_back: list[Mapping[str, Any]] = []   # ... and given back

    @property
    def running(self) -> int:
        """How many units were launched or queued and have not been reported ended yet."""
        return len(self._running)

    def running_uids(self) -> list[str]:
        """The units launched or queued and not reported ended yet."""
        return list(self._running)

    @property
    def queued(self) -> int:
        """How many units wait in line behind a unit that runs on their core."""
        return self._queued

    @property
    def mean_duration(self) -> float | None:
        """The moving mean duration in seconds of the recent units of one core
        without GPUs that ran through a launcher; None before one ended."""
        return self._mean

    @property
    def depth(self) -> int:
        """How many queued units a core that runs a short unit may hold now
        (:func:`.queueing.queue_depth` of ``mean_duration``)."""
        return queue_depth(self._mean)

    def filenos(self) -> list[int]:
        """The launchers' report pipes, to poll for readability before ``reap``.

        The list changes when a launcher starts or ends; it is rebuilt, not mutated.
        """
        return self._fds

    @property
    def reap_timeout(self) -> float | None:
        """Seconds until ``reap`` must run again (to escalate a cancel to SIGKILL,
        or to hand requests to a launcher whose pipe was full).

        0 when a result is already waiting, None when only the report pipes matter.
        """
        if self._done:
            return 0.0
        timeout = None
        if any(la is not None and la.unsent for la in self._launchers):
            timeout = _RETRY
        if self._canceling:
            deadline = min(self._running[uid].kill_at for uid in self._canceling)
            wait = max(0.0, deadline - time.monotonic())
            timeout = wait if timeout is None else min(timeout, wait)
        return timeout

    # -- launch ---------------------------------------------------------------

    def sandbox_of(self, unit: Mapping[str, Any]) -> Path:
        """The unit's sandbox: its description's ``sandbox`` (relative to the
        pilot sandbox) or ``<pilot_sandbox>/<uid>``."""
        sandbox = (unit.get("description") or {}).get("sandbox")
        return self.pilot_sandbox / (sandbox or unit["uid"])

    def launch(self, unit: Mapping[str, Any], slots: Slots) -> None:
        """Start ``unit`` (``{"uid": ..., "description": {...}}``) on ``slots``.

        Never blocks on the unit and never raises for a bad unit: a failure to
        start is written to the unit's stderr file and reported by ``reap()``.
        """
        try:
            self._start(unit, slots)
        except Exception as exc:  # the loop must survive anything a unit holds
            logger.exception("unit %s: cannot launch", unit["uid"])
            now = time.time()
            self._done.append(Finished(unit["uid"], 1, "", f"rp_executor: cannot launch: "
                                       f"{exc}\n", False, slots, now, now))

    def _start(self, unit: Mapping[str, Any], slots: Slots) -> None:
        descr = unit.get("description") or {}
        method = self._launch.for_unit(descr) if self._launch is not None else None
        run = self._request(unit["uid"], descr, slots, method)
        if run is None:
            return
        launcher = self._launcher_for(slots)
        lane = None
        if method is None and len(slots.nodes) == 1 and len(slots.nodes[0].cores) == 1 \
                and not slots.nodes[0].gpus:
            # one core: units may queue behind it (queue_many); but ``launch`` starts
            # at once, so not in a lane that runs a unit (slots given twice)
            lane = f"{slots.nodes[0].node}:{slots.nodes[0].cores[0]}"
            if lane in launcher.lanes:
                lane = None
            else:
                run = run._replace(lane=lane)
                launcher.lanes[lane] = _Lane()
        self._running[run.uid] = _Running(launcher, slots, run.sandbox, lane)
        launcher.uids.add(run.uid)
        self._send(launcher, frame([run]))
        logger.debug("unit %s: to launcher %d: %s", run.uid, launcher.index, run.argv)

    def _request(self, uid: str, descr: Mapping[str, Any], slots: Slots | None,
                 method: Any) -> Run | None:
        """The launcher's request for a unit (``slots`` None: queued, one core, no
        GPU), or None when it cannot start: then it is done already (``_fail``)."""
        # pathlib's normalization only where a description names the sandbox
        sandbox = str(self.pilot_sandbox / descr["sandbox"]) if descr.get("sandbox") \
            else f"{self._root}/{uid}"
        out = f"{sandbox}/{descr.get('stdout') or 'STDOUT'}"
        err = f"{sandbox}/{descr.get('stderr') or 'STDERR'}"
        try:
            argv, script = self._command(uid, descr, sandbox)
            env = self._environment(uid, descr, sandbox, slots)
        except (TypeError, ValueError, AttributeError) as exc:
            logger.warning("unit %s: invalid description: %s", uid, exc)
            self._fail(uid, f"rp_executor: invalid unit description: {exc}", slots,
                       sandbox, out, err)
            return None
        if method is not None:
            try:
                make_sandbox(sandbox)   # the method may write files there
                full = {**self._env, **env}
                argv = method.command(argv, descr, slots, full, Path(sandbox))
            except (LaunchError, OSError) as exc:
                logger.warning("unit %s: cannot launch with %s: %s", uid, method.name, exc)
                self._fail(uid, f"rp_executor: cannot launch with {method.name}: {exc}",
                           slots, sandbox, out, err)
                return None
            env = {k: v for k, v in full.items() if self._env.get(k) != v}
        return Run(uid, argv, sandbox, out, err, env, script)

    # -- queue ----------------------------------------------------------------

    def queue_room(self, depth: int | None = None) -> int:
        """How many units ``queue_many`` would take now, at most."""
        open_, depth = self._open(depth)
        return sum(depth - len(lane.line) for _, _, lane in open_)

    def _open(self, depth: int | None) -> tuple[list[tuple[_Launcher, str, _Lane]], int]:
        """The lanes that may take queued units, and the depth: holding fewer than
        ``depth``.  Without a ``depth`` given, the policy's (``queue_depth``), and only
        behind a unit that has not run ``LONG_UNIT`` yet (a long one among short ones
        would strand what waits behind it)."""
        since = None
        if depth is None:
            depth = queue_depth(self._mean)
            since = time.monotonic() - LONG_UNIT
        if not depth:
            return [], 0
        return [(launcher, name, lane) for launcher in self._launchers if launcher is not None
                for name, lane in launcher.lanes.items()
                if len(lane.line) < depth and (since is None or lane.since > since)], depth

    def queue_many(self, units: list[Mapping[str, Any]], depth: int | None = None) -> int:
        """Queue units of one core without GPUs behind the units of one core that run
        now; returns how many were taken: the first ones of ``units``, possibly none.

        ``units`` are as for ``launch``, in the order they should start; the first
        one that a launch method other than a plain fork would start ends the queue.
        A core holds ``depth`` queued units at most (by default the policy's: only
        while the mean unit is short, see :func:`.queueing.queue_depth` and
        ``_open``); the cores with the fewest queued units get the next ones.  The
        launcher starts a queued unit the moment the one before it ends; ``reap``
        hands out that one with the queued unit as its ``successor``.  A unit that
        cannot start is done at once, as with ``launch``.
        """
        open_, depth = self._open(depth)
        if not open_ or not units:
            return 0
        plan: list[tuple[_Launcher, str, _Lane]] = []
        level = min(len(lane.line) for _, _, lane in open_)
        count = len(units)
        while len(plan) < count and level < depth:
            plan += [o for o in open_ if len(o[2].line) <= level][:count - len(plan)]
            level += 1
        frames: dict[_Launcher, list[Run]] = {}
        taken = 0
        for unit, (launcher, name, lane) in zip(units, plan):
            descr = unit.get("description") or {}
            if self._launch is not None and self._launch.for_unit(descr) is not None:
                break
            taken += 1
            run = self._request(unit["uid"], descr, None, None)
            if run is None:
                continue
            self._running[run.uid] = _Running(launcher, None, run.sandbox, name, unit)
            launcher.uids.add(run.uid)
            lane.line.append(run.uid)
            self._queued += 1
            frames.setdefault(launcher, []).append(run._replace(lane=name))
        for launcher, runs in frames.items():
            self._send(launcher, frame(runs))
        return taken

    def withdraw_stranded(self) -> int:
        """Ask back the queued units that wait behind a unit which has run
        ``LONG_UNIT`` or longer (for a core that is free now); how many were asked.

        A unit its launcher still holds comes back unstarted from ``take_withdrawn``
        after a later ``reap``; one that started meanwhile runs as queued.
        """
        since = time.monotonic() - LONG_UNIT
        asked = 0
        for launcher in self._launchers:
            if launcher is None:
                continue
            requests = [Withdraw(uid) for lane in launcher.lanes.values()
                        if lane.line and lane.since <= since
                        for uid in lane.line if uid not in self._withdrawing]
            if requests:
                self._withdrawing.update(r.uid for r in requests)
                self._send(launcher, frame(requests))
                asked += len(requests)
        if asked:
            logger.debug("asking back %d queued unit(s) that wait behind long ones", asked)
        return asked

    def take_withdrawn(self) -> list[Mapping[str, Any]]:
        """The units given back unstarted since the last call (as ``queue_many`` got
        them), in the order they were queued in each lane; they hold no slots."""
        back, self._given_back = self._given_back, []
        return back

    def _fail(self, uid: str, msg: str, slots: Slots | None, sandbox: str, out: str,
              err: str) -> None:
        """A unit that cannot start: ``msg`` goes into its stderr file, as the
        launcher's own failures do."""
        try:
            make_sandbox(sandbox)
            with open(out, "ab"):
                pass
            with open(err, "a", encoding="utf-8") as f:
                f.write(msg + "\n")
        except OSError as exc:
            logger.warning("unit %s: cannot write %s: %s", uid, err, exc)
        now = time.time()
        self._done.append(Finished(uid, 1, tail(out, "stdout"), msg + "\n", False,
                                   slots, now, now, Path(sandbox)))

    def _command(self, uid: str, descr: Mapping[str, Any], sandbox: str
                 ) -> tuple[list[str], str | None]:
        """The unit's argv, and the text of its script when it needs a shell."""
        exe = descr.get("executable")
        if not exe or not isinstance(exe, str):
            raise ValueError(f"'executable' must be a non-empty string, got {exe!r}")
        args = list(descr.get("arguments") or [])
        pre = list(descr.get("pre_exec") or [])
        post = list(descr.get("post_exec") or [])
        if not pre and not post and (argv := direct_argv(exe, args)) is not None:
            return argv, None
        return ["/bin/bash", f"{sandbox}/{uid}.sh"], _script(sandbox, exe, args, pre, post)

    def _environment(self, uid: str, descr: Mapping[str, Any], sandbox: str,
                     slots: Slots | None) -> dict[str, str]:
        """What the unit's environment adds to the launchers' (``base_env`` and the
        agent's own)."""
        env = {"RP_UNIT_ID": uid}
        if descr.get("name"):
            env["RP_UNIT_NAME"] = str(descr["name"])
        env["RP_UNIT_SANDBOX"] = sandbox
        env["OMP_NUM_THREADS"] = str(descr.get("cpu_threads") or 1)
        gpus = slots.gpu_indices if slots is not None else None
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = _visible_devices(
                gpus, self._env.get("CUDA_VISIBLE_DEVICES"))
        extra = descr.get("environment")
        if extra:
            env.update({str(k): str(v) for k, v in extra.items()})
        return env

    # -- launchers ------------------------------------------------------------

    def _launcher_for(self, slots: Slots) -> _Launcher:
        index = slots.nodes[0].cores[0] % len(self._launchers) if slots.nodes and \
            slots.nodes[0].cores else 0
        launcher = self._launchers[index]
        if launcher is None:
            launcher = self._launchers[index] = self._start_launcher(index)
        return launcher

    def _start_launcher(self, index: int) -> _Launcher:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        argv = [self.python, "-m", "rp_executor.agent.launcher", self._root,
                repr(self.kill_grace)]
        try:
            # its own session: a signal to the agent's group is the agent's to handle
            proc = subprocess.Popen(argv, stdin=req_r, stdout=rep_w, env=self._env,
                                    start_new_session=True)
        except OSError:
            os.close(req_w)
            os.close(rep_r)
            raise
        finally:
            os.close(req_r)
            os.close(rep_w)
        os.set_blocking(req_w, False)
        os.set_blocking(rep_r, False)
        launcher = _Launcher(index, proc, req_w, rep_r)
        self._by_fd[rep_r] = launcher
        self._poll.register(rep_r, select.POLLIN)
        self._fds = list(self._by_fd)
        logger.debug("launcher %d started (pid %d)", index, proc.pid)
        return launcher

    def _send(self, launcher: _Launcher, data: bytes) -> None:
        """Hand ``data`` to the launcher; what its full pipe refuses waits for
        ``reap`` (the loop does not block on a launcher)."""
        if launcher.unsent:
            launcher.unsent += data
            return
        try:
            sent = os.write(launcher.req_fd, data)
        except BlockingIOError:
            sent = 0
        except BrokenPipeError:
            return   # it died: its report pipe's end tells reap
        if sent < len(data):
            launcher.unsent = data[sent:]

    def _resend(self) -> None:
        for launcher in self._launchers:
            if launcher is not None and launcher.unsent:
                data, launcher.unsent = launcher.unsent, b""
                self._send(launcher, data)

    def _collect(self, timeout: float = 0.0) -> None:
        """Read the launchers' reports (waiting up to ``timeout`` seconds for one)."""
        if not self._by_fd:
            return
        for fd, _ in self._poll.poll(timeout * 1000):
            launcher = self._by_fd[fd]
            try:
                data = os.read(fd, 1 << 18)
            except BlockingIOError:
                continue
            if not data:
                self._lost(launcher)
                continue
            for record in launcher.reader.feed(data):
                if len(record) == 1:
                    self._withdrawn(record[0])
                else:
                    self._ended(Ended._make(record))

    def _withdrawn(self, uid: str) -> None:
        """A queued unit its launcher gave back unstarted: it leaves its line, and
        goes back to the agent, or ends canceled when it was canceled meanwhile."""
        run = self._running.pop(uid)
        run.launcher.uids.discard(uid)
        run.launcher.lanes[run.lane].line.remove(uid)
        self._queued -= 1
        self._withdrawing.discard(uid)
        if run.kill_at is not None:   # canceled meanwhile: it ends so
            self._canceling.discard(uid)
            now = time.time()
            self._done.append(Finished(uid, -signal.SIGTERM, "", "", True, None, now, now,
                                       Path(run.sandbox)))
        else:
            self._given_back.append(run.unit)

    def _ended(self, end: Ended) -> None:
        run = self._running.pop(end.uid, None)
        if run is None:
            logger.warning("unit %s: reported ended, but it is not running here", end.uid)
            return
        run.launcher.uids.discard(end.uid)
        self._canceling.discard(end.uid)
        if end.exit_code and end.stderr.startswith("rp_executor: "):   # did not start
            logger.info("unit %s: %s", end.uid, end.stderr[13:].rstrip())
        successor = None
        if run.lane is not None:
            successor = self._lane_ended(run, end)
        self._done.append(Finished(end.uid, end.exit_code, end.stdout, end.stderr,
                                   end.canceled, run.slots, end.started, end.stopped,
                                   Path(run.sandbox), successor))

    def _lane_ended(self, run: _Running, end: Ended) -> str | None:
        """Follow the launcher's line: the unit queued next in the lane of ``run``,
        which ended, runs now on its slots (its uid is returned); a queued unit that
        ended (canceled) just leaves the line."""
        lanes = run.launcher.lanes
        lane = lanes[run.lane]
        if run.slots is None:
            lane.line.remove(end.uid)
            self._queued -= 1
            self._withdrawing.discard(end.uid)
            return None
        self._mean = moving_mean(self._mean, end.stopped - end.started)
        if not lane.line:
            del lanes[run.lane]
            return None
        successor = lane.line.popleft()
        self._queued -= 1
        self._withdrawing.discard(successor)
        lane.since = time.monotonic()
        nxt = self._running[successor]
        nxt.slots, nxt.unit = run.slots, None
        return successor

    def _lost(self, launcher: _Launcher) -> None:
        """Close a launcher and wait for its end; units it did not report end FAILED
        (it was killed, or did not end them in time), and the next unit for its
        cores starts a new one."""
        self._close(launcher)
        try:
            code = launcher.proc.wait(_CLOSE_WAIT)
        except subprocess.TimeoutExpired:
            launcher.proc.kill()
            code = launcher.proc.wait()
        for lane in launcher.lanes.values():
            self._queued -= len(lane.line)
            self._withdrawing.difference_update(lane.line)
        launcher.lanes.clear()
        if not launcher.uids:
            return
        logger.error("launcher %d (pid %d) ended with %s before it reported %d unit(s)",
                     launcher.index, launcher.proc.pid, code, len(launcher.uids))
        now = time.time()
        for uid in sorted(launcher.uids):
            run = self._running.pop(uid)
            self._canceling.discard(uid)
            why = "before the unit's end was known; its processes may still run" \
                if run.slots is not None else "before the unit started"
            self._done.append(Finished(
                uid, 1, "", f"rp_executor: the launcher of the unit ended (exit code {code}) "
                f"{why}\n", run.kill_at is not None, run.slots, now, now, Path(run.sandbox)))
        launcher.uids.clear()

    def _close(self, launcher: _Launcher) -> None:
        """Forget a launcher and close its pipes (it ends its units and exits)."""
        if self._launchers[launcher.index] is launcher:
            self._launchers[launcher.index] = None
        if self._by_fd.pop(launcher.rep_fd, None) is not None:
            self._poll.unregister(launcher.rep_fd)
            self._fds = list(self._by_fd)
            os.close(launcher.req_fd)
            os.close(launcher.rep_fd)

    # -- collect --------------------------------------------------------------

    def reap(self) -> list[Finished]:
        """Units that ended since the last call; never blocks.

        Also sends SIGKILL to canceled units still alive ``kill_grace`` seconds
        after their SIGTERM.
        """
        self._collect()
        if self._canceling:
            now = time.monotonic()
            for uid in [u for u in self._canceling if now >= self._running[u].kill_at]:
                logger.info("unit %s: still alive %.1fs after SIGTERM, sending SIGKILL",
                            uid, self.kill_grace)
                run = self._running[uid]
                self._send(run.launcher, frame([Signal(uid, int(signal.SIGKILL))]))
                self._canceling.discard(uid)   # its end comes with its report
        self._resend()
        done, self._done = self._done, []
        return done

    def cancel(self, uid: str) -> bool:
        """Terminate the unit's process group (SIGTERM, SIGKILL after the grace).

        Returns False if the unit is not running (unknown, or reported ended: it
        is then handed out by ``reap`` as it ended).  A unit that ended while the
        request was on its way is reported as it ended, too; one that the signal
        reaches shows up in ``reap()`` with ``canceled=True``.
        """
        if uid not in self._running:
            return False
        self._collect()
        run = self._running.get(uid)
        if run is None:
            return False
        if run.kill_at is None:
            run.kill_at = time.monotonic() + self.kill_grace
            self._canceling.add(uid)
            logger.debug("unit %s: canceling (SIGTERM to its group)", uid)
            self._send(run.launcher, frame([Signal(uid, int(signal.SIGTERM))]))
        return True

    def kill_all(self) -> list[Finished]:
        """End every unit's process group, collect them all and close the launchers
        (for shutdown; a later ``launch`` starts new ones).

        Sends SIGTERM, waits up to ``kill_grace`` seconds, then SIGKILL.
        Returns the results not yet reported; the units that were still
        running or queued, and those given back and not taken, are ``canceled``.
        """
        # the last first: a queued unit leaves its line before the one it waits for ends
        for uid in reversed(list(self._running)):
            self.cancel(uid)  # a unit that already ended is reported as it ended
        self._wait_running(time.monotonic() + self.kill_grace)
        for uid, run in list(self._running.items()):
            self._send(run.launcher, frame([Signal(uid, int(signal.SIGKILL))]))
        self._canceling.clear()
        self._wait_running(time.monotonic() + _CLOSE_WAIT)
        for launcher in [la for la in self._launchers if la is not None]:
            self._lost(launcher)   # closed: it ends what is left of its units and exits
        now = time.time()
        for unit in self.take_withdrawn():
            self._done.append(Finished(unit["uid"], -signal.SIGTERM, "", "", True, None, now,
                                       now))
        done, self._done = self._done, []
        return done

    def _wait_running(self, deadline: float) -> None:
        while self._running and (left := deadline - time.monotonic()) > 0:
            self._resend()
            self._collect(min(left, 0.05))


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
