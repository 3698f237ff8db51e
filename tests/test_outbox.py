"""The agent's outbox: frames kept until acknowledged, spilled to the pilot sandbox
beyond its memory and when the agent ends, sent again on a Resume, each once."""

from __future__ import annotations

import os
import stat

from rp_executor.agent.outbox import SPILL, Outbox, read_spill


def frames(n: int, size: int = 10) -> list[bytes]:
    return [bytes([i % 256]) * size for i in range(n)]


def test_frames_are_numbered_from_one_and_kept_until_acknowledged(tmp_path):
    box = Outbox(tmp_path)
    data = frames(5)
    assert [box.add(f) for f in data] == [1, 2, 3, 4, 5]
    assert list(box.since(0)) == list(zip(range(1, 6), data))
    box.ack(3)
    assert list(box.since(0)) == [(4, data[3]), (5, data[4])]
    assert list(box.since(4)) == [(5, data[4])]
    box.ack(2)          # an older acknowledgement changes nothing
    assert len(box) == 2
    box.ack(99)         # beyond the last frame: everything is acknowledged
    assert list(box.since(0)) == [] and box.acked == 5
    assert not (tmp_path / SPILL).exists()


def test_beyond_its_memory_older_frames_go_to_a_private_spill_file(tmp_path):
    box = Outbox(tmp_path, memory=100)
    data = frames(30, size=10)
    for f in data:
        box.add(f)
    path = tmp_path / SPILL
    assert path.exists() and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(box) < 30                            # some are only in the file
    assert list(box.since(0)) == list(zip(range(1, 31), data))
    assert list(box.since(17)) == list(zip(range(18, 31), data[17:]))
    box.ack(30)
    assert not path.exists() and list(box.since(0)) == []


def test_closing_writes_what_is_not_acknowledged(tmp_path):
    box = Outbox(tmp_path)
    data = frames(6)
    for f in data:
        box.add(f)
    box.ack(2)
    assert box.close() == 4
    assert list(read_spill(tmp_path / SPILL)) == list(zip(range(3, 7), data[2:]))


def test_closing_with_everything_acknowledged_leaves_no_file(tmp_path):
    box = Outbox(tmp_path)
    box.add(b"x")
    box.ack(1)
    assert box.close() == 0
    assert not (tmp_path / SPILL).exists()


def test_a_truncated_last_entry_is_left_out(tmp_path):
    box = Outbox(tmp_path)
    for f in frames(3):
        box.add(f)
    box.close()
    path = tmp_path / SPILL
    path.write_bytes(path.read_bytes()[:-4])     # the agent died while writing
    assert [seq for seq, _ in read_spill(path)] == [1, 2]
    assert list(read_spill(tmp_path / "missing")) == []
