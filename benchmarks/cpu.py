"""CPU time of the processes in a measurement, read from the OS.

On this 2-core machine throughput is bounded by CPU: 2 cores divided by the CPU
time all processes spend per unit. :class:`CpuMeter` reads that time for a
pilot session (the client, its agent and workers, the units' own processes) or
for a loop in this process and the children it waited for.
"""

from __future__ import annotations

import os

import psutil


def session_processes(session_uid: str | None) -> list[psutil.Process]:
    """The session's agent and worker processes (started detached by the provider;
    their command lines hold paths in the session's sandbox); with no session, this
    process's descendants (HTEX's interchange and worker pool)."""
    if session_uid is None:
        return psutil.Process().children(recursive=True)
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "rp_executor.agent" in cmd and session_uid in cmd:
            found.append(proc)
    return found


def process_cpu(procs: list[psutil.Process]) -> dict[int, tuple[str, float, float]]:
    """``pid -> (role, own CPU s, reaped children's CPU s)``; role is ``agent``,
    ``worker`` or ``interchange`` (from the command line)."""
    out = {}
    for proc in procs:
        try:
            t = proc.cpu_times()
            cmd = " ".join(proc.cmdline())
            role = ("worker" if ".worker" in cmd or "worker_pool" in cmd else
                    "interchange" if "interchange" in cmd else "agent")
            out[proc.pid] = (role, t.user + t.system, t.children_user + t.children_system)
        except psutil.Error:
            continue
    return out


class CpuMeter:
    """CPU microseconds per unit between :meth:`start` and :meth:`stop`.

    ``client``: this process; ``pilot``: the session's agent and workers;
    ``units``: the processes the agent (or, without a session, this process)
    started and reaped meanwhile, such as ``/bin/true`` units.
    """

    def __init__(self, session_uid: str | None = None) -> None:
        self._procs = session_processes(session_uid) if session_uid else []
        self._before: tuple = ()

    def _read(self) -> tuple[float, float, float]:
        t = os.times()
        pilot = process_cpu(self._procs)
        return (t.user + t.system,
                sum(own for _, own, _ in pilot.values()),
                sum(kids for _, _, kids in pilot.values()) +
                (0.0 if self._procs else t.children_user + t.children_system))

    def start(self) -> None:
        """Read the counters at the start."""
        self._before = self._read()

    def stop(self, n: int, prefix: str) -> dict[str, float]:
        """``{prefix}_cpu_client_us``, ``_pilot_us`` (0 without a session), ``_units_us``
        and ``_total_us``: CPU per unit over ``n`` units since :meth:`start`."""
        after = self._read()
        client, pilot, units = ((a - b) / n * 1e6 for a, b in zip(after, self._before))
        return {f"{prefix}_cpu_client_us": client, f"{prefix}_cpu_pilot_us": pilot,
                f"{prefix}_cpu_units_us": units,
                f"{prefix}_cpu_total_us": client + pilot + units}
