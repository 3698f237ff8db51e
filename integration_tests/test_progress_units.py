"""Progress bars over real units and the Client's futures: ``rp.progress`` and
``UnitManager.wait_units(progress=True)`` count what ended (done, failed, canceled),
show a bar in a terminal and nothing where the output is not one, and change nothing
of what ``wait_units`` returns."""

from __future__ import annotations

import fcntl
import io
import os
import struct
import sys
import termios
import threading
import time

import pytest

import rp_executor as rp
from rp_executor.views.progress import Counts
from support import echo, sleep, wait_for


def final_line(text: str) -> str:
    """The last state a text bar drew."""
    return text.rstrip("\n").rsplit("\r", 1)[-1]


@pytest.mark.timeout(120)
def test_progress_counts_units_done_failed_and_canceled(umgr):
    units = umgr.submit_units([echo(str(i)) for i in range(10)] +
                              [rp.ComputeUnitDescription(executable="/bin/false"),
                               sleep(60)])
    units[-1].wait(rp.EXECUTING, timeout=60)
    threading.Timer(0.5, units[-1].cancel).start()
    out = io.StringIO()
    counts = rp.progress(units, notebook=False, timeout=90, file=out)
    assert counts == Counts(done=10, failed=1, canceled=1, total=12)
    line = final_line(out.getvalue())
    assert "12/12" in line and "done 10, failed 1, canceled 1" in line, line


@pytest.mark.timeout(120)
def test_progress_counts_units_of_two_managers_and_futures_together(session, pilot, client):
    first, second = rp.UnitManager(session), rp.UnitManager(session)
    first.add_pilots(pilot)
    second.add_pilots(pilot)
    units = first.submit_units([echo("a")] * 3) + second.submit_units([echo("b")] * 2)
    futures = client.map(abs, range(-5, 0))
    out = io.StringIO()
    counts = rp.progress([*units, *futures], notebook=False, timeout=90, file=out)
    assert counts == Counts(done=10, failed=0, canceled=0, total=10)
    assert "done 10, failed 0, canceled 0" in final_line(out.getvalue())
    # the progress callbacks are gone from the managers again
    assert first._final_cbs == [] and second._final_cbs == []


def fail() -> None:
    raise RuntimeError("on purpose")


@pytest.mark.timeout(120)
def test_progress_counts_the_futures_of_a_client(client):
    futures = client.map(abs, range(10)) + [client.submit(fail)]
    out = io.StringIO()
    counts = rp.progress(futures, notebook=False, timeout=90, file=out)
    assert counts == Counts(done=10, failed=1, canceled=0, total=11)
    assert "11/11" in final_line(out.getvalue())
    assert "done 10, failed 1, canceled 0" in final_line(out.getvalue())


@pytest.mark.timeout(120)
def test_wait_units_with_progress_returns_what_wait_units_returns(umgr, capsys):
    units = umgr.submit_units([echo(str(i)) for i in range(6)] +
                              [rp.ComputeUnitDescription(executable="/bin/false")])
    assert umgr.wait_units(progress=True, timeout=90) == [rp.DONE] * 6 + [rp.FAILED]
    assert umgr.wait_units(units[0].uid, progress=True) == rp.DONE          # a scalar
    assert umgr.wait_units([u.uid for u in units[:2]], rp.EXECUTING, None, True) == \
        [rp.DONE, rp.DONE]
    slow = umgr.submit_units(sleep(60))
    start = time.monotonic()
    state = umgr.wait_units(slow.uid, timeout=0.5, progress=True)
    assert state not in rp.FINAL and time.monotonic() - start < 10
    slow.cancel()
    # the output is not a terminal (pytest captures it), nor a notebook: no bar
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    assert umgr._final_cbs == []


@pytest.mark.timeout(120)
def test_wait_units_with_progress_shows_a_bar_in_a_terminal(umgr, monkeypatch):
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    tty = open(slave, "w")
    try:
        monkeypatch.setattr(sys, "stderr", tty)
        umgr.submit_units([sleep(0.2) for _ in range(4)] +
                          [rp.ComputeUnitDescription(executable="/bin/false")])
        assert umgr.wait_units(timeout=90, progress=True) == [rp.DONE] * 4 + [rp.FAILED]
    finally:
        monkeypatch.undo()
        tty.close()
    reader.join(timeout=10)
    os.close(master)
    shown = b"".join(chunks).decode(errors="replace")
    assert f"{umgr.uid}:" in shown and "5/5" in shown, shown
    assert "done 4, failed 1, canceled 0" in shown, shown
    assert "0/5" in shown or "1/5" in shown or "2/5" in shown, shown   # it moved


@pytest.mark.timeout(120)
def test_progress_follows_units_that_end_while_it_starts(umgr):
    # units ending while the bar registers its callbacks count once, all of them
    for _ in range(3):
        units = umgr.submit_units([echo(str(i)) for i in range(40)])
        counts = rp.progress(units, notebook=False, timeout=90, file=io.StringIO())
        assert counts == Counts(40, 0, 0, 40)
    wait_for(lambda: umgr._final_cbs == [], 5, "the progress callbacks are removed")
