"""rp.progress over futures: where a bar shows (a notebook, a terminal, nowhere unless
asked), what it counts, and that it ends. No processes: plain ``concurrent.futures``
futures, ended by a thread; units and the Client's futures on real pilots are in
integration_tests/test_progress_units.py."""

from __future__ import annotations

import concurrent.futures as cf
import fcntl
import io
import os
import struct
import termios
import threading
import time

import pytest

import rp_executor as rp
from rp_executor.exceptions import BadParameter
from rp_executor.views.progress import Counts, choose


def end_later(futures: list, delay: float = 0.3) -> threading.Thread:
    """Finish futures from another thread: the first half with a result, then one
    with an error, one cancelled, the rest with results."""
    def run() -> None:
        time.sleep(delay)
        for i, fut in enumerate(futures):
            if i == 1:
                fut.set_exception(ValueError("no"))
            elif i == 2:
                fut.cancel()
            else:
                fut.set_result(i)
            time.sleep(0.01)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("notebook, in_notebook, terminal, shown", [
    (None, False, False, None),          # neither: nothing
    (None, False, True, "auto"),         # a terminal: a bar
    (None, True, False, "auto"),         # a notebook: a widget (tqdm.auto)
    (True, False, False, "notebook"),    # asked for a widget
    (False, False, False, "text"),       # asked for a bar
    (False, True, False, "text"),
])
def test_a_bar_shows_in_a_notebook_or_a_terminal_and_elsewhere_only_when_asked(
        notebook, in_notebook, terminal, shown):
    assert choose(notebook, in_notebook, terminal) == shown


def test_progress_counts_done_failed_and_canceled_futures_into_a_text_bar():
    futures = [cf.Future() for _ in range(12)]
    thread = end_later(futures)
    out = io.StringIO()
    counts = rp.progress(futures, notebook=False, file=out)
    thread.join()
    assert counts == Counts(done=10, failed=1, canceled=1, total=12)
    final = out.getvalue().rstrip("\n").rsplit("\r", 1)[-1]
    assert "12/12" in final and "done 10, failed 1, canceled 1" in final, final
    assert out.getvalue().endswith("\n")


def test_with_output_neither_a_terminal_nor_a_notebook_nothing_is_shown(capsys):
    futures = [cf.Future() for _ in range(5)]
    thread = end_later(futures, delay=0.2)
    out = io.StringIO()
    counts = rp.progress(futures, file=out)       # notebook=None, not a tty
    thread.join()
    assert counts.ended == 5 and out.getvalue() == ""
    futures = [cf.Future() for _ in range(3)]
    thread = end_later(futures, delay=0.2)
    assert rp.progress(futures).total == 3           # sys.stderr, captured: not a tty
    thread.join()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_in_a_terminal_a_bar_shows_without_being_asked():
    master, slave = os.openpty()
    # a terminal of 100 columns (a pty starts with none, and tqdm draws to the width)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    chunks: list[bytes] = []

    def read() -> None:     # read while the bar writes: a full pty would block it
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:     # EIO: the terminal's other end was closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    futures = [cf.Future() for _ in range(4)]
    thread = end_later(futures, delay=0.2)
    with open(slave, "w", closefd=True) as tty:
        assert tty.isatty()
        counts = rp.progress(futures, file=tty)
    thread.join()
    reader.join(timeout=10)
    os.close(master)
    shown = b"".join(chunks)
    assert counts.ended == 4
    assert b"4/4" in shown and b"done 2, failed 1, canceled 1" in shown, shown


def test_progress_returns_at_its_timeout_with_what_ended():
    futures = [cf.Future() for _ in range(3)]
    futures[0].set_result(0)
    start = time.monotonic()
    out = io.StringIO()
    counts = rp.progress(futures, notebook=False, timeout=0.3, file=out)
    assert 0.25 <= time.monotonic() - start < 5
    assert counts == Counts(done=1, failed=0, canceled=0, total=3)
    assert counts.pending == 2 and "1/3" in out.getvalue()
    for fut in futures[1:]:       # the bar is gone: ending them later changes nothing
        fut.set_result(1)


def test_objects_given_twice_count_once_and_a_single_future_is_accepted():
    fut = cf.Future()
    fut.set_result(1)
    assert rp.progress([fut, fut], notebook=False, file=io.StringIO()).total == 1
    assert rp.progress(fut, file=io.StringIO()) == Counts(1, 0, 0, 1)
    assert rp.progress([], file=io.StringIO()) == Counts(0, 0, 0, 0)


def test_anything_but_units_and_futures_is_refused_with_its_position():
    fut = cf.Future()
    with pytest.raises(BadParameter, match=r"item 1 is a int \(7\); expected a "
                                           r"ComputeUnit or a future"):
        rp.progress([fut, 7])


def test_a_widget_without_ipywidgets_says_what_to_install():
    pytest.importorskip("tqdm.notebook")
    from tqdm import notebook
    if notebook.IProgress is not None:
        pytest.skip("ipywidgets is installed")
    fut = cf.Future()
    fut.set_result(1)
    with pytest.raises(ImportError, match="pip install ipywidgets"):
        rp.progress([fut], notebook=True)
