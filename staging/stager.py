"""The client's side of staging: TRANSFER (local or Globus) and the TARBALL halves
that run in the client, for units (on the UnitManager's staging thread) and pilots.

A UnitManager hands units that have client-side directives to :class:`UnitStager`,
which runs them on its own thread, so that neither the manager's lock nor the I/O
thread waits for data: input staging between binding and sending
(UMGR_STAGING_INPUT), output staging after the agent sent the unit back
(UMGR_STAGING_OUTPUT). Units queued together are staged together: their Globus
items go into as few transfer tasks as possible.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any, Callable

from rp_executor.constants import TARBALL, TRANSFER
from rp_executor.exceptions import BadParameter, IncorrectState

log = logging.getLogger(__name__)

_SANDBOX_WAIT = 600.0   # seconds a unit waits for its pilot's sandbox at most


def _staging():
    # staging's local parts are light; globus-sdk is only imported for Globus items
    from rp_executor.staging import directives, local
    return directives, local


def client_steps(ds: list, paths: Any, output: bool, owner: str,
                 collections: Callable[[], dict]) -> tuple[list, list]:
    """The client's ``(directive, step)`` pairs and Globus items for directives.

    :param paths: a :class:`rp_executor.staging.directives.Paths`.
    :param output: output staging: relative sources are in the unit (or pilot)
        directory and relative targets in the client's; the other way round for input.
    :param collections: gives the globus context's ``{uuid: local root}`` map.
    :returns: ``(steps, items)``; ``items`` are ``(directive, Item)`` pairs whose keys
        are ``(owner, index)``. A directive that cannot be resolved yields a step
        that raises, so it fails (or warns, if NON_FATAL) like any other.
    """
    directives, local = _staging()
    src_rel, dst_rel = ("unit", "client") if output else ("client", "unit")
    if paths.unit is None:
        src_rel = "pilot" if output else "client"
        dst_rel = "client" if output else "pilot"
    steps, items = [], []
    for i, d in enumerate(ds):
        try:
            if d.action == TARBALL:
                tarball = os.path.join(paths.unit, directives.tarball_name(d, owner))
                if output:
                    dst = directives.resolve(d.target, paths, dst_rel)
                    steps.append((d, _bind(local.unpack, tarball, dst, d.flags)))
                else:
                    src = directives.resolve(d.source, paths, src_rel)
                    steps.append((d, _bind(local.pack, src, tarball, d.flags)))
                continue
            src = directives.resolve(d.source, paths, src_rel)
            dst = directives.resolve(d.target, paths, dst_rel)
            if isinstance(src, str) and isinstance(dst, str):
                steps.append((d, _bind(local.perform, TRANSFER, src, dst, d.flags)))
                continue
            items.append((d, _globus_item(d, src, dst, (owner, i), collections)))
        except Exception as exc:  # reported when the step runs, as the directive's failure
            steps.append((d, _raise(exc)))
    return steps, items


def _globus_item(d: Any, src: Any, dst: Any, key: Any, collections: Callable[[], dict]) -> Any:
    from rp_executor.constants import CREATE_PARENTS, RECURSIVE, SKIP_FAILED
    from rp_executor.staging.globus import Item, collection_path
    recursive = bool(d.flags & RECURSIVE)
    if isinstance(src, str):
        recursive = recursive or os.path.isdir(src)
        src = collection_path(src, collections())
    if isinstance(dst, str):
        dst = collection_path(dst, collections())
    return Item(src, dst, key, recursive=recursive or d.source.endswith("/"),
                create_parents=bool(d.flags & CREATE_PARENTS),
                skip_failed=bool(d.flags & SKIP_FAILED))


def _bind(fn: Callable, *args: Any) -> Callable[[], Any]:
    return lambda: fn(*args)


def _raise(exc: BaseException) -> Callable[[], Any]:
    def step() -> None:
        raise exc
    return step


def globus_context(session: Any) -> Any:
    """The session's newest ``Context('globus')``.

    :raises BadParameter: the session has none.
    """
    for ctx in session.list_contexts():
        if ctx.type == "globus":
            return ctx
    raise BadParameter("globus:// staging needs a Context('globus') added to the session "
                       "(session.add_context(rp.Context('globus', {...})))",
                       attribute="context", value=None)


def run_steps(steps: list, items: list, outcome: dict) -> tuple[str | None, list[str]]:
    """Run local steps, then look up the Globus outcomes of ``items``.

    :returns: ``(error, warnings)``: the first fatal failure (None if none) and the
        messages of NON_FATAL failures.
    """
    _, local = _staging()
    try:
        warnings = local.run(steps)
    except local.StagingError as exc:
        return str(exc), []
    for d, item in items:
        error = outcome.get(item.key)
        if error is None:
            continue
        message = local.failure(d, error)
        if d.fatal:
            return message, warnings
        warnings.append(f"{message} (NON_FATAL: ignored)")
    return None, warnings


class UnitStager:
    """The staging thread of a unit manager's :class:`UnitStaging` collaborator
    (started on first use).

    ``owner.started(kind, units)`` hears when a batch begins; ``owner.input_staged``
    and ``owner.output_staged`` get ``[(unit, error or None, warnings)]`` back, on
    this thread. ``owner.plans`` maps a unit's uid to its staging plan.
    """

    def __init__(self, owner: Any) -> None:
        self._owner = owner
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._globus: Any = None
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"rp-{owner.uid}-staging")
        self._thread.start()

    def put(self, kind: str, units: list) -> None:
        """Queue units for ``'in'`` or ``'out'`` staging."""
        self._queue.put((kind, units))

    def close(self) -> None:
        """Stop after the batch at hand."""
        self._queue.put(None)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while True:   # what queued up meanwhile is staged together
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.append(more)
            try:
                self._stage(batch)
            except Exception:
                log.exception("staging of %s failed", self._owner.uid)
                for kind, units in batch:
                    self._report(kind, [(u, "rp_executor: staging failed unexpectedly "
                                            "(see the client log)", []) for u in units])

    def _report(self, kind: str, results: list) -> None:
        if kind == "in":
            self._owner.input_staged(results)
        else:
            self._owner.output_staged(results)

    def _stage(self, batch: list) -> None:
        directives, _ = _staging()
        owner = self._owner
        work = []   # (kind, unit, steps, items)
        for kind, units in batch:
            owner.started(kind, units)
            for u in units:
                if u.is_final:
                    continue
                plan = owner.plans.get(u.uid)
                ds = plan.client_in if kind == "in" else plan.client_out
                try:
                    paths = self._paths(u)
                except IncorrectState as exc:
                    work.append((kind, u, [(ds[0], _raise(exc))], []))
                    continue
                if kind == "in":
                    os.makedirs(paths.unit, exist_ok=True)
                steps, items = client_steps(ds, paths, kind == "out", u.uid,
                                            lambda: globus_context(owner.session).collections)
                work.append((kind, u, steps, items))
        outcome = self._transfer([it for _, _, _, items in work for it in items])
        results: dict[str, list] = {"in": [], "out": []}
        for kind, u, steps, items in work:
            error, warnings = run_steps(steps, items, outcome)
            results[kind].append((u, error, warnings))
        for kind in ("in", "out"):
            if results[kind]:
                self._report(kind, results[kind])

    def _paths(self, unit: Any) -> Any:
        directives, _ = _staging()
        pilot = unit._pilot
        end = time.monotonic() + _SANDBOX_WAIT
        # a unit may be bound to a pilot that is still being launched
        while not pilot._launched.wait(0.2):
            if unit.is_final or pilot.is_final or time.monotonic() > end:
                break
        if pilot.pilot_sandbox is None:
            raise IncorrectState(f"pilot {pilot.uid} has no sandbox ({pilot.state}); "
                                 "cannot stage")
        return directives.Paths(client=unit.client_sandbox, unit=unit.unit_sandbox,
                                pilot=pilot.pilot_sandbox, resource=pilot.resource_sandbox)

    def _transfer(self, pairs: list) -> dict:
        if not pairs:
            return {}
        items = [item for _, item in pairs]
        try:
            if self._globus is None:
                self._globus = make_globus(self._owner.session)
            return self._globus.transfer(items)
        except Exception as exc:  # e.g. no tokens: every Globus item fails with the reason
            from rp_executor.staging.globus import describe_error
            text = str(exc) if isinstance(exc, BadParameter) or \
                type(exc).__name__ == "GlobusAuthError" else describe_error(exc)
            return {item.key: text for item in items}


def make_globus(session: Any) -> Any:
    """A :class:`~rp_executor.staging.globus.GlobusTransfer` for the session's globus
    context, with the session's deadline, timeout and poll interval."""
    from rp_executor.staging.globus import GlobusTransfer
    cfg = session._cfg
    return GlobusTransfer.from_context(
        globus_context(session), deadline=cfg.get("globus_deadline", 3600.0),
        timeout=cfg.get("globus_timeout"), poll_interval=cfg.get("globus_poll_interval", 2.0))


