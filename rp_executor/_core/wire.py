"""The client–agent channel: one module for messages, encoding, keys and sockets.

The client binds a ZMQ ROUTER socket, the agent of every pilot connects a DEALER
socket whose identity is the pilot's uid. Both sides use CURVE: the traffic is
encrypted, and a ZAP handler in the client admits only the public keys of the
pilots the session launched. Keys travel in files of mode 0600, never on a command
line.

A wire frame is one msgpack array of messages, so that many state updates or many
units cost one frame. Each message is a plain dataclass, encoded as
``[tag, field, field, ...]``.

What an agent reports (unit states, withdrawn units, its goodbye) travels in
*sequenced* frames, ``[seq, frame]`` with ``seq`` counting from 1: the agent keeps
each until the client acknowledges (:class:`Ack`) that its journal holds it, and
sends them again on :class:`Resume`, so that a client that died and a new one that
reattached (``Session(uid=...)``) lose none and apply each once. Heartbeats and the
first Hello are not sequenced.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import msgpack
import zmq

from rp_executor import states
from rp_executor._core.gcpause import paused_gc

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- messages

@dataclass(slots=True)
class Hello:
    """Agent → client, once: the agent is up and reports its resources."""

    pilot: str
    resources: dict


@dataclass(slots=True)
class Heartbeat:
    """Either way, every ``heartbeat_interval`` seconds: the sender is alive."""

    sent: float


@dataclass(slots=True)
class UnitStates:
    """Agent → client: state updates of many units.

    ``updates`` holds ``[uid, [[state, timestamp], ...], outcome]`` items; the state
    list names every state the unit passed since the last update, each with its own
    timestamp, so skipped states keep their times. ``outcome`` is None, or, when the
    unit's process or call ended, its :class:`~rp_executor.outcome.Outcome` in
    :meth:`~rp_executor.outcome.Outcome.to_wire` form.
    """

    updates: list


@dataclass(slots=True)
class UnitGroups:
    """Agent → client: state updates of many units, grouped; what :class:`UnitStates`
    says, in less.

    ``groups`` holds ``[[[state, timestamp], ...], [uid, ...], outcomes]`` items: the
    units of a group passed the same states at the same times since their last
    update (as the units of one agent report mostly do), so those are sent, decoded
    and applied once per group. ``outcomes`` is None when no unit of the group has
    one, else a list beside the uids (None, or an outcome in
    :meth:`~rp_executor.outcome.Outcome.to_wire` form).
    """

    groups: list


@dataclass(slots=True)
class Bye:
    """Agent → client, last: the agent ends, with the pilot's final state and why."""

    state: str
    cause: str


@dataclass(slots=True)
class Units:
    """Client → agent: units to run, each in :func:`unit_form`."""

    units: list


@dataclass(slots=True)
class CancelUnits:
    """Client → agent: kill these units (their process groups) and report CANCELED."""

    uids: list


@dataclass(slots=True)
class CancelPilot:
    """Client → agent: stop everything and end the pilot CANCELED."""

    cause: str = "canceled by the client"


@dataclass(slots=True)
class Withdraw:
    """Client → agent: give back those of these units that have not started."""

    uids: list


@dataclass(slots=True)
class Withdrawn:
    """Agent → client: these units were given back unstarted (to run elsewhere)."""

    uids: list


@dataclass(slots=True)
class Ack:
    """Client → agent: the frames up to ``seq`` are in the journal; forget them."""

    seq: int


@dataclass(slots=True)
class Resume:
    """Client → agent: send again every frame after ``after``, then :class:`Resumed`.

    A client that reattached sends it with the last frame its journal holds; a
    client that missed a frame sends it with the last frame it applied.
    """

    after: int


@dataclass(slots=True)
class Resumed:
    """Agent → client, after the frames a :class:`Resume` asked for: the units the
    agent holds now (waiting, staging or running); any other unit the client sent it
    and has not seen end never arrived. ``seq`` is the last frame the agent sent
    before: a client that has not applied it yet misses frames still."""

    uids: list
    seq: int


