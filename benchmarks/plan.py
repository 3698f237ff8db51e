"""What is measured: the measurements, their sizes, time limits and peers.

A :class:`Job` is one (measurement, peer) pair; each runs in its own fresh
subprocess (see :mod:`benchmarks.child`) so that peers never share warm state,
threads or imported modules.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

#: ``--quick`` divides every N by this (and keeps at least ``QUICK_MIN``).
QUICK_DIVISOR = 20
QUICK_MIN = 10


@dataclass(frozen=True)
class Measurement:
    """One measurement and the peers it compares.

    :param name: the name ``--only`` selects it by.
    :param n: tasks per peer (the issue's N).
    :param timeout_s: the wall-clock limit of each peer's subprocess.
    :param peers: ``(peer, "module:function")`` pairs; the function takes
        ``(n, timeout)`` and returns a dict of named numbers.
    :param doc: what is measured, in words.
    :param rounds: how often the peers run, in alternating order; the report takes
        the median of each round's ratio (peers a minute apart on this shared
        machine differ by up to half; neighbours in time differ less).
    """

    name: str
    n: int
    timeout_s: float
    peers: tuple[tuple[str, str], ...]
    doc: str
    rounds: int = 1


@dataclass(frozen=True)
class Job:
    """One peer of one measurement, at the size and limit it runs with."""

    measurement: str
    peer: str
    ref: str
    n: int
    timeout_s: float
    round: int = 0
    rounds: int = 1

    @property
    def name(self) -> str:
        """``measurement/peer`` (``#round`` added when it runs more than once), as
        shown in progress lines and error reports."""
        name = f"{self.measurement}/{self.peer}"
        return f"{name}#{self.round + 1}" if self.rounds > 1 else name


MEASUREMENTS: dict[str, Measurement] = {m.name: m for m in (
    Measurement("startup", 1, 120, (
        ("rp", "benchmarks.peer_rp:startup"),
        ("htex", "benchmarks.peer_htex:startup"),
        ("dask", "benchmarks.peer_dask:startup"),
    ), "rp submit_pilots -> PMGR_ACTIVE; HTEX parsl.load -> first result; "
       "Dask LocalCluster+Client -> first result"),
    Measurement("fn_tput", 20_000, 300, (
        ("rp", "benchmarks.peer_rp:fn_tput"),
        ("htex", "benchmarks.peer_htex:fn_tput"),
        ("dask", "benchmarks.peer_dask:fn_tput"),
        ("ppe", "benchmarks.peer_local:ppe_fn_tput"),
        ("client", "benchmarks.peer_client:fn_tput"),
    ), "no-op function throughput, submit all then wait all"),
    Measurement("latency", 500, 180, (
        ("rp", "benchmarks.peer_rp:latency"),
        ("rp_exec", "benchmarks.peer_rp:exec_latency"),
        ("htex", "benchmarks.peer_htex:latency"),
        ("dask", "benchmarks.peer_dask:latency"),
        ("ppe", "benchmarks.peer_local:ppe_latency"),
        ("client", "benchmarks.peer_client:latency"),
    ), "sequential single submit+wait round trips"),
    Measurement("exec_tput", 5_000, 180, (
        ("rp", "benchmarks.peer_rp:exec_tput"),
        ("raw", "benchmarks.peer_local:raw_exec_tput"),
        ("rp_disk", "benchmarks.peer_rp:exec_tput_disk"),
    ), "/bin/true throughput: rp executable units (pilot sandbox in /dev/shm) vs a "
       "two-thread subprocess.run loop; rp_disk: the sandbox in the temp dir", 3),
    Measurement("parsl_tput", 10_000, 300, (
        ("rpex", "benchmarks.peer_parsl:fn_tput"),
        ("htex", "benchmarks.peer_htex:fn_tput"),
        ("inline", "benchmarks.peer_parsl:inline_fn_tput"),
    ), "no-op Parsl python_app throughput: RPExecutor (one 2-core pilot) vs HTEX "
       "(2 workers), submit all then wait all; inline: an executor that does no work "
       "(what the DataFlowKernel costs by itself)", 3),
    Measurement("dask_cluster", 20_000, 300, (
        ("daskcluster", "benchmarks.peer_dask_cluster:pilot"),
        ("localcluster", "benchmarks.peer_dask_cluster:local"),
    ), "real distributed: DaskCluster on one 2-core local pilot (2 workers, TLS) vs "
       "Dask's LocalCluster (2 workers, TCP): start-up to the first result, client.map "
       "throughput, a dask.array sum in graph tasks/s", 3),
    Measurement("queue", 100_000, 600, (
        ("rp", "benchmarks.peer_rp:queue"),
    ), "no-op function units queued in one session: all DONE, wall time, client peak RSS"),
    Measurement("million", 1_000_000, 900, (
        ("rp", "benchmarks.peer_rp:million"),
        ("dask", "benchmarks.peer_dask:million"),
    ), "no-op function units through one session with callbacks on, submitted in lists "
       "of 100,000: throughput, client peak RSS, bytes per unit in client memory and in "
       "the journal, all DONE; Dask's client.map of the same N on LocalCluster (2 "
       "workers), 'did not finish' past its limit"),
)}


def jobs(only: list[str] | None = None, quick: bool = False,
         timeout_scale: float = 1.0) -> list[Job]:
    """Return the jobs to run, in measurement order.

    :param only: measurement names to keep (all when None).
    :param quick: divide every N by :data:`QUICK_DIVISOR` and run one round each.
    :param timeout_scale: multiply every time limit by this.
    :raises ValueError: ``only`` names an unknown measurement.
    """
    names = list(MEASUREMENTS) if not only else only
    unknown = [n for n in names if n not in MEASUREMENTS]
    if unknown:
        raise ValueError(f"unknown measurement {unknown[0]!r}; "
                         f"known: {', '.join(MEASUREMENTS)}")
    out = []
    for name in MEASUREMENTS:  # keep the canonical order whatever --only says
        if name not in names:
            continue
        m = MEASUREMENTS[name]
        n = max(QUICK_MIN, m.n // QUICK_DIVISOR) if quick and m.n > 1 else m.n
        rounds = 1 if quick else m.rounds
        for r in range(rounds):
            peers = m.peers if r % 2 == 0 else m.peers[::-1]
            out.extend(Job(m.name, peer, ref, n, m.timeout_s * timeout_scale, r, rounds)
                       for peer, ref in peers)
    return out


def resolve(ref: str) -> Callable[[int, float], dict]:
    """Import ``"module:function"`` and return the function."""
    module, _, func = ref.partition(":")
    return getattr(importlib.import_module(module), func)