def stage_pilot(pilot: Any, value: Any, output: bool, name: str) -> None:
    """Stage to (or from) a pilot's staging area, in the calling thread.

    Relative targets of ``stage_in`` and relative sources of ``stage_out`` are in
    the pilot's staging area; ``pilot://`` and ``resource://`` name staging areas.
    Only TRANSFER (and TARBALL, packed and unpacked here) is allowed, as in RP.

    :raises BadParameter: a malformed directive, or COPY / LINK / MOVE.
    :raises IncorrectState: the pilot has no sandbox (not launched).
    :raises RuntimeError: ``'pilot staging failed: ...'`` naming the directive.
    """
    directives, local = _staging()
    ds = directives.expand(value, name)
    for d in ds:
        if d.action not in (TRANSFER, TARBALL):
            raise BadParameter(f"{d.field}.action: invalid action {d.action!r} on pilot "
                               f"level; allowed: {TRANSFER}", attribute="action",
                               value=d.action)
        for url in (d.source, d.target):
            if directives.scheme_of(url) == "unit":
                raise BadParameter(f"{d.field}: unit:// has no meaning in pilot staging; got "
                                   f"{url!r}", attribute=name, value=url)
    if not ds:
        return
    if pilot.pilot_sandbox is None:
        pilot._launched.wait(_SANDBOX_WAIT)
    if pilot.pilot_sandbox is None:
        raise IncorrectState(f"pilot {pilot.uid} has no sandbox yet ({pilot.state})")
    session = pilot.session
    paths = directives.Paths(client=pilot.client_sandbox, pilot=pilot.pilot_sandbox,
                             resource=pilot.resource_sandbox)
    # TARBALL at pilot level is packed and unpacked here, in one go
    plain = []
    for d in ds:
        if d.action == TARBALL:
            src = directives.resolve(d.source, paths, "pilot" if output else "client")
            dst = directives.resolve(d.target, paths, "client" if output else "pilot")
            plain.append((d, _bind(_tarball_copy, src, dst, d.flags)))
    ds = [d for d in ds if d.action != TARBALL]
    steps, items = client_steps(ds, paths, output, pilot.uid,
                                lambda: globus_context(session).collections)
    outcome = {}
    if items:
        try:
            outcome = make_globus(session).transfer([it for _, it in items])
        except Exception as exc:  # no tokens, no context, ...
            outcome = {it.key: str(exc) for _, it in items}
    error, warnings = run_steps(plain + steps, items, outcome)
    for w in warnings:
        pilot.log.append(w)
    if error:
        raise RuntimeError(f"pilot {error}")


def _tarball_copy(src: str, dst: str, flags: int) -> None:
    _, local = _staging()
    tarball = os.path.join(os.path.dirname(dst) or ".",
                           f".rp_tarball.{os.getpid()}.{threading.get_ident()}.tar")
    if local.pack(src, tarball, flags):
        local.unpack(tarball, dst, flags)


__all__ = ["UnitStager", "client_steps", "run_steps", "globus_context", "make_globus",
           "stage_pilot"]