MESSAGE_TYPES: tuple[type, ...] = (Hello, Heartbeat, UnitStates, Bye, Units, CancelUnits,
                                   CancelPilot, Withdraw, Withdrawn, Ack, Resume, Resumed,
                                   UnitGroups)
_TAG = {cls: i for i, cls in enumerate(MESSAGE_TYPES)}
_TYPE_OF = dict(enumerate(MESSAGE_TYPES))   # a tag out of range is a KeyError
_FIELDS = {cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in MESSAGE_TYPES}


def pack_seq(seq: int) -> bytes:
    """The first frame of a sequenced message: ``seq`` as 8 bytes, big-endian."""
    return seq.to_bytes(8, "big")


def unpack_seq(data: bytes) -> int:
    """The sequence number of :func:`pack_seq`.

    :raises ValueError: ``data`` is not 8 bytes.
    """
    if len(data) != 8:
        raise ValueError(f"a sequence frame has 8 bytes; got {len(data)}")
    return int.from_bytes(data, "big")


#: frames from this size on are decoded and applied with the collector paused
_PAUSE_GC_BYTES = 32 * 1024


def encode(messages: Iterable[Any]) -> bytes:
    """Encode messages (dataclass instances of :data:`MESSAGE_TYPES`) into one frame."""
    out = []
    for msg in messages:
        cls = type(msg)
        out.append([_TAG[cls], *(getattr(msg, name) for name in _FIELDS[cls])])
    return msgpack.packb(out, use_bin_type=True)


def decode(frame: bytes) -> list[Any]:
    """Decode one frame into its messages.

    :raises ValueError: the frame is not a list of known messages.
    """
    try:
        items = msgpack.unpackb(frame, raw=False, strict_map_key=False)
        return [_TYPE_OF[item[0]](*item[1:]) for item in items]
    except (IndexError, KeyError, TypeError, ValueError, msgpack.UnpackException) as exc:
        raise ValueError(f"malformed wire frame of {len(frame)} bytes: {exc}") from exc


# --------------------------------------------------------------------------- units

#: The states a unit passes in the client before it is handed to the agent.
TO_AGENT = (states.UMGR_SCHEDULING, states.UMGR_STAGING_INPUT_PENDING,
            states.UMGR_STAGING_INPUT, states.AGENT_STAGING_INPUT_PENDING)

#: What the agent needs of a unit description; the rest (metadata, staging, ...) stays
#: in the client.
AGENT_FIELDS = ("executable", "arguments", "environment", "pre_exec", "post_exec", "stdout",
                "stderr", "cpu_processes", "cpu_process_type", "cpu_threads",
                "gpu_processes", "name", "sandbox", "priority")

_defaults: dict[type, tuple[tuple[str, Any], ...]] = {}


def _agent_defaults(cls: type) -> tuple[tuple[str, Any], ...]:
    """``(attribute, default)`` of :data:`AGENT_FIELDS` for a description class: the
    agent assumes the defaults of attributes that are not sent."""
    pairs = _defaults[cls] = tuple((name, cls._attrs[name].default)
                                   for name in AGENT_FIELDS)
    return pairs


def agent_description(description: Any) -> dict:
    """The description's :data:`AGENT_FIELDS` that differ from the defaults.

    A unit manager that made many units of one shape (``Description._shape``) gives
    their descriptions one such dict to share, as ``_agent``, and :func:`unit_form`
    takes that; nothing changes it.
    """
    d = description.__dict__
    pairs = _defaults.get(type(description)) or _agent_defaults(type(description))
    return {k: d[k] for k, default in pairs if k in d and d[k] != default}


def unit_form(unit: Any, staging: dict | None = None) -> dict:
    """A unit as its pilot's agent receives it: ``{uid, description}`` with the
    description's :data:`AGENT_FIELDS` that differ from the defaults (most units set a
    few), ``function`` and ``args`` for a function unit (pickled), and the agent's
    part of its ``staging`` directives, if any."""
    description = unit._description
    agent = description.__dict__.get("_agent")      # see agent_description
    wired = {"uid": unit._uid,
             "description": agent if agent is not None else agent_description(description)}
    if unit._call is not None:
        wired["function"], wired["args"] = unit._call
    if staging is not None:
        wired["staging"] = staging
    return wired


