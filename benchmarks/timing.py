"""Small timing helpers shared by the peers: rates and latency summaries."""

from __future__ import annotations

import resource
import statistics
import sys
from typing import Sequence


def rate(n: int, seconds: float) -> float:
    """Return ``n / seconds`` (tasks per second); ``seconds`` must be positive."""
    if seconds <= 0:
        raise ValueError(f"a rate needs a positive duration; got {seconds!r} s for {n} tasks")
    return n / seconds


def percentile(samples: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (0..100) of ``samples``, linearly interpolated."""
    if not samples:
        raise ValueError("a percentile needs at least one sample; got none")
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_summary(prefix: str, samples_s: Sequence[float]) -> dict[str, float]:
    """Return ``{prefix_latency_ms, prefix_latency_p90_ms, prefix_latency_n}``."""
    return {
        f"{prefix}_latency_ms": statistics.median(samples_s) * 1e3,
        f"{prefix}_latency_p90_ms": percentile(samples_s, 90) * 1e3,
        f"{prefix}_latency_n": len(samples_s),
    }


def peak_rss_mb() -> float:
    """Return this process's peak resident set size in MB (``ru_maxrss``)."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return maxrss / 1024.0 if sys.platform != "darwin" else maxrss / 2**20
