"""Run one job in this (fresh) process and print its result as one marked JSON line.

Usage: ``python -m benchmarks.child MODULE:FUNCTION N TIMEOUT_S``.

The line is ``BENCH_RESULT {"status": "ok", "values": {...}}``; a feature that this
build lacks gives ``{"status": "n/a", "reason": ...}`` and exit code 0; a crash
prints the traceback to stderr and exits 1.
"""

from __future__ import annotations

import json
import logging
import sys
import time

RESULT_MARK = "BENCH_RESULT "
#: The share of the subprocess's limit the job's own waits may use, so that a stuck
#: wait fails with a message before the driver has to kill the process.
WAIT_SHARE = 0.8


def main(argv: list[str]) -> int:
    """Run the job named by ``argv`` and print its result line; return the exit code."""
    from benchmarks.peer_rp import Unavailable
    from benchmarks.plan import resolve

    ref, n, timeout = argv[0], int(argv[1]), float(argv[2])
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    t0 = time.perf_counter()
    try:
        values = resolve(ref)(n, timeout * WAIT_SHARE)
    except Unavailable as exc:
        result = {"status": "n/a", "reason": str(exc)}
    else:
        result = {"status": "ok", "values": values}
    result["job_wall_s"] = time.perf_counter() - t0
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