# --------------------------------------------------------------------------- secrets

def write_secret(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to ``path``, created with mode 0600 from the start."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        json.dump(data, fh)


def read_secret(path: Path) -> dict:
    """Read a JSON secret file written by :func:`write_secret`.

    :raises PermissionError: the file is readable by others than its owner.
    """
    mode = os.stat(path).st_mode & 0o077
    if mode:
        raise PermissionError(f"{path} has mode {oct(os.stat(path).st_mode & 0o777)}; "
                              "secret files must be 0600")
    with open(path) as fh:
        return json.load(fh)


@dataclass(slots=True)
class KeyPair:
    """A CURVE key pair, Z85-encoded as text."""

    public: str
    secret: str

    @classmethod
    def generate(cls) -> "KeyPair":
        """Make a new random key pair."""
        public, secret = zmq.curve_keypair()
        return cls(public.decode(), secret.decode())


# --------------------------------------------------------------------------- client side

class ClientChannel:
    """The client's end: a CURVE ROUTER socket served by one I/O thread.

    :param on_messages: called on the I/O thread as ``on_messages(pilot_uid, messages,
        seq)`` for every frame received (``seq`` is None for a frame that is not
        sequenced); it must be quick and must not block.
    :param on_tick: called on the I/O thread about every ``tick`` seconds.
    :param host: the address to bind; 127.0.0.1 for pilots on this machine.
    :param keys: the CURVE key pair of the client (new ones by default); a client that
        reattaches to a session uses the session's, which its agents know.
    :param port: the port to bind if it is free (a reattaching client takes its
        predecessor's, so that agents reconnect by themselves); any free port
        otherwise.
    :param allowed: public keys of agents to admit from the start (those of a
        reattached session, which may reconnect as soon as the port is bound).

    :meth:`send` may be called from any thread: messages are queued and the I/O
    thread sends everything queued for one pilot as one frame.

    :attr:`caught_up` is the last time (``time.monotonic()``) at which the I/O thread
    had handled every frame that had arrived: an agent's silence is only known up to
    then. While the client stalls (a full garbage collection of a large session, a
    starved CPU, a handler waiting for a lock), frames wait in the socket, and the
    time since the last one handled says nothing about the agent.
    """

    def __init__(self, on_messages: Callable[[str, list], None],
                 on_tick: Callable[[], None] | None = None, host: str = "127.0.0.1",
                 tick: float = 1.0, keys: KeyPair | None = None,
                 port: int | None = None, allowed: Iterable[str] = ()) -> None:
        self._on_messages = on_messages
        self._on_tick = on_tick
        self._tick = tick
        self.keys = keys or KeyPair.generate()
        self._allowed: set[bytes] = {key.encode() for key in allowed}
        self._ctx = zmq.Context()
        self._auth = _start_authenticator(self._ctx, self._allowed)
        self._router = self._ctx.socket(zmq.ROUTER)
        self._router.curve_server = True
        self._router.curve_secretkey = self.keys.secret.encode()
        self._router.curve_publickey = self.keys.public.encode()
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self._router.setsockopt(zmq.LINGER, 0)
        self.endpoint = _bind(self._router, host, port)
        self._outbox: collections.deque = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._running = True
        self.caught_up = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="rp-wire", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the I/O thread serves the socket."""
        return self._running and self._thread.is_alive()

    def allow(self, public_key: str) -> None:
        """Admit an agent whose CURVE public key is ``public_key``."""
        self._allowed.add(public_key.encode())

    def send(self, pilot: str, message: Any) -> None:
        """Queue ``message`` for the agent of ``pilot``; thread-safe, never blocks."""
        self._outbox.append((pilot, message))
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # the pipe is full: the I/O thread is already due to wake up

    def close(self) -> None:
        """Stop the I/O thread and close the socket."""
        if not self._running:
            return
        self._running = False
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass
        self._thread.join(timeout=5)
        self._router.close(linger=0)
        self._auth.stop()
        self._ctx.term()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # the I/O thread ----------------------------------------------------------------

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        next_tick = time.monotonic() + self._tick
        while self._running:
            timeout = max(0.0, next_tick - time.monotonic())
            try:
                ready = dict(poller.poll(timeout * 1000))
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EINTR:
                    continue
                raise
            if self._router in ready:
                self._receive()
            else:
                self.caught_up = time.monotonic()   # nothing arrived while it waited
            if self._wake_r in ready:
                try:
                    while os.read(self._wake_r, 65536):
                        pass
                except BlockingIOError:
                    pass
            if self._outbox:
                self._flush()
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self._tick
                if self._on_tick is not None:
                    self._guard(self._on_tick)

    def _receive(self) -> None:
        for _ in range(1000):  # bounded, so that sending is never starved
            try:
                parts = self._router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                self.caught_up = time.monotonic()
                return
            # a large frame (the states of hundreds of units) makes many objects that
            # mostly live on: the collector's runs meanwhile would walk every unit
            # of the session again and again (gcpause); at a million units that took
            # a fifth of the client's time
            with paused_gc() if len(parts[-1]) >= _PAUSE_GC_BYTES else nullcontext():
                try:
                    if len(parts) == 2:
                        (ident, frame), seq = parts, None
                    elif len(parts) == 3:
                        ident, seq, frame = parts[0], unpack_seq(parts[1]), parts[2]
                    else:
                        raise ValueError(f"a wire message has 2 or 3 frames; got {len(parts)}")
                    messages = decode(frame)
                except ValueError as exc:
                    log.warning("from %r: %s", parts[0], exc)
                    continue
                self._guard(self._on_messages, ident.decode(), messages, seq)

    def _flush(self) -> None:
        batches: dict[str, list] = {}
        while self._outbox:
            pilot, message = self._outbox.popleft()
            batches.setdefault(pilot, []).append(message)
        for pilot, messages in batches.items():
            try:
                self._router.send_multipart([pilot.encode(), encode(messages)], zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                log.warning("could not send %d message(s) to %s: %s", len(messages), pilot, exc)

    @staticmethod
    def _guard(fn: Callable, *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # the I/O thread must survive a bug in a handler
            log.exception("wire handler %s failed", getattr(fn, "__qualname__", fn))


def _bind(sock: zmq.Socket, host: str, port: int | None) -> str:
    """Bind ``sock`` to ``port`` when it is free, else to any free port; the endpoint."""
    if port:
        try:
            sock.bind(f"tcp://{host}:{port}")
            return f"tcp://{host}:{port}"
        except zmq.ZMQError as exc:
            log.info("port %d is taken (%s): binding another; agents find it in the "
                     "pilot sandbox", port, exc)
    return f"tcp://{host}:{sock.bind_to_random_port(f'tcp://{host}')}"


def _start_authenticator(ctx: zmq.Context, allowed: set[bytes]):
    from zmq.auth.thread import ThreadAuthenticator

    class _Keys:
        def callback(self, domain: str, key: bytes) -> bool:
            ok = key in allowed
            if not ok:
                log.warning("refused a connection with an unknown CURVE key")
            return ok

    auth = ThreadAuthenticator(ctx, log=logging.getLogger(__name__ + ".zap"))
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=_Keys())
    return auth


# --------------------------------------------------------------------------- agent side

def connect_agent(ctx: zmq.Context, pilot: str, endpoint: str, server_public: str,
                  keys: KeyPair) -> zmq.Socket:
    """Connect the agent's DEALER socket to the client with CURVE."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, pilot.encode())
    sock.setsockopt(zmq.LINGER, 2000)
    sock.curve_serverkey = server_public.encode()
    sock.curve_publickey = keys.public.encode()
    sock.curve_secretkey = keys.secret.encode()
    sock.connect(endpoint)
    return sock


__all__ = ["Hello", "Heartbeat", "UnitStates", "UnitGroups", "Bye", "Units", "CancelUnits",
           "CancelPilot", "Withdraw", "Withdrawn", "Ack", "Resume", "Resumed", "pack_seq", "unpack_seq",
           "TO_AGENT", "AGENT_FIELDS", "agent_description", "unit_form",
           "MESSAGE_TYPES", "encode", "decode", "write_secret", "read_secret", "KeyPair",
           "ClientChannel", "connect_agent"]
