"""What the agent told the client and the client has not yet journaled.

Every frame of unit states, withdrawn units or the agent's goodbye gets the next
sequence number and stays here until the client acknowledges it (``Ack``). A client
that died leaves its frames here; the client that reattaches asks for all after the
last its journal holds (``Resume``), so that each reaches a journal once. The frames
are kept in memory up to ``memory`` bytes; older ones go to a spill file in the pilot
sandbox (mode 0600), and when the agent ends, everything not acknowledged is written
there, for a client that reattaches after the agent is gone (:func:`read_spill`).
"""

from __future__ import annotations

import collections
import os
import struct
from pathlib import Path
from typing import Iterator

#: the spill file in the pilot sandbox
SPILL = "outbox.spill"
#: what the agent writes into the pilot sandbox when it ends (its state and cause)
END_FILE = "agent.end.json"
#: in-memory bytes kept before older frames go to the spill file
MEMORY = 64 * 2**20

_HEAD = struct.Struct(">QI")   # seq, length


class Outbox:
    """Sequenced frames not yet acknowledged, in order.

    :param sandbox: the pilot sandbox, where the spill file goes.
    :param memory: bytes kept in memory before older frames are spilled.
    """

    def __init__(self, sandbox: Path, memory: int = MEMORY) -> None:
        self.path = Path(sandbox) / SPILL
        self.memory = memory
        self.seq = 0                 # the last number given
        self.acked = 0               # the client's journal holds every frame up to it
        self._frames: collections.deque[tuple[int, bytes]] = collections.deque()
        self._bytes = 0
        self._spilled = 0            # the last seq in the spill file (0: none)

    def __len__(self) -> int:
        return len(self._frames)

    def add(self, frame: bytes) -> int:
        """Keep ``frame``; returns its sequence number."""
        self.seq += 1
        self._frames.append((self.seq, frame))
        self._bytes += len(frame)
        if self._bytes > self.memory:
            self._spill(keep=self.memory // 2)
        return self.seq

    def ack(self, seq: int) -> None:
        """Forget the frames up to ``seq``."""
        if seq <= self.acked:
            return
        self.acked = min(seq, self.seq)
        frames = self._frames
        while frames and frames[0][0] <= self.acked:
            self._bytes -= len(frames.popleft()[1])
        if self._spilled and self._spilled <= self.acked:
            self.path.unlink(missing_ok=True)
            self._spilled = 0

    def since(self, after: int) -> Iterator[tuple[int, bytes]]:
        """Every frame after ``after`` that is kept, in order (spilled ones first)."""
        if self._spilled > after:
            for seq, frame in read_spill(self.path):
                if after < seq <= self._spilled:
                    yield seq, frame
        for seq, frame in list(self._frames):
            if seq > after:
                yield seq, frame

    def close(self) -> int:
        """Write every frame not acknowledged to the spill file (the agent ends);
        returns how many frames it holds."""
        self._spill(keep=0)
        if self._spilled and self._spilled <= self.acked:
            self.path.unlink(missing_ok=True)
            self._spilled = 0
        return max(0, self._spilled - self.acked)

    def _spill(self, keep: int) -> None:
        """Append the oldest frames to the spill file until ``keep`` bytes are left."""
        frames = self._frames
        if not frames:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as fh:
            while frames and self._bytes > keep:
                seq, frame = frames.popleft()
                self._bytes -= len(frame)
                if seq > self.acked:
                    fh.write(_HEAD.pack(seq, len(frame)))
                    fh.write(frame)
                    self._spilled = seq


def read_spill(path: Path | str) -> Iterator[tuple[int, bytes]]:
    """The ``(seq, frame)`` entries of a spill file, in order; none if it is missing.
    A truncated last entry (the agent died while writing it) is left out."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return
    pos, size = 0, _HEAD.size
    while pos + size <= len(data):
        seq, length = _HEAD.unpack_from(data, pos)
        pos += size
        if pos + length > len(data):
            return
        yield seq, data[pos:pos + length]
        pos += length
