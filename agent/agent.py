"""The agent's loop: one process per pilot, single-threaded.

It connects back to the client (CURVE DEALER), reports its resources, then loops:
receive units and commands, place units on free slots, launch them, reap them when
SIGCHLD wakes the loop, and send the state updates of each loop iteration as one
batch. It ends on the client's cancel, when the pilot's runtime is reached, when the
client has been silent for longer than ``reconnect_grace``, or on SIGTERM; every unit
it holds ends first.

A client that dies is not the pilot's end: the agent carries on for the grace, keeps
what it reports in its :class:`~.outbox.Outbox`, and follows the client that
reattaches to the session (to the same address, or to the one it writes into
``client.json`` of the pilot sandbox), which then asks for what it missed.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import zmq

from rp_executor import states
from rp_executor._core import wire
# what a reattaching client writes into the pilot sandbox: its address and key
from rp_executor._core.sessiondir import CLIENT_FILE
from rp_executor.outcome import Ending, Outcome

from .config import AgentConfig
from .executing import Finished, ForkExecutor
from .function_pool import FuncResult, FunctionPool, pool_size
from .launch_methods import LaunchMethods
from .outbox import END_FILE, Outbox
from .queueing import LONG_UNIT
from .resource_manager import detect_cores, make_resource_manager
from .scheduler import Scheduler

log = logging.getLogger("rp_executor.agent")

_ARRIVED = (states.AGENT_STAGING_INPUT, states.AGENT_SCHEDULING_PENDING)
_STARTED = (states.AGENT_SCHEDULING, states.EXECUTING_PENDING, states.EXECUTING)
_QUEUED = (states.AGENT_SCHEDULING, states.EXECUTING_PENDING)
_RUNS = (states.EXECUTING,)
_ENDED = (states.AGENT_STAGING_OUTPUT_PENDING, states.AGENT_STAGING_OUTPUT)
_BATCH = 1024          # updates per frame at most
_BATCH_AGE = 0.005     # seconds an update may wait for others under load
_BACKLOG_AGE = 0.02    # ... and while units wait for cores (results come steadily)
_FAILURE_GRACE = 1.0   # seconds a failed unit of a batch job waits for the job's end
_LOOK_AFTER = 3        # heartbeats missed before the agent looks for a new client address


class Agent:
    """The agent of one pilot, configured by the 0600 file the client wrote."""

    # the loop's time and the [state, time] pairs made for it (see _step)
    _stamped: tuple[float | None, dict] = (None, {})

    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.pilot = cfg.pilot_id
        self.sandbox = Path(cfg.sandbox)
        self.rm = make_resource_manager(cfg)
        self.scheduler = Scheduler(self.rm.nodes)
        # one pipe wakes the loop: SIGCHLD writes to it, and so does the staging worker
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.executor = ForkExecutor(self.sandbox, {
            "RP_SESSION_ID": cfg.session_id, "RP_PILOT_ID": self.pilot,
            "RP_PILOT_SANDBOX": str(self.sandbox)}, launch=LaunchMethods.from_config(cfg),
            launchers=min(self.rm.nodes[0].cores, detect_cores()))
        self.pool: FunctionPool | None = None
        self.waiting: collections.OrderedDict[str, dict] = collections.OrderedDict()
        self.prioritized = False   # a waiting unit has a priority: keep them sorted
        # waiting units that were queued on a core and given back unstarted: they are
        # EXECUTING_PENDING already
        self.requeued: set[str] = set()
        # staging (only units with directives): a worker thread started on first use,
        # the units with output directives, and the units whose staging runs now with
        # what they finished with (None while staging in)
        self.stager: Any = None
        self.staging_out: dict[str, dict] = {}
        self.staging: dict[str, tuple[dict, Outcome | None]] = {}
        # warnings of NON_FATAL input directives that failed: they go into the unit's
        # stderr when it ends, as those of its output directives do
        self.staging_notes: dict[str, list[str]] = {}
        self.updates: dict[str, list] = {}
        self.first_update: float | None = None
        self.now = time.time()
        # failed executables held back for _FAILURE_GRACE seconds (see _finished)
        self.held: list[tuple[float, Finished]] = []
        self.batch_job = cfg.batch_job
        self.ending: tuple[str, str] | None = None
        self.runtime_end = time.monotonic() + float(cfg.runtime) * 60
        self.beat_every = float(cfg.heartbeat_interval or 1.0)
        self.grace = float(cfg.reconnect_grace)
        self.client_lost = False      # the grace ran out
        self.outbox = Outbox(self.sandbox)
        self.ctx: zmq.Context | None = None
        self.sock: zmq.Socket | None = None
        self.poller = zmq.Poller()
        self.endpoint = cfg.endpoint
        self.client: dict = {}        # what client.json said when last read

    def _wake(self) -> None:
        try:
            os.write(self.wake_w, b"x")
        except BlockingIOError:
            pass  # full: the loop is due to wake up anyway

    # updates ------------------------------------------------------------------------

    def _step(self, uid: str, steps: tuple, outcome: Outcome | None = None) -> None:
        # one timestamp per loop iteration: what happens in one iteration happens
        # within microseconds, and a shared time makes batches smaller on the wire
        # (the [state, time] pairs of ``steps`` are built once per iteration and
        # shared by every unit that takes the same steps in it: msgpack encodes them
        # as often as they are referenced, and nothing changes them)
        now = self.now
        at, made = self._stamped
        if at != now:
            self._stamped = (now, made := {})
        pairs = made.get(steps)
        if pairs is None:
            made[steps] = pairs = [[s, now] for s in steps]
        entry = self.updates.get(uid)
        if entry is None:
            self.updates[uid] = [uid, [*pairs],
                                 None if outcome is None else outcome.to_wire()]
            return
        entry[1] += pairs
        if outcome is not None:
            entry[2] = outcome.to_wire()

    def _flush_due(self, poller: zmq.Poller, now: float) -> bool:
        """Whether to send the pending updates now.

        They go at once when the pilot has nothing else to do (the client is likely
        waiting for exactly these); while units run or wait, more updates are due
        soon, and they gather into batches of up to ``_BATCH`` updates or
        ``_batch_age()`` seconds, so that the client handles few large frames instead
        of one per unit (each frame wakes its threads).
        """
        if self.first_update is None:
            self.first_update = now
        if len(self.updates) >= _BATCH or now - self.first_update >= self._batch_age():
            return True
        if self.waiting or self.executor.running or self.pool.running:
            return False
        return not poller.poll(0)

    def _flush_timeout(self, now: float) -> float | None:
        """Seconds until gathered updates must go out (None when none wait)."""
        if not self.updates or self.first_update is None:
            return None
        return self.first_update + self._batch_age() - now

    def _batch_age(self) -> float:
        """How long updates may gather: ``_BATCH_AGE``, or ``_BACKLOG_AGE`` while at
        least a core's worth of units waits for cores. Then results come steadily
        and a unit that ended waits its turn anyway; larger frames cost the client
        (a Parsl DFK, a notebook) fewer wake-ups per unit."""
        return _BACKLOG_AGE if len(self.waiting) >= self.rm.cores else _BATCH_AGE

    def _flush(self, *more: Any) -> None:
        """Send the gathered updates and ``more`` messages as one sequenced frame,
        kept in the outbox until the client acknowledges it; a heartbeat alone goes
        as a frame of its own, not kept."""
        self.first_update = None
        messages = []
        if self.updates:
            messages.append(wire.UnitGroups(_groups(self.updates.values())))
            self.updates = {}
        messages.extend(m for m in more if not isinstance(m, wire.Heartbeat))
        if messages:
            frame = wire.encode(messages)
            self._send([wire.pack_seq(self.outbox.add(frame)), frame])
        elif more:
            self._send([wire.encode(more)])

    def _send(self, parts: list[bytes]) -> None:
        # never blocks: what does not go now stays in the outbox, for a Resume
        try:
            self.sock.send_multipart(parts, zmq.NOBLOCK)
        except zmq.Again:
            log.debug("the client does not take frames now; kept %d", len(self.outbox))

    # units --------------------------------------------------------------------------

    def _receive(self, units: list[dict]) -> None:
        waiting = self.waiting
        for unit in units:
            if "staging" in unit and self._stage_in(unit):
                continue
            waiting[unit["uid"]] = unit
            self._step(unit["uid"], _ARRIVED)
            if "priority" in unit["description"]:   # wired only when not 0
                self.prioritized = True
        if self.prioritized:
            # higher priority first; the sort is stable, so equal priorities keep
            # their order of arrival. Only paid while prioritized units wait.
            self.waiting = collections.OrderedDict(sorted(waiting.items(), key=_priority))

    # staging (rp_executor.staging, imported with the first unit that has directives)

    def _stage_in(self, unit: dict) -> bool:
        """Start a unit's input staging; False if it has none (it waits as usual)."""
        uid, directives = unit["uid"], unit["staging"]
        if directives["out"]:
            self.staging_out[uid] = unit
        if not directives["in"]:
            return False
        self.staging[uid] = (unit, None)
        self._step(uid, (states.AGENT_STAGING_INPUT,))
        self._stager_submit(("in", uid), unit, directives["in"], output=False)
        return True

    def _stage_out(self, uid: str, outcome: Outcome) -> None:
        unit = self.staging_out.pop(uid)
        self.staging[uid] = (unit, outcome)
        self._step(uid, _ENDED)
        self._stager_submit(("out", uid), unit, unit["staging"]["out"], output=True)

    def _stager_submit(self, key: tuple, unit: dict, items: list, output: bool) -> None:
        from rp_executor.staging import directives, local, worker
        if self.stager is None:
            self.stager = worker.Worker(wake=self._wake, name=f"rp-{self.pilot}-staging")
        sandbox = self.executor.sandbox_of(unit)
        paths = directives.Paths(unit=str(sandbox), pilot=str(self.sandbox),
                                 resource=str(self.sandbox.parent.parent))

        def job() -> list[str]:
            sandbox.mkdir(parents=True, exist_ok=True)
            return local.run(worker.resource_steps(items, paths, unit["uid"], output))
        self.stager.submit(key, job)

    def _staged(self) -> None:
        """Go on with units whose staging in the agent ended."""
        arrived = False
        for (kind, uid), warnings, error in self.stager.collect():
            held = self.staging.pop(uid, None)
            if held is None:
                continue   # canceled meanwhile
            unit, outcome = held
            if kind == "in":
                if error is not None:
                    self.staging_out.pop(uid, None)
                    self._step(uid, (states.FAILED,), _failed(error))
                    continue
                if warnings:
                    self.staging_notes[uid] = list(warnings)
                self.waiting[uid] = unit
                self._step(uid, (states.AGENT_SCHEDULING_PENDING,))
                arrived = True
                if "priority" in unit["description"]:
                    self.prioritized = True
                continue
            for line in warnings or ():
                outcome.note(f"rp_executor: {line}")
            if error is not None:
                outcome.ending = Ending.FAILED
                outcome.note(f"rp_executor: {error}")
                self._step(uid, (states.FAILED,), outcome)
            else:
                self._step(uid, (states.UMGR_STAGING_OUTPUT_PENDING,), outcome)
        if arrived and self.prioritized:
            self.waiting = collections.OrderedDict(sorted(self.waiting.items(), key=_priority))

    def _start_pool(self) -> None:
        env = {"RP_SESSION_ID": self.cfg.session_id, "RP_PILOT_ID": self.pilot}
        path = [p for p in self.cfg.python_path if p]
        if path:
            inherited = os.environ.get("PYTHONPATH")
            env["PYTHONPATH"] = os.pathsep.join(path + ([inherited] if inherited else []))
        size = pool_size(self.rm.cores, detect_cores(), self.cfg.function_workers)
        log.info("%d warm worker(s) for function units (%d cores)", size, self.rm.cores)
        self.pool = FunctionPool(size, self.sandbox, env)

    def _place(self) -> None:
        """Start waiting units, in order, while there are free cores."""
        placed = []
        pool = self.pool
        for uid, unit in self.waiting.items():
            if self.scheduler.free_cores == 0:
                break
            function = "function" in unit
            if function and pool.idle == 0:
                continue
            d = unit["description"]   # only what differs from the defaults
            threads = d.get("cpu_threads", 1)
            cores = d.get("cpu_processes", 1) * threads
            gpus = d.get("gpu_processes", 0)
            mpi = d.get("cpu_process_type") == "MPI"
            error = self.scheduler.check(cores, gpus, mpi=mpi, cores_per_process=threads)
            if error:
                placed.append(uid)
                self._step(uid, (states.FAILED,), _failed(error))
                continue
            slots = self.scheduler.allocate(cores, gpus, mpi=mpi, cores_per_process=threads)
            if slots is None:
                continue
            placed.append(uid)
            if function:
                pool.submit(uid, unit["function"], unit["args"], slots,
                            cpu_threads=threads, gpus=slots.gpu_indices,
                            name=d.get("name"))
            else:
                self.executor.launch(unit, slots)
            if self.requeued and uid in self.requeued:
                self.requeued.discard(uid)
                self._step(uid, _RUNS)
            else:
                self._step(uid, _STARTED)
        for uid in placed:
            del self.waiting[uid]
        # queued only while more wait than there are workers or cores: a unit queued
        # behind one that turns out long waits for it, while others take the free cores
        if self.waiting:
            if "function" in next(iter(self.waiting.values())):
                if len(self.waiting) > pool.size:
                    self._queue()
            elif len(self.waiting) > self.rm.cores:
                self._queue_executables()
        if not self.waiting:
            self.prioritized = False

    def _queue(self) -> None:
        """Queue the function units at the head of the line behind the units that
        the workers run, spread evenly over the workers, as many per worker as the
        pool's ``depth`` allows: none until the units are known to be short (then
        a few milliseconds' worth), so that a worker goes on to its next units
        without waiting for this loop, and a unit of higher priority that comes
        later waits at most that long.

        Only while more units wait than there are workers, and only units of one
        core without GPUs or threads, in order: the first unit that is not one
        stops it."""
        room = self.pool.queue_room()
        if room:
            units = self._plain_head(True, room)
            self._dequeued(units[:self.pool.queue_many(
                [(u["uid"], u["function"], u["args"], u["description"].get("name"))
                 for u in units])])

    def _queue_executables(self) -> None:
        """Queue the executable units at the head of the line behind the short units
        of one core that run now (``ForkExecutor.queue_many``), as ``_queue`` does for
        function units: only units of one core without GPUs, in order; the first
        unit that is not one stops it."""
        room = self.executor.queue_room()
        if room:
            units = self._plain_head(False, room)
            self._dequeued(units[:self.executor.queue_many(units)])

    def _plain_head(self, function: bool, room: int) -> list[dict]:
        """Up to ``room`` units at the head of the line that are function units (or
        executables, ``function`` False) of one core without GPUs or threads."""
        head = []
        for unit in self.waiting.values():
            d = unit["description"]
            if ("function" in unit) is not function or (d and not _plain(d)):
                break
            head.append(unit)
            if len(head) == room:
                break
        return head

    def _dequeued(self, units: list[dict]) -> None:
        """Units that were queued on a core leave the line: EXECUTING_PENDING (the
        ones given back earlier are already)."""
        waiting, step, requeued = self.waiting, self._step, self.requeued
        for unit in units:
            uid = unit["uid"]
            del waiting[uid]
            if requeued and uid in requeued:
                requeued.discard(uid)
            else:
                step(uid, _QUEUED)

    def _stranded(self) -> bool:
        """Whether executables wait queued on a core while another core is free."""
        return bool(self.executor.queued and self.scheduler.free_cores)

    def _take_back(self) -> None:
        """Put the queued units that launchers gave back (``_stranded``) at the head
        of the line, in their order (they waited longest)."""
        back = self.executor.take_withdrawn()
        if not back:
            return
        log.info("%d queued unit(s) given back to be placed anew", len(back))
        self.requeued.update(unit["uid"] for unit in back)
        self.waiting = collections.OrderedDict(
            [*((unit["uid"], unit) for unit in back), *self.waiting.items()])
        if self.prioritized or any("priority" in unit["description"] for unit in back):
            self.prioritized = True
            self.waiting = collections.OrderedDict(sorted(self.waiting.items(), key=_priority))

    def _finished(self, results: list[Finished], cause: str | None = None) -> None:
        for res in results:
            if res.successor is not None:
                # a unit queued behind it took over its slots, and runs now
                self._step(res.successor, _RUNS)
            elif res.slots is not None:
                self.scheduler.release(res.slots)
            if cause is None and res.exit_code != 0 and not res.canceled \
                    and self.batch_job:
                # A batch system that ends the job kills the units' job steps too,
                # often just before the agent hears of it: a failure is held back
                # briefly, so that it can be told apart from the pilot's end.
                self.held.append((time.monotonic() + _FAILURE_GRACE, res))
                continue
            self._report(res, cause)

    def _report(self, res: Finished, cause: str | None) -> None:
        """Send a finished executable unit's final states (``cause``: the pilot's end)."""
        outcome = Outcome(Ending.DONE, res.exit_code, res.stdout, res.stderr, None, None,
                          None, None, res.started, res.stopped, _nodes(res.slots))
        self._settle(res.uid, outcome, cause, res.canceled, res.exit_code == 0)

    def _settle(self, uid: str, outcome: Outcome, cause: str | None, canceled: bool,
                ok: bool) -> None:
        """The last states of a unit whose process or call ended."""
        if self.staging_notes:
            for line in self.staging_notes.pop(uid, ()):
                outcome.note(f"rp_executor: {line}")
        if cause is not None:
            outcome.ending = Ending.LOST
            outcome.note(f"rp_executor: {cause}")
            self._step(uid, (states.FAILED,), outcome)
        elif canceled:
            outcome.ending = Ending.CANCELED
            self._step(uid, (states.CANCELED,), outcome)
        elif ok:
            if self.staging_out and uid in self.staging_out:
                self._stage_out(uid, outcome)
            else:
                self._step(uid, (*_ENDED, states.UMGR_STAGING_OUTPUT_PENDING), outcome)
        else:
            outcome.ending = Ending.FAILED
            self._step(uid, (*_ENDED, states.FAILED), outcome)

    def _functions_finished(self, results: list[FuncResult], cause: str | None = None) -> None:
        for res in results:
            if res.successor is not None:
                # a unit queued behind it took over its worker and slots, and runs now
                self._step(res.successor, _RUNS)
            elif res.slots is not None:
                self.scheduler.release(res.slots)
            outcome = Outcome(Ending.DONE, res.exit_code, res.stdout, res.stderr, res.result,
                              res.result_file, res.exception, res.traceback, res.started,
                              res.stopped, _nodes(res.slots))
            # a call that returned before the end is not spoiled by it
            self._settle(res.uid, outcome, None if res.ok else cause, res.canceled, res.ok)

    def _cancel(self, uids: list[str]) -> None:
        for uid in uids:
            self.staging_notes.pop(uid, None)
            self.requeued.discard(uid)
            if self.waiting.pop(uid, None) is not None or self.staging.pop(uid, None):
                self.staging_out.pop(uid, None)
                self._step(uid, (states.CANCELED,))
            elif self.pool.cancel(uid):
                pass
            elif not self.executor.cancel(uid):
                log.debug("cancel of %s: not here (already ended?)", uid)

    def _resume(self, after: int) -> None:
        """Send again every kept frame after ``after``, then what the agent holds."""
        self.outbox.ack(after)
        count = 0
        for seq, frame in self.outbox.since(after):
            self._send([wire.pack_seq(seq), frame])
            count += 1
        held = [*self.waiting, *self.staging, *self.executor.running_uids(),
                *self.pool.running_uids()]
        self._send([wire.encode([wire.Resumed(held, self.outbox.seq)])])
        log.info("the client resumed after frame %d: sent %d frame(s) again; %d unit(s) "
                 "held", after, count, len(held))

    def _connect(self, endpoint: str, server_public: str) -> None:
        """(Re)connect the socket to the client at ``endpoint`` and say Hello."""
        if self.sock is not None:
            self.poller.unregister(self.sock)
            self.sock.close(linger=0)
        keys = wire.KeyPair(self.cfg.public, self.cfg.secret)
        self.sock = wire.connect_agent(self.ctx, self.pilot, endpoint, server_public, keys)
        self.poller.register(self.sock, zmq.POLLIN)
        self.endpoint = endpoint
        resources = {**self.rm.info(), "hostname": socket.gethostname(), "pid": os.getpid(),
                     "sandbox": str(self.sandbox)}
        self.sock.send(wire.encode([wire.Hello(self.pilot, resources)]))

    def _look_for_client(self) -> None:
        """A silent client may have been replaced by one that reattached elsewhere:
        follow the address it wrote into the pilot sandbox."""
        try:
            data = wire.read_secret(self.sandbox / CLIENT_FILE)
        except (OSError, ValueError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("cannot read %s: %s", CLIENT_FILE, exc)
            return
        if data != self.client and data.get("endpoint"):
            # a new client (also at the same address: a socket that a client refused
            # while it was starting may not try again by itself)
            self.client = data
            log.info("a client reattached at %s", data["endpoint"])
            self._connect(data["endpoint"], data["server_public"])

    def _end(self, state: str, cause: str) -> None:
        if self.ending is None:
            log.info("ending the pilot %s: %s (%s)", self.pilot, state, cause)
            self.ending = (state, cause)

    # the loop -----------------------------------------------------------------------

    def run(self) -> int:
        """Serve until the pilot ends; returns the process exit code."""
        self.ctx = zmq.Context()
        wake_r = self.wake_r
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # the client cancels over the wire: a signal comes from the batch system
        # (scancel, walltime) or a user, and ends the pilot FAILED
        signal.signal(signal.SIGTERM, lambda signum, _: self._end(
            states.FAILED, f"the agent got signal {signum}"))
        signal.signal(signal.SIGINT, signal.getsignal(signal.SIGTERM))

        self._connect(self.cfg.endpoint, self.cfg.server_public)
        self._start_pool()
        poller = self.poller
        poller.register(wake_r, zmq.POLLIN)
        polled: tuple[list[int], list[int]] = ([], [])   # the pool's, the launchers'
        heard = time.monotonic()
        next_beat = heard + self.beat_every
        try:
            while self.ending is None:
                now = time.monotonic()
                timeout = min(next_beat, self.runtime_end) - now
                if self.held:
                    timeout = min(timeout, self.held[0][0] - now)
                for waits in (self.executor.reap_timeout, self.pool.collect_timeout,
                              self._flush_timeout(now),
                              LONG_UNIT if self._stranded() else None):
                    if waits is not None:
                        timeout = min(timeout, waits)
                fds = (self.pool.filenos(), self.executor.filenos())
                if fds[0] is not polled[0] or fds[1] is not polled[1]:
                    for fd in polled[0] + polled[1]:
                        poller.unregister(fd)
                    for fd in fds[0] + fds[1]:
                        poller.register(fd, zmq.POLLIN)
                    polled = fds
                try:
                    ready = dict(poller.poll(max(0.0, timeout) * 1000))
                except zmq.ZMQError as exc:
                    if exc.errno != zmq.EINTR:
                        raise
                    ready = {}
                self.now = time.time()
                if wake_r in ready:
                    try:
                        while os.read(wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                if self.sock in ready:
                    heard = time.monotonic()
                    self._drain()
                if self.stager is not None and self.stager.pending:
                    self._staged()
                # only the workers that answered are read; executables only when
                # there are any (a SIGCHLD also wakes the loop for them)
                self._functions_finished(self.pool.collect(ready))
                executor = self.executor
                if executor.running or executor.reap_timeout is not None:
                    self._finished(executor.reap())
                    self._take_back()
                if self.held and self.held[0][0] <= time.monotonic():
                    due = time.monotonic()
                    for _, res in [h for h in self.held if h[0] <= due]:
                        self._report(res, None)
                    self.held = [h for h in self.held if h[0] > due]
                if self.waiting and not self.held:
                    # while a failure is held back, its cores stay unused: if the
                    # batch system is ending the job, a unit started now would fail too
                    self._place()
                if self._stranded():
                    # a unit queued behind one that has run long is asked back, to be
                    # placed on the free core (the loop looks again every LONG_UNIT)
                    executor.withdraw_stranded()
                now = time.monotonic()
                beat = None
                if now >= next_beat:
                    next_beat = now + self.beat_every
                    beat = wire.Heartbeat(time.time())
                    if now - heard > self.grace:
                        self.client_lost = True
                        self._end(states.FAILED, "client lost for longer than "
                                                 f"reconnect_grace ({self.grace:g} s)")
                    elif now - heard > _LOOK_AFTER * self.beat_every:
                        self._look_for_client()
                if now >= self.runtime_end:
                    self._end(states.DONE, f"runtime of {self.cfg.runtime} min reached")
                if beat is not None:
                    self._flush(beat)
                elif self.updates and self._flush_due(poller, now):
                    self._flush()
            state, cause = self.ending
            self._shutdown(state, cause)
            self._flush(wire.Bye(state, cause))
        finally:
            self.executor.kill_all()
            if self.pool is not None:
                self.pool.close()
            self._write_end()
            if self.sock is not None:
                self.sock.close(linger=2000)
            self.ctx.term()
        return 0

    def _write_end(self) -> None:
        """Leave in the pilot sandbox what the client may not have heard: the frames
        it did not acknowledge (the outbox's spill file) and how the agent ended."""
        kept = self.outbox.close()
        state, cause = self.ending or (states.FAILED, "the agent failed")
        try:
            wire.write_secret(self.sandbox / END_FILE, {
                "state": state, "cause": cause, "time": time.time(),
                "seq": self.outbox.seq, "unacknowledged": kept,
                "client_lost": self.client_lost})
        except OSError as exc:
            log.error("cannot write %s: %s", END_FILE, exc)
        log.info("ended %s (%s); %d frame(s) the client did not acknowledge are in %s",
                 state, cause, kept, self.outbox.path.name)

    def _drain(self) -> None:
        sock = self.sock
        while True:
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                messages = wire.decode(frame)
            except ValueError as exc:
                log.warning("%s", exc)
                continue
            for msg in messages:
                if isinstance(msg, wire.Units):
                    self._receive(msg.units)
                elif isinstance(msg, wire.CancelUnits):
                    self._cancel(msg.uids)
                elif isinstance(msg, wire.CancelPilot):
                    self._end(states.CANCELED, msg.cause)
                elif isinstance(msg, wire.Withdraw):
                    given = [uid for uid in msg.uids if self.waiting.pop(uid, None)]
                    # the states reported so far go first, then the answer
                    self._flush(wire.Withdrawn(given))
                elif isinstance(msg, wire.Ack):
                    self.outbox.ack(msg.seq)
                elif isinstance(msg, wire.Resume):
                    self._flush()   # what is gathered goes first, in order
                    self._resume(msg.after)

    def _shutdown(self, state: str, cause: str) -> None:
        """End every unit still here: running ones are killed and FAILED.

        Units that never started are left to the client, which moves them to
        another pilot or fails them when it learns that this pilot ended.
        """
        self.now = time.time()
        why = f"pilot {self.pilot} ended ({state}: {cause}) before the unit finished"
        # failures seen just before the end are most likely the end itself
        self._finished(self.executor.reap())
        self._take_back()   # given back unstarted: they wait, as the others do
        for _, res in self.held:
            self._report(res, why)
        self.held = []
        for uid, (_, outcome) in self.staging.items():
            if outcome is not None:   # it ran, but its output staging did not finish
                outcome.ending = Ending.LOST
                outcome.note(f"rp_executor: {why} (during output staging)")
                self._step(uid, (states.FAILED,), outcome)
        self.staging.clear()
        if self.waiting and self.client_lost:
            # no client is left to move them to another pilot
            for uid in self.waiting:
                self._step(uid, (states.FAILED,), _failed(cause))
        elif self.waiting:
            log.info("%d unit(s) never started; the client re-routes them", len(self.waiting))
        self.waiting.clear()
        self._finished(self.executor.kill_all(), cause=why)
        self._functions_finished(self.pool.collect())
        self._functions_finished(self.pool.close(), cause=why)


def _plain(description: dict) -> bool:
    """Whether a unit's description (the fields that differ from the defaults)
    asks for one core, no GPU and no MPI."""
    return description.get("cpu_processes", 1) == 1 and description.get("cpu_threads", 1) == 1 \
        and not description.get("gpu_processes") and description.get("cpu_process_type") != "MPI"


def _priority(item: tuple[str, dict]) -> int:
    return -item[1]["description"].get("priority", 0)


def _groups(entries: Any) -> list:
    """:class:`~rp_executor._core.wire.UnitGroups` groups of ``[uid, pairs, outcome]``
    update entries: entries whose ``[state, time]`` pairs are the same objects
    (:meth:`Agent._step` shares them among the units that take the same steps in one
    iteration) share a group, in the order the first of each came."""
    groups: dict[tuple, list] = {}
    for uid, pairs, outcome in entries:
        # the pairs are alive while the entries hold them: their ids are unique
        key = tuple(map(id, pairs))
        group = groups.get(key)
        if group is None:
            group = groups[key] = [pairs, [], None]
        uids, outcomes = group[1], group[2]
        if outcome is not None and outcomes is None:
            outcomes = group[2] = [None] * len(uids)
        uids.append(uid)
        if outcomes is not None:
            outcomes.append(outcome)
    return list(groups.values())


def _failed(error: str) -> Outcome:
    """The outcome of a unit that failed before it ran, for ``error``."""
    return Outcome(Ending.FAILED, stderr=f"rp_executor: {error}")


def _nodes(slots: Any) -> list[str]:
    """The names of the nodes of an allocation, in order."""
    return [s.node for s in slots.nodes] if slots is not None else []
