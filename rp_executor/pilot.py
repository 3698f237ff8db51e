"""ComputePilot: a placeholder job (a Parsl block) running one agent."""

from __future__ import annotations

import collections
import copy
import json
import logging
import threading
import time
from typing import Any, Callable, Sequence

from rp_executor import states
from rp_executor._core import wire
from rp_executor._core.lifecycle import Stateful

log = logging.getLogger(__name__)


class ComputePilot(Stateful):
    """A pilot, created by :meth:`PilotManager.submit_pilots`.

    It is launched as a block of a Parsl provider (``job_id`` is the provider's job
    id) and becomes PMGR_ACTIVE when its agent has connected and reported its
    resources (``resource_details``).
    """

    __slots__ = ("_rcfg", "_provider", "job_id", "resource_details",
                 "log", "stdout", "stderr", "_sandboxes", "_io_lock", "_connected",
                 "_unsent", "_last_seen", "_canceling", "_said_bye", "_block_gone",
                 "_block_lock", "_umgrs", "_keys", "_launched", "_staged_out", "_seq",
                 "_acks", "_acked", "_asked", "_restored", "_unconfirmed", "__weakref__")
    _kind = "pilot"

    def __init__(self, uid: str, pmgr: Any, description: Any) -> None:
        super().__init__(uid, pmgr, description)
        self._rcfg: dict = {}
        self._provider: Any = None
        self.job_id: str | None = None
        self.resource_details: dict = {}
        self.log: list[str] = []
        self.stdout: str | None = None
        self.stderr: str | None = None
        self._sandboxes: dict[str, str] = {}
        self._io_lock = threading.Lock()
        self._connected = False
        self._unsent: list = []
        self._last_seen = time.monotonic()
        self._canceling = False
        self._said_bye = False
        self._block_gone = False
        self._block_lock = threading.Lock()   # one thread ends the block and its processes
        self._umgrs: list = []
        self._keys: wire.KeyPair | None = None
        self._launched = threading.Event()
        self._staged_out = False   # the description's output_staging ran (once)
        # the agent's sequenced frames (wire.py): the last one applied, the journal
        # tickets of those not yet acknowledged, the last acknowledged, and the
        # Resume asked for a missing frame (after, when)
        self._seq = 0
        self._acks: collections.deque = collections.deque()
        self._acked = 0
        self._asked: tuple[int, float] = (-1, 0.0)
        self._restored = False     # rebuilt from the journal by a reattaching client
        # ... and the units it had sent before, not known to have arrived
        self._unconfirmed: set[str] = set()

    # properties ---------------------------------------------------------------------

    @property
    def pmgr(self) -> Any:
        """The PilotManager of this pilot."""
        return self._manager

    @property
    def resource(self) -> str:
        """The resource label this pilot runs on."""
        return self._description.resource

    @property
    def resource_sandbox(self) -> str | None:
        """``<workdir>/radical.pilot.sandbox`` on the resource."""
        return self._sandboxes.get("resource")

    @property
    def session_sandbox(self) -> str | None:
        """``<resource sandbox>/<session uid>``."""
        return self._sandboxes.get("session")

    @property
    def pilot_sandbox(self) -> str | None:
        """``<session sandbox>/<pilot uid>``: the agent's working directory."""
        return self._sandboxes.get("pilot")

    # operations ---------------------------------------------------------------------

    def wait(self, state: str | Sequence[str] | None = None,
             timeout: float | None = None) -> str | None:
        """Wait until the pilot reached or passed ``state`` (default: final) or is
        final; return its state then (also when ``timeout`` seconds ran out)."""
        return super().wait(state, timeout)

    def cancel(self) -> None:
        """Cancel the pilot: its agent stops, its block is removed; it ends CANCELED."""
        self._manager.cancel_pilots(self.uid)

    def stage_in(self, directives: Any) -> None:
        """Stage files into the pilot's staging area (``pilot://``), blocking until done.

        Relative targets land in ``<pilot sandbox>/staging_area``; relative sources
        are in the client's directory; ``globus://`` sources use the session's globus
        context. Only TRANSFER (and TARBALL) is allowed, as in RADICAL-Pilot.

        :raises BadParameter: a malformed directive, or COPY, LINK or MOVE.
        :raises IncorrectState: the pilot was never launched (it has no sandbox).
        :raises RuntimeError: ``'pilot staging failed: ...'``, naming the directive.
        """
        from rp_executor.staging.stager import stage_pilot
        stage_pilot(self, directives, output=False, name="stage_in")

    def stage_out(self, directives: Any) -> None:
        """Stage files from the pilot's staging area to the client (or Globus),
        blocking until done; relative sources are in the staging area, relative
        targets in the client's directory. Raises as :meth:`stage_in`."""
        from rp_executor.staging.stager import stage_pilot
        stage_pilot(self, directives, output=True, name="stage_out")

    def register_callback(self, cb: Callable, metric: str | None = None,
                          cb_data: Any = None) -> None:
        """Call ``cb(pilot, state)`` (or with ``cb_data``) on every state of this pilot.

        ``metric`` may only be ``PILOT_STATE`` (the default).
        """
        self._manager._check_metric(metric)
        super().register_callback(cb, cb_data)

    def unregister_callback(self, cb: Callable | None = None, metric: str | None = None) -> None:
        """Remove ``cb`` (all when None) from this pilot."""
        self._manager._check_metric(metric)
        super().unregister_callback(cb)

    def _repr_html_(self) -> str:
        """The pilot's view in a notebook: uid and state, resource, cores and GPUs,
        the walltime it has left."""
        from rp_executor.views.html import pilot_view
        return pilot_view(self)

    def as_dict(self) -> dict:
        """The pilot as a dict, with RADICAL-Pilot's keys."""
        return {
            "session": self.session.uid, "pmgr": self._manager.uid, "uid": self.uid,
            "type": "pilot", "state": self._state, "log": list(self.log),
            "stdout": self.stdout, "stderr": self.stderr, "resource": self.resource,
            "resource_sandbox": self.resource_sandbox, "session_sandbox": self.session_sandbox,
            "pilot_sandbox": self.pilot_sandbox, "client_sandbox": self.client_sandbox,
            "js_url": self._rcfg.get("job_manager_endpoint"), "js_hop": None,
            "job_id": self.job_id, "description": self.description,
            "resource_details": copy.deepcopy(self.resource_details),
        }

    # the wire -----------------------------------------------------------------------

    def _send_units(self, units: list[dict]) -> None:
        """Send units to the agent, or keep them until it connects."""
        with self._io_lock:
            if self._connected:
                self.session._channel.send(self.uid, wire.Units(units))
            else:
                self._unsent.extend(units)

    def _take_unsent(self, uids: set[str]) -> set[str]:
        """Remove not yet sent units; return the uids that were still here."""
        with self._io_lock:
            taken = {u["uid"] for u in self._unsent if u["uid"] in uids}
            if taken:
                self._unsent = [u for u in self._unsent if u["uid"] not in taken]
            return taken

    def _send(self, message: Any) -> bool:
        """Send a control message if the agent is connected."""
        with self._io_lock:
            if self._connected:
                self.session._channel.send(self.uid, message)
                return True
            return False

    def _on_messages(self, messages: list, seq: int | None = None) -> None:
        """Handle a frame from the agent (on the I/O thread).

        A sequenced frame is applied once, in order: one seen before is dropped, and
        one after a gap too, with a Resume that asks for the missing ones.
        """
        self._last_seen = time.monotonic()
        if self._restored and not self._connected and not self.is_final:
            self._reconnected()
        self._apply(messages, seq)

    def _apply(self, messages: list, seq: int | None, force: bool = False) -> None:
        """Apply a frame's messages; a sequenced one once and in order (``force``:
        also after a gap, for the frames an agent that is gone left in its sandbox)."""
        if seq is not None:
            if seq <= self._seq:
                return
            if seq != self._seq + 1 and not force:
                self._ask_resume()
                return
            self._seq = seq
        for msg in messages:
            if isinstance(msg, wire.UnitGroups):
                self.session._route_unit_states(self, msg.groups)
            elif isinstance(msg, wire.UnitStates):     # as agents before groups sent
                self.session._route_unit_states(
                    self, [(steps, [uid], None if outcome is None else [outcome])
                           for uid, steps, outcome in msg.updates])
            elif isinstance(msg, wire.Hello):
                self._on_hello(msg)
            elif isinstance(msg, wire.Bye):
                self._said_bye = True
                self.log.append(f"agent ended: {msg.state} ({msg.cause})")
                self._manager._set_states([(self, [(msg.state, time.time())])],
                                          cause=msg.cause)
            elif isinstance(msg, wire.Withdrawn):
                self.session._route_withdrawn(self, msg.uids)
            elif isinstance(msg, wire.Resumed):
                self._on_resumed(msg)
            elif isinstance(msg, wire.Heartbeat):
                pass
        if seq is not None:
            # after the frame's own writes: when the journal committed this one, it
            # holds the frame, and the agent may forget it (Session._on_tick)
            self._acks.append((self.session._journal.set_pilot_seq(self.uid, seq), seq))

    def _ack(self, committed: int) -> wire.Ack | None:
        """The Ack for the frames the journal holds now (up to ticket ``committed``)."""
        acks, seq = self._acks, None
        while acks and acks[0][0] <= committed:
            seq = acks.popleft()[1]
        if seq is None or seq <= self._acked:
            return None
        self._acked = seq
        return wire.Ack(seq)

    def _ask_resume(self) -> None:
        """Ask the agent for every frame after the last applied one (once a second
        for the same frame at most: the answer may be on its way)."""
        now = time.monotonic()
        if self._asked[0] == self._seq and now - self._asked[1] < 1.0:
            return
        self._asked = (self._seq, now)
        self.session._channel.send(self.uid, wire.Resume(self._seq))

    def _reconnected(self) -> None:
        """The agent of a pilot rebuilt from the journal spoke: it is connected, and
        is asked for what the journal does not hold."""
        self.log.append("the agent reconnected to a reattached client")
        self._ask_resume()
        with self._io_lock:
            self._connected = True
            if self._unsent:    # units the former client had not sent
                self.session._channel.send(self.uid, wire.Units(self._unsent))
                self._unsent = []

    def _on_resumed(self, msg: wire.Resumed) -> None:
        """The agent sent what it kept and names the units it holds: a unit sent to
        it that it neither holds nor reported ended never arrived."""
        if self._seq < msg.seq:
            self._ask_resume()   # frames are missing still: ask again, then decide
            return
        unconfirmed, self._unconfirmed = self._unconfirmed - set(msg.uids), set()
        if unconfirmed:
            self._never_arrived(unconfirmed)

    def _never_arrived(self, uids: set[str]) -> None:
        """Units the former client sent to this pilot's agent, which never got them
        (the client died first): they are sent again (those that ended meanwhile are
        left as they are)."""
        by_umgr: dict[Any, list] = {}
        for uid in uids:
            unit = self.session._units.get(uid)
            if unit is not None and unit._pilot is self and not unit.is_final:
                by_umgr.setdefault(unit._manager, []).append(unit)
        for umgr, units in by_umgr.items():
            log.info("%s: %d unit(s) sent before the client died never arrived; sending "
                     "them again", self.uid, len(units))
            umgr._resend(units)

    def _on_hello(self, msg: wire.Hello) -> None:
        again = bool(self.resource_details)   # an agent that followed a new client
        self.resource_details = msg.resources
        self.session._journal.set_pilot_resources(self.uid, json.dumps(msg.resources))
        if again:
            self._ask_resume()
            return
        with self._io_lock:
            self._connected = True
            if self._unsent:
                self.session._channel.send(self.uid, wire.Units(self._unsent))
                self._unsent = []
        if self._canceling:
            self._send(wire.CancelPilot())
        self.log.append(f"agent connected: {msg.resources}")
        self._manager._set_states([(self, [(states.PMGR_ACTIVE, time.time())])])
