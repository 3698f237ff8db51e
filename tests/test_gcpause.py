"""The collector pause around bulk submits restores what it found."""

from __future__ import annotations

import gc
import threading

from rp_executor._core.gcpause import paused_gc


def test_the_collector_is_paused_inside_and_enabled_again_after():
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled():
    gc.disable()
    try:
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_nested_and_concurrent_pauses_end_with_the_last_one():
    entered, release = threading.Event(), threading.Event()

    def other():
        with paused_gc():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    assert entered.wait(10)
    with paused_gc():
        with paused_gc():
            pass
        assert not gc.isenabled()
    assert not gc.isenabled()      # the other thread is still inside
    release.set()
    thread.join(10)
    assert gc.isenabled()


def test_an_exception_inside_still_ends_the_pause():
    try:
        with paused_gc():
            raise ValueError("bad unit")
    except ValueError:
        pass
    assert gc.isenabled()
