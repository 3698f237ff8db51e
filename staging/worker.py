"""Staging off the caller's thread: a worker that runs staging jobs one at a time.

The agent's loop is single-threaded and must not stop while a large file is copied,
so it hands the steps of a unit to a :class:`Worker` and collects the outcomes when
the worker wakes it. :func:`resource_steps` builds the steps the agent runs (COPY,
LINK, MOVE, and the TARBALL half on the resource) from the directives on the wire.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Any, Callable

from rp_executor.constants import TARBALL

from . import local
from .directives import Directive, Paths, resolve, tarball_name

log = logging.getLogger(__name__)


def resource_steps(items: list, paths: Paths, owner: str, output: bool) -> list:
    """``(directive, step)`` pairs for the agent's side of a unit's staging.

    :param items: directives in wire form (:meth:`Directive.as_wire`).
    :param paths: the unit's directories (``paths.unit`` must be set).
    :param owner: the unit's uid (names its tarballs).
    :param output: output staging (TARBALL packs) rather than input (TARBALL unpacks).
    """
    steps = []
    for item in items:
        d = Directive.from_wire(item)
        if d.action == TARBALL:
            tarball = os.path.join(paths.unit, tarball_name(d, owner))
            if output:
                src = resolve(d.source, paths, "unit")
                steps.append((d, _bind(local.pack, src, tarball, d.flags)))
            else:
                dst = resolve(d.target, paths, "unit")
                steps.append((d, _bind(local.unpack, tarball, dst, d.flags)))
        else:
            src = resolve(d.source, paths, "unit")
            dst = resolve(d.target, paths, "unit")
            steps.append((d, _bind(local.perform, d.action, src, dst, d.flags)))
    return steps


def _bind(fn: Callable, *args: Any) -> Callable[[], Any]:
    return lambda: fn(*args)


class Worker:
    """Runs jobs on one daemon thread; outcomes are collected by the owner.

    :param wake: called (from the worker thread) after each job, so that a polling
        owner notices outcomes at once.
    """

    def __init__(self, wake: Callable[[], None] | None = None, name: str = "rp-staging") -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._done: list = []
        self._lock = threading.Lock()
        self._wake = wake
        self.pending = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, key: Any, job: Callable[[], Any]) -> None:
        """Run ``job()`` later; its outcome comes back from :meth:`collect` with ``key``."""
        self.pending += 1
        self._jobs.put((key, job))

    def collect(self) -> list[tuple[Any, Any, BaseException | None]]:
        """The ``(key, result, error)`` of the jobs finished since the last call."""
        if not self._done:
            return []
        with self._lock:
            done, self._done = self._done, []
        self.pending -= len(done)
        return done

    def close(self) -> None:
        """Stop after the job at hand (queued jobs are dropped)."""
        self._jobs.put(None)

    def _loop(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            key, job = item
            try:
                outcome = (key, job(), None)
            except BaseException as exc:  # handed to the owner, who reports it
                outcome = (key, None, exc)
            with self._lock:
                self._done.append(outcome)
            if self._wake is not None:
                self._wake()


__all__ = ["Worker", "resource_steps"]
