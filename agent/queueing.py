"""How many units a busy core holds queued behind the one it runs.

Both ways of running units keep a short line per busy core when the units are
short: the warm function workers (:mod:`.function_pool`) and the launchers of
executables (:mod:`.executing`).  A queued unit starts the moment the one before
it ends, without waiting for a round trip through the agent's loop; the policy
below keeps that line a few milliseconds long, so that a unit of higher
priority that comes later waits at most that long, and a long unit never strands
others behind it.
"""

from __future__ import annotations

__all__ = ["MAX_DEPTH", "QUEUE_COVER", "LONG_UNIT", "queue_depth", "moving_mean"]

MAX_DEPTH = 32
"""Queued units one core holds at most, however short the units."""

QUEUE_COVER = 0.003
"""Seconds of expected work a core's queue covers: it runs that long without
waiting for the agent's loop, which meanwhile reads several reports per wake-up."""

LONG_UNIT = 0.005
"""A mean duration (seconds) from which no unit is queued, and a unit that has run
this long takes none behind it: a long one among short ones would strand them."""

_MEAN_WEIGHT = 0.125    # weight of the newest duration in the moving mean


def queue_depth(mean: float | None) -> int:
    """How many queued units a busy core holds, given ``mean``, the recent mean
    duration in seconds of the units of one core (None before any ended): enough
    to cover ``QUEUE_COVER`` seconds, at most ``MAX_DEPTH``; none when the mean is
    not known yet or is ``LONG_UNIT`` or longer: then units wait for a free core in
    the agent, where a unit of higher priority that comes later still goes first
    (a queued unit waits at most a few milliseconds of short units).

    >>> queue_depth(None), queue_depth(0.010), queue_depth(0.001), queue_depth(1e-6)
    (0, 0, 3, 32)
    """
    if mean is None or mean >= LONG_UNIT:
        return 0
    if mean * MAX_DEPTH <= QUEUE_COVER:
        return MAX_DEPTH
    return max(1, int(QUEUE_COVER / mean))


def moving_mean(mean: float | None, took: float) -> float:
    """The moving mean duration ``mean`` (None before the first) updated with a unit
    that took ``took`` seconds.

    >>> moving_mean(None, 0.004), moving_mean(0.004, 0.012)
    (0.004, 0.005)
    """
    return took if mean is None else mean + (took - mean) * _MEAN_WEIGHT
