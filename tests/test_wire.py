"""The client–agent channel: CURVE admission, secret files and the message codec, on
real ZMQ sockets and real files."""

from __future__ import annotations

import os
import queue
import stat
import time

import msgpack
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from rp_executor._core import wire
from rp_executor._core.wire import (Ack, Bye, CancelPilot, CancelUnits, ClientChannel,
                                    Heartbeat, Hello, KeyPair, Resume, Resumed, UnitGroups,
                                    UnitStates, Units, Withdraw, Withdrawn, connect_agent,
                                    decode, encode, read_secret, write_secret)

PILOT = "pilot.0000"


@pytest.fixture
def inbox():
    """What the channel's ``on_messages`` received, as ``(pilot, messages)`` items."""
    return queue.SimpleQueue()


@pytest.fixture
def channel(inbox):
    ch = ClientChannel(lambda pilot, messages, seq: inbox.put((pilot, messages)), tick=0.05)
    try:
        yield ch
    finally:
        ch.close()


class Agents:
    """Agent DEALER sockets connected to a channel, in a context of their own."""

    def __init__(self, channel: ClientChannel) -> None:
        self.channel = channel
        self.ctx = zmq.Context()
        self.sockets: list[zmq.Socket] = []

    def connect(self, keys: KeyPair, pilot: str = PILOT) -> zmq.Socket:
        """A DEALER of ``pilot`` with ``keys``, connected as an agent connects."""
        sock = connect_agent(self.ctx, pilot, self.channel.endpoint,
                             self.channel.keys.public, keys)
        self.sockets.append(sock)
        return sock

    def monitor(self, sock: zmq.Socket) -> zmq.Socket:
        """A monitor of the CURVE handshakes of ``sock``."""
        monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED |
                                          zmq.EVENT_HANDSHAKE_FAILED_AUTH |
                                          zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                          zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        self.sockets.append(monitor)
        return monitor

    def close(self) -> None:
        # explicitly, without lingering: a socket dropped with a queued message would
        # hold up the context's end for its 2 s linger
        for sock in self.sockets:
            sock.close(linger=0)
        self.ctx.term()


@pytest.fixture
def agents(channel):
    a = Agents(channel)
    try:
        yield a
    finally:
        a.close()


def first_handshake_event(monitor: zmq.Socket, timeout: float = 5.0) -> int:
    assert monitor.poll(timeout * 1000), f"no CURVE handshake within {timeout} s"
    return recv_monitor_message(monitor)["event"]


def test_agent_with_a_key_not_allowed_is_refused_and_its_messages_never_arrive(
        agents, inbox):
    sock = agents.connect(KeyPair.generate())
    monitor = agents.monitor(sock)
    sock.send(encode([Hello(PILOT, {"cores": 4})]))
    assert first_handshake_event(monitor) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    with pytest.raises(queue.Empty):
        inbox.get(timeout=0.3)


def test_agent_with_an_allowed_key_is_admitted_and_its_messages_arrive_decoded(
        channel, agents, inbox):
    keys = KeyPair.generate()
    channel.allow(keys.public)
    sock = agents.connect(keys)
    monitor = agents.monitor(sock)
    sock.send(encode([Hello(PILOT, {"cores": 4}), Heartbeat(12.5)]))
    assert first_handshake_event(monitor) == zmq.EVENT_HANDSHAKE_SUCCEEDED
    assert inbox.get(timeout=5) == (PILOT, [Hello(PILOT, {"cores": 4}), Heartbeat(12.5)])


def test_only_the_allowed_key_is_admitted_when_two_agents_connect(channel, agents, inbox):
    good, bad = KeyPair.generate(), KeyPair.generate()
    channel.allow(good.public)
    agents.connect(bad, "pilot.bad").send(encode([Heartbeat(1.0)]))
    agents.connect(good, "pilot.good").send(encode([Heartbeat(2.0)]))
    assert inbox.get(timeout=5) == ("pilot.good", [Heartbeat(2.0)])
    with pytest.raises(queue.Empty):
        inbox.get(timeout=0.3)


def test_messages_sent_by_the_client_reach_the_admitted_agent_in_order(
        channel, agents, inbox):
    keys = KeyPair.generate()
    channel.allow(keys.public)
    sock = agents.connect(keys)
    sock.send(encode([Heartbeat(0.0)]))      # the ROUTER learns the agent's identity
    assert inbox.get(timeout=5) == (PILOT, [Heartbeat(0.0)])
    sent = [CancelUnits(["unit.000000"]), Withdraw(["unit.000001", "unit.000002"]),
            CancelPilot("enough")]
    for message in sent:
        channel.send(PILOT, message)
    got: list = []
    deadline = time.monotonic() + 5
    while len(got) < len(sent):
        assert sock.poll(max(0.0, deadline - time.monotonic()) * 1000), \
            f"only {got} of {sent} arrived"
        got.extend(decode(sock.recv()))
    assert got == sent


