"""Where the CPU goes: per process and per client thread, in microseconds per unit.

``python -m benchmarks.cpu_split fn 20000`` (or ``exec 5000``, ``parsl 6000``, ``htex
6000``) runs that many no-op function units, ``/bin/true`` units or Parsl apps through
one 2-core local pilot (or, for ``htex``, Parsl's HTEX with two workers: its
interchange is counted, its worker pool, detached by the provider, is not), as the
benchmarks do, and prints the CPU time each process (client,
agent, workers, the units' processes) and each client thread used per unit. On a
2-core machine the sum bounds the throughput: 2 cores / total CPU per unit.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from typing import Any

from benchmarks import driver, peer_htex, peer_parsl, peer_rp
from benchmarks.cpu import process_cpu, session_processes

_TICK = os.sysconf("SC_CLK_TCK")


def _threads() -> dict[int, tuple[str, float]]:
    """CPU seconds of each thread of this process, by native id."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue   # the thread ended meanwhile
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / _TICK)
    return out


def measure(kind: str, n: int) -> dict[str, float]:
    """Run ``n`` units of ``kind`` and return CPU microseconds per unit by consumer."""
    result: dict[str, float] = {}

    def run(session_uid: str | None, submit_all: Any) -> None:
        procs = session_processes(session_uid)
        before_p, before_t = process_cpu(procs), _threads()
        t0 = time.perf_counter()
        submit_all()
        wall = time.perf_counter() - t0
        after_p, after_t = process_cpu(procs), _threads()
        names = {t.native_id: t.name for t in threading.enumerate()}
        result["rate_per_s"] = n / wall
        for pid, (name, own, kids) in after_p.items():
            b = before_p.get(pid, (name, 0.0, 0.0))
            key = f"{name}.{pid}"
            result[key] = (own - b[1]) / n * 1e6
            if kids - b[2] > 0:
                result[f"{key} children"] = (kids - b[2]) / n * 1e6
        for tid, (name, cpu) in after_t.items():
            used = cpu - before_t.get(tid, (name, 0.0))[1]
            if used > 0:
                result[f"client {names.get(tid, name)}"] = used / n * 1e6

    if kind == "parsl":
        import parsl
        with peer_parsl.loaded(120) as (app, _timings):
            uid = parsl.dfk().executors["rpex"]._session.uid
            run(uid, lambda: [f.result() for f in [app(i) for i in range(n)]])
        return result
    if kind == "htex":
        with peer_htex.loaded(120) as (app, _timings):
            run(None, lambda: [f.result() for f in [app(i) for i in range(n)]])
        return result
    make = peer_rp.exec_cud if kind == "exec" else peer_rp.function_cud
    where = peer_rp.ram_dir() if kind == "exec" else None
    with peer_rp.pilot_session(120, where) as (umgr, _timings):
        umgr.submit_units([make(), make()])
        umgr.wait_units(timeout=120)
        run(umgr._session.uid, lambda: (umgr.submit_units([make() for _ in range(n)]),
                                        umgr.wait_units(timeout=300)))
    return result


def main() -> None:
    """Command line: ``python -m benchmarks.cpu_split {fn,exec,parsl,htex} N``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("fn", "exec", "parsl", "htex"))
    parser.add_argument("n", type=int)
    args = parser.parse_args()
    os.environ.update(driver.child_env())   # HTEX's workers import benchmarks.payloads
    values = measure(args.kind, args.n)
    print(f"{args.kind}, N={args.n}: {values.pop('rate_per_s'):,.0f} units/s")
    total = 0.0
    for key, us in sorted(values.items(), key=lambda kv: -kv[1]):
        total += us
        print(f"  {key:40s} {us:8.1f} us/unit")
    print(f"  {'total':40s} {total:8.1f} us/unit")


if __name__ == "__main__":
    main()
