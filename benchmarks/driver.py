"""The driver: run every job in its own subprocess, collect, print table and JSON.

Progress goes to stderr; stdout carries the table, notes on what was not measured
or crashed, and, last, one JSON line. The exit code is 0 even when a target is
missed (this is a measurement, not a test) and 1 when a job crashed or timed out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import plan, report
from benchmarks.child import RESULT_MARK

REPO_ROOT = Path(__file__).resolve().parent.parent
STDERR_TAIL = 2000
STDERR_LINE = 300


@dataclass
class Outcome:
    """What one job gave: its values, or why it has none."""

    job: plan.Job
    status: str                      # "ok", "n/a" or "error"
    values: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    wall_s: float = 0.0


def child_env() -> dict[str, str]:
    """The environment of a job: the repository importable, the venv's scripts on PATH.

    Workers started by pilots, HTEX and Dask inherit it, so they can import
    ``benchmarks.payloads`` and HTEX finds ``process_worker_pool.py``.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    # Not resolved: a venv's bin/python is a symlink, and its bin/ is what we want.
    env["PATH"] = os.pathsep.join(
        p for p in (os.path.dirname(sys.executable), env.get("PATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop a job's process group (the job and what it started), TERM first, then KILL."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(text: str) -> str:
    """The end of a job's stderr, each line cut to ``STDERR_LINE`` characters first
    (an exception whose message lists a million task keys would otherwise leave only
    part of that list, and not the traceback's lines that name it)."""
    text = "\n".join(line if len(line) <= STDERR_LINE else line[:STDERR_LINE] + "..."
                     for line in text.strip().splitlines())
    return text if len(text) <= STDERR_TAIL else "..." + text[-STDERR_TAIL:]


def run_job(job: plan.Job) -> Outcome:
    """Run ``job`` in a fresh subprocess (own session and scratch cwd) and parse its line."""
    cmd = [sys.executable, "-m", "benchmarks.child", job.ref, str(job.n), str(job.timeout_s)]
    scratch = tempfile.mkdtemp(prefix=f"rpbench-{job.measurement}-{job.peer}-")
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, cwd=scratch, env=child_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=job.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            # the table then says the peer did not finish, where it reads its values
            return Outcome(job, "error", wall_s=time.perf_counter() - t0,
                           values={f"{job.peer}_{job.measurement}{report.DNF_SUFFIX}":
                                   job.timeout_s},
                           reason=f"timed out after {job.timeout_s:g} s; stderr: {_tail(err)}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    wall = time.perf_counter() - t0
    lines = [ln for ln in out.splitlines() if ln.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        return Outcome(job, "error", wall_s=wall,
                       reason=f"exit code {proc.returncode}, "
                              f"{'no' if not lines else 'a'} result line; stderr: {_tail(err)}")
    result = json.loads(lines[-1][len(RESULT_MARK):])
    if result["status"] == "n/a":
        return Outcome(job, "n/a", reason=result["reason"], wall_s=wall)
    return Outcome(job, "ok", values=result["values"], wall_s=wall)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line (see ``--help``)."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="rp-executor and its peers (Parsl HTEX, Dask, ProcessPoolExecutor, "
                    "a raw subprocess loop) side by side. Measurements: "
                    + "; ".join(f"{m.name} (N={m.n:,}): {m.doc}"
                                for m in plan.MEASUREMENTS.values()))
    p.add_argument("--quick", action="store_true",
                   help=f"divide every N by {plan.QUICK_DIVISOR} (a smoke test)")
    p.add_argument("--only", default="",
                   help="comma-separated measurements to run: "
                        + ",".join(plan.MEASUREMENTS))
    p.add_argument("--json-out", metavar="PATH", help="also write the JSON summary to PATH")
    p.add_argument("--timeout-scale", type=float, default=1.0,
                   help="multiply every per-job time limit by this (default 1)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the selected measurements; print the table and the JSON line; return the exit code."""
    args = parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()] or None
    try:
        jobs = plan.jobs(only, quick=args.quick, timeout_scale=args.timeout_scale)
    except ValueError as exc:
        print(f"python -m benchmarks: {exc}", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    load_before = os.getloadavg()
    outcomes = []
    for i, job in enumerate(jobs, 1):
        print(f"[{i}/{len(jobs)}] {job.name} (N={job.n:,}, limit {job.timeout_s:g} s) ...",
              end="", file=sys.stderr, flush=True)
        outcome = run_job(job)
        print(f" {outcome.status} in {outcome.wall_s:.1f} s", file=sys.stderr, flush=True)
        outcomes.append(outcome)
    wall = time.perf_counter() - t0

    rounds: dict[str, list[dict[str, Any]]] = {}   # measurement -> each round's values
    for o in outcomes:
        mine = rounds.setdefault(o.job.measurement, [])
        while len(mine) <= o.job.round:
            mine.append({})
        mine[o.job.round].update(o.values)
    results: dict[str, Any] = {}
    for values in rounds.values():
        results.update(report.medians(values))
    evaluated = report.evaluate(results, set(rounds), rounds=rounds)
    summary = report.summary(
        results, evaluated,
        quick=args.quick,
        n={o.job.name: o.job.n for o in outcomes},
        job_wall_s={o.job.name: round(o.wall_s, 2) for o in outcomes},
        unavailable={o.job.name: o.reason for o in outcomes if o.status == "n/a"},
        errors={o.job.name: o.reason for o in outcomes if o.status == "error"},
        machine={"cpus": os.cpu_count(), "python": platform.python_version(),
                 "loadavg_before": [round(x, 2) for x in load_before],
                 "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        wall_s=round(wall, 2))

    print(report.table(evaluated))
    print()
    for o in outcomes:
        if o.status == "n/a":
            print(f"n/a   {o.job.name}: {o.reason}")
    for o in outcomes:
        if o.status == "error":
            print(f"ERROR {o.job.name}: {o.reason}")
    print(f"total wall time {wall:.1f} s; "
          f"{summary['passed']} targets passed, {summary['failed']} failed, "
          f"{summary['not_measured']} not measured")
    line = json.dumps(summary, sort_keys=False)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")
    print(line, flush=True)
    return 1 if summary["errors"] else 0