def test_close_is_idempotent(inbox):
    ch = ClientChannel(lambda pilot, messages, seq: inbox.put((pilot, messages)))
    ch.close()
    ch.close()


# --------------------------------------------------------------------------- secrets

def test_write_secret_creates_the_file_with_mode_0600_even_with_an_open_umask(tmp_path):
    path = tmp_path / "keys" / "agent.json"
    old = os.umask(0)
    try:
        write_secret(path, {"public": "p", "secret": "s"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_secret(path) == {"public": "p", "secret": "s"}


def test_write_secret_over_a_readable_file_makes_it_0600(tmp_path):
    path = tmp_path / "agent.json"
    path.write_text('{"old": true, "padding": "a longer text than the new one"}')
    path.chmod(0o644)
    write_secret(path, {"new": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_secret(path) == {"new": 1}


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o701])
def test_read_secret_refuses_a_file_others_can_access(tmp_path, mode):
    path = tmp_path / "agent.json"
    path.write_text('{"secret": "s"}')
    path.chmod(mode)
    with pytest.raises(PermissionError, match=rf"{oct(mode)}; secret files must be 0600"):
        read_secret(path)


def test_read_secret_reads_a_0600_file(tmp_path):
    path = tmp_path / "agent.json"
    path.write_text('{"public": "p", "secret": "s"}')
    path.chmod(0o600)
    assert read_secret(path) == {"public": "p", "secret": "s"}


def test_key_pairs_are_z85_curve_keys_and_differ():
    a, b = KeyPair.generate(), KeyPair.generate()
    assert len(a.public) == len(a.secret) == 40 and a.public != b.public
    assert zmq.curve_public(a.secret.encode()).decode() == a.public


# --------------------------------------------------------------------------- codec

SAMPLES = [
    Hello("pilot.0001", {"cores": 8, "gpus": 2, "nodes": [["n0", 4, 1], ["n1", 4, 1]]}),
    Heartbeat(1712345678.123456),
    UnitStates([["unit.000000", [["EXECUTING", 1.5], ["AGENT_STAGING_OUTPUT_PENDING", 2.25]],
                 {"exit_code": 0, "stdout": "hi\n", "stderr": ""}],
                ["unit.000001", [["FAILED", 3.0]], None]]),
    Bye("DONE", "runtime of 10 min reached"),
    Units([{"uid": "unit.000002", "sandbox": "/tmp/s/unit.000002",
            "description": {"executable": "/bin/date", "arguments": ["-u"],
                            "function": b"\x80\x05blob"}}]),
    CancelUnits(["unit.000000", "unit.000001"]),
    CancelPilot("canceled by the client"),
    Withdraw(["unit.000003"]),
    Withdrawn([]),
    Ack(17),
    Resume(16),
    Resumed(["unit.000004"], 18),
    UnitGroups([[[["AGENT_STAGING_INPUT", 1.5], ["AGENT_SCHEDULING_PENDING", 1.5]],
                 ["unit.000005", "unit.000006"], None],
                [[["UMGR_STAGING_OUTPUT_PENDING", 2.5]], ["unit.000007", "unit.000008"],
                 [None, ["DONE", 0, "", "", None, None, None, None, [], None]]]]),
]


def test_the_samples_cover_every_message_type():
    assert [type(m) for m in SAMPLES] == list(wire.MESSAGE_TYPES)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_type_survives_encode_and_decode(message):
    assert decode(encode([message])) == [message]


def test_a_frame_of_many_messages_decodes_to_the_same_messages_in_order():
    frame = encode(SAMPLES * 3)
    assert decode(frame) == SAMPLES * 3
    assert decode(encode([])) == []


@pytest.mark.parametrize("frame", [
    b"",                                        # nothing
    b"\xc1",                                    # a byte msgpack never uses
    b"\x93\x01",                                # a truncated array
    msgpack.packb(7),                           # not a list
    msgpack.packb([[99, "x"]]),                 # an unknown tag
    msgpack.packb([["Hello", "p", {}]]),        # a tag that is not a number
    msgpack.packb([[1]]),                       # Heartbeat without its field
    msgpack.packb([[1, 1.0, "extra"]]),         # Heartbeat with a field too many
    msgpack.packb([7]),                         # a message that is not a list
    b"not msgpack at all, just text",
], ids=["empty", "reserved-byte", "truncated", "scalar", "unknown-tag", "text-tag",
        "missing-field", "extra-field", "bare-item", "text"])
def test_decoding_garbage_raises_value_error(frame):
    with pytest.raises(ValueError, match=rf"malformed wire frame of {len(frame)} bytes"):
        decode(frame)


def test_decoding_a_negative_tag_raises_value_error():
    # not a message type counted from the end of the table
    with pytest.raises(ValueError, match="malformed wire frame"):
        decode(msgpack.packb([[-1, ["unit.000000"]]]))
