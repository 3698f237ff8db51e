"""The collector pause around bulk submits restores what it found; what a bulk submit
made is frozen until its session closes."""

from __future__ import annotations

import gc
import threading
import weakref

from rp_executor._core.gcpause import freeze_survivors, paused_gc, thaw


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


class _Node:
    """An object that can be part of a reference cycle and be weakly referenced."""

    def __init__(self) -> None:
        self.other: object = None


def test_frozen_cycles_wait_for_the_thaw_and_are_collected_after_it():
    a, b = _Node(), _Node()
    a.other, b.other = b, a           # a cycle: only the collector frees it
    gone = weakref.ref(a)
    try:
        freeze_survivors()
        del a, b
        gc.collect()
        assert gone() is not None     # frozen: the collector does not look at it
    finally:
        thaw()
    gc.collect()
    assert gone() is None
    assert gc.get_freeze_count() == 0


def test_frozen_objects_without_cycles_are_freed_when_unreferenced():
    node = _Node()
    gone = weakref.ref(node)
    try:
        freeze_survivors()
        del node                      # reference counting frees it at once
        assert gone() is None
    finally:
        thaw()
