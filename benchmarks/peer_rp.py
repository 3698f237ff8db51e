"""rp-executor's side of every measurement: one session, one 2-core local pilot.

Function units (``ComputeUnitDescription(function=...)``) may not exist yet in the
installed rp_executor; the function measurements then raise :class:`Unavailable`,
which the child reports as "n/a" instead of a crash.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from benchmarks.cpu import CpuMeter
from benchmarks.payloads import noop
from benchmarks.timing import peak_rss_mb, rate, round_trips, rss_mb


class Unavailable(Exception):
    """The measured feature does not exist in this build; the reason is the message."""


PILOT_CORES = 2
PILOT_RUNTIME_MIN = 30


def _rp() -> Any:
    import rp_executor as rp
    return rp


def function_cud(*args: Any) -> Any:
    """Return a no-op function unit description, or raise :class:`Unavailable`."""
    rp = _rp()
    try:
        return rp.ComputeUnitDescription(function=noop, args=list(args), kwargs={})
    except rp.BadParameter as exc:
        if getattr(exc, "attribute", None) == "function" or "'function'" in str(exc):
            raise Unavailable("function units not available") from exc
        raise


def exec_cud() -> Any:
    """Return a ``/bin/true`` executable unit description."""
    return _rp().ComputeUnitDescription(executable="/bin/true")


RAM_DIR = "/dev/shm"


def ram_dir() -> str | None:
    """A RAM-backed directory for the pilot sandbox of the executable measurements,
    or None where there is none (the temporary directory is used then).

    An executable unit has its own directory and output files (RADICAL-Pilot's
    semantics); on this VM's disk creating them costs 30 to 2,000 us each, swinging
    with whatever else writes, which would measure the disk rather than the pilot.
    ``exec_tput_disk`` reports the same run with the sandbox on disk."""
    return RAM_DIR if os.path.isdir(RAM_DIR) and os.access(RAM_DIR, os.W_OK) else None


@contextlib.contextmanager
def pilot_session(timeout: float, sandbox_in: str | None = None,
                  on_closed: Callable[[Any], None] | None = None
                  ) -> Iterator[tuple[Any, dict[str, float]]]:
    """Open a session with an ACTIVE 2-core local pilot; yield ``(umgr, timings)``.

    ``timings`` holds ``rp_session_s`` (Session() construction) and
    ``rp_startup_s`` (``submit_pilots`` until the pilot is PMGR_ACTIVE). The session
    and the pilot sandbox live in a new temporary directory (under ``sandbox_in``
    when given), removed on the way out with the closed session; ``on_closed``, when
    given, is called with the session after it closed and before its directory is
    removed (to read what it left there).

    :raises RuntimeError: the pilot did not become ACTIVE within ``timeout`` seconds.
    """
    rp = _rp()
    tmp = tempfile.mkdtemp(prefix="rpbench-rp-", dir=sandbox_in)
    t0 = time.perf_counter()
    session = rp.Session(base_dir=tmp)
    try:
        t1 = time.perf_counter()
        pmgr = rp.PilotManager(session)
        t2 = time.perf_counter()
        # the pilot sandbox (unit directories and output files) goes with the session
        # into the temporary directory, not into the directory the benchmark runs from
        pilot = pmgr.submit_pilots(rp.ComputePilotDescription(
            resource="local.localhost", cores=PILOT_CORES, runtime=PILOT_RUNTIME_MIN,
            sandbox=tmp))
        state = pilot.wait(state=rp.PMGR_ACTIVE, timeout=timeout)
        t3 = time.perf_counter()
        if state != rp.PMGR_ACTIVE:
            raise RuntimeError(f"pilot {pilot.uid} is {state} after {t3 - t2:.1f} s; "
                               f"expected {rp.PMGR_ACTIVE}")
        umgr = rp.UnitManager(session)
        umgr.add_pilots(pilot)
        # the targets hold "with the full state model, journal and callbacks on":
        # a state callback sees every state of every unit
        seen = [0]

        def count_states(unit: Any, state: str) -> None:
            seen[0] += 1

        umgr.register_callback(count_states)
        yield umgr, {"rp_session_s": t1 - t0, "rp_startup_s": t3 - t2}
    finally:
        try:
            session.close()
            if on_closed is not None:
                on_closed(session)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _check_done(units: list, what: str) -> None:
    """Raise RuntimeError naming the state counts unless every unit is DONE."""
    rp = _rp()
    counts = collections.Counter(u.state for u in units)
    if counts.get(rp.DONE, 0) != len(units):
        bad = next((u for u in units if u.state != rp.DONE), None)
        detail = f"; first not DONE: {bad.uid} {bad.state} {getattr(bad, 'stderr', '')!r}" \
            if bad is not None else ""
        raise RuntimeError(f"{what}: expected {len(units)} DONE; got {dict(counts)}{detail}")


def _warm_up(umgr: Any, make_cud: Any, timeout: float) -> None:
    """Run two units to completion so that first-use costs are not measured."""
    units = umgr.submit_units([make_cud(), make_cud()])
    umgr.wait_units([u.uid for u in units], timeout=timeout)
    _check_done(units, "warm-up")


def startup(n: int, timeout: float) -> dict[str, float]:
    """Time ``submit_pilots`` -> PMGR_ACTIVE (``n`` is ignored)."""
    with pilot_session(timeout) as (_umgr, timings):
        return dict(timings)


def _throughput(make_cud: Any, n: int, timeout: float, key: str,
                sandbox_in: str | None = None) -> dict[str, float]:
    make_cud()  # raises Unavailable before any process is started
    with pilot_session(timeout, sandbox_in) as (umgr, timings):
        _warm_up(umgr, make_cud, timeout)
        meter = CpuMeter(umgr._session.uid)
        meter.start()
        t0 = time.perf_counter()
        units = umgr.submit_units([make_cud() for _ in range(n)])
        t1 = time.perf_counter()
        umgr.wait_units(timeout=timeout)
        t2 = time.perf_counter()
        cpu = meter.stop(n, f"rp_{key}")
        _check_done(units, key)
        return {f"rp_{key}": rate(n, t2 - t0), f"rp_{key}_wall_s": t2 - t0,
                f"rp_{key}_submit_s": t1 - t0, f"rp_{key}_n": n,
                "rp_startup_s": timings["rp_startup_s"], **cpu}


def fn_tput(n: int, timeout: float) -> dict[str, float]:
    """Throughput of ``n`` no-op function units, submitted at once, waited for at once."""
    return _throughput(function_cud, n, timeout, "fn_tput")


def exec_tput(n: int, timeout: float) -> dict[str, float]:
    """Throughput of ``n`` ``/bin/true`` units on the 2-core pilot, its sandbox in
    :func:`ram_dir`."""
    where = ram_dir()
    values = _throughput(exec_cud, n, timeout, "exec_tput", where)
    values["rp_exec_sandbox"] = where or tempfile.gettempdir()
    return values


def exec_tput_disk(n: int, timeout: float) -> dict[str, float]:
    """:func:`exec_tput` with the pilot sandbox in the temporary directory (disk)."""
    values = _throughput(exec_cud, n, timeout, "exec_tput")
    return {"rp_disk_exec_tput": values["rp_exec_tput"],
            "rp_disk_exec_tput_wall_s": values["rp_exec_tput_wall_s"],
            "rp_disk_exec_sandbox": tempfile.gettempdir()}


def _latency(make_cud: Any, prefix: str, n: int, timeout: float) -> dict[str, float]:
    rp = _rp()
    make_cud()
    with pilot_session(timeout) as (umgr, _timings):
        _warm_up(umgr, make_cud, timeout)
        def one(i: int) -> None:
            unit = umgr.submit_units(make_cud())
            state = unit.wait(timeout=timeout)
            if state != rp.DONE:
                raise RuntimeError(f"latency unit {i} ({unit.uid}) ended {state}; expected DONE")
        return round_trips(prefix, n, one)


def latency(n: int, timeout: float) -> dict[str, float]:
    """Median and p90 of ``n`` sequential single function-unit round trips."""
    return _latency(function_cud, "rp", n, timeout)


def exec_latency(n: int, timeout: float) -> dict[str, float]:
    """Median and p90 of ``n`` sequential single ``/bin/true`` unit round trips."""
    return _latency(exec_cud, "rp_exec", n, timeout)


def queue(n: int, timeout: float) -> dict[str, float]:
    """Queue ``n`` no-op function units in one session; wall time and client peak RSS."""
    rp = _rp()
    function_cud()
    with pilot_session(timeout) as (umgr, _timings):
        t0 = time.perf_counter()
        units = umgr.submit_units([function_cud(i) for i in range(n)])
        t1 = time.perf_counter()
        umgr.wait_units(timeout=timeout)
        t2 = time.perf_counter()
        states = collections.Counter(u.state for u in units)
        done = states.get(rp.DONE, 0)
        values: dict[str, Any] = {
            "rp_queue_n": n, "rp_queue_done": done, "rp_queue_wall_s": t2 - t0,
            "rp_queue_submit_s": t1 - t0, "rp_queue_tput": rate(done, t2 - t0),
            "rp_queue_peak_rss_mb": peak_rss_mb(), "rp_queue_states": dict(states)}
        if done != n:
            # A missed target, not a crash: say why in the JSON.
            bad = next(u for u in units if u.state != rp.DONE)
            values["rp_queue_first_not_done"] = f"{bad.uid} {bad.state}: {bad.stderr!r}"[:300]
        return values


#: :func:`million` submits its units in lists of this many.
MILLION_CHUNK = 100_000


def journal_bytes(session: Any) -> int:
    """The size of a session's journal on disk: the SQLite file and its write-ahead
    log (0 for a file that is not there; a closed session has folded its log in)."""
    path = Path(session.journal.path)
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal"))
               if p.exists())


def million(n: int, timeout: float) -> dict[str, Any]:
    """Run ``n`` no-op function units through one session with callbacks on,
    submitted in lists of :data:`MILLION_CHUNK`; the client keeps no list of its
    own. Wall time from the first submit until a state callback saw the last unit
    end; client peak RSS and what grew over the RSS before the first submit, per
    unit; the journal's bytes per unit after the session closed; how many units
    ended DONE, as ``wait_units`` reports them.

    When the units have not all ended within ``timeout`` seconds, ``rp_million_tput``
    and the wall time are left out and ``rp_million_dnf_s`` says how long was waited.
    """
    rp = _rp()
    function_cud()
    final = {rp.DONE, rp.FAILED, rp.CANCELED}
    ended = {"done": 0, "final": 0}
    all_ended = threading.Event()

    def count_final(unit: Any, state: str) -> None:
        # one callback thread runs every callback, so the counts need no lock
        if state in final:
            ended["final"] += 1
            ended["done"] += state == rp.DONE
            if ended["final"] >= n:
                all_ended.set()

    values: dict[str, Any] = {"rp_million_n": n}

    def closed(session: Any) -> None:
        values["rp_million_journal_bytes"] = journal_bytes(session)
        values["rp_million_journal_per_unit"] = values["rp_million_journal_bytes"] / n

    with pilot_session(timeout, on_closed=closed) as (umgr, _timings):
        umgr.register_callback(count_final)
        before_mb = rss_mb()
        t0 = time.perf_counter()
        for start in range(0, n, MILLION_CHUNK):
            umgr.submit_units([function_cud(i)
                               for i in range(start, min(n, start + MILLION_CHUNK))])
        t1 = time.perf_counter()
        finished = all_ended.wait(max(0.0, timeout - (t1 - t0)))
        t2 = time.perf_counter()
        peak_mb = peak_rss_mb()
        if finished:
            values["rp_million_tput"] = rate(n, t2 - t0)
            values["rp_million_wall_s"] = t2 - t0
        else:
            values["rp_million_dnf_s"] = timeout
        # wait_units' own account of the states, independent of the callbacks
        states = collections.Counter(umgr.wait_units(timeout=0 if not finished else 60))
        values.update({
            "rp_million_submit_s": t1 - t0, "rp_million_done": states.get(rp.DONE, 0),
            "rp_million_callback_done": ended["done"], "rp_million_states": dict(states),
            "rp_million_peak_rss_mb": peak_mb, "rp_million_rss_before_mb": before_mb,
            "rp_million_mem_per_unit": (peak_mb - before_mb) * 2**20 / n})
    return values
