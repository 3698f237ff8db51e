"""From collected numbers to ratios, pass/fail per target, a table and a JSON summary.

Everything here is a pure function of the flat ``results`` dict that the jobs
return (``rp_fn_tput``, ``htex_latency_ms``, ...), and of each round's dict when
a measurement runs more than once, so it is testable without running anything.

A peer that ran out of time says so with ``<peer>_<measurement>_dnf_s`` (e.g.
``dask_million_dnf_s``: the seconds it was given); its values that are missing then
show as "did not finish in N s" rather than n/a.
"""

from __future__ import annotations

import operator
import statistics
from dataclasses import dataclass
from typing import Any, Iterable

_OPS = {">=": operator.ge, "<=": operator.le, "<": operator.lt}


@dataclass(frozen=True)
class Row:
    """One line of the table: a value of rp, its peers, a ratio and maybe a target.

    :param measurement: the measurement (:data:`benchmarks.plan.MEASUREMENTS`) it reports.
    :param name: the row's key in the JSON ``targets``/``rows`` (e.g. ``fn_tput_vs_htex``).
    :param key: the results key of rp's value.
    :param unit: the value's unit.
    :param peers: results keys of the peers' values, shown beside it.
    :param ratio: ``(numerator, denominator)`` results keys, or None.
    :param op: how the target compares (``>=``, ``<=``, ``<``), or None: information only.
    :param bound: the target's bound.
    :param on: what the target tests: ``"ratio"`` or ``"value"``.
    """

    measurement: str
    name: str
    key: str
    unit: str
    peers: tuple[str, ...] = ()
    ratio: tuple[str, str] | None = None
    op: str | None = None
    bound: float = 0.0
    on: str = "ratio"

    def target_text(self) -> str:
        """The target in words, e.g. ``ratio >= 10`` or ``<= 600 MB``; '' if none."""
        if self.op is None:
            return ""
        if self.on == "ratio":
            return f"ratio {self.op} {self.bound:g}"
        return f"{self.op} {self.bound:g} {self.unit}"


ROWS: tuple[Row, ...] = (
    Row("startup", "startup_abs", "rp_startup_s", "s",
        ("htex_first_result_s", "dask_first_result_s"),
        ("rp_startup_s", "htex_first_result_s"), "<=", 1.0, "value"),
    Row("startup", "startup_vs_htex", "rp_startup_s", "s", ("htex_first_result_s",),
        ("rp_startup_s", "htex_first_result_s"), "<", 1.0),
    Row("startup", "startup_vs_dask", "rp_startup_s", "s", ("dask_first_result_s",),
        ("rp_startup_s", "dask_first_result_s")),
    Row("fn_tput", "fn_tput_vs_htex", "rp_fn_tput", "tasks/s", ("htex_fn_tput",),
        ("rp_fn_tput", "htex_fn_tput"), ">=", 10.0),
    Row("fn_tput", "fn_tput_vs_ppe", "rp_fn_tput", "tasks/s", ("ppe_fn_tput",),
        ("rp_fn_tput", "ppe_fn_tput"), ">=", 1.5),
    Row("fn_tput", "fn_tput_vs_dask", "rp_fn_tput", "tasks/s", ("dask_fn_tput",),
        ("rp_fn_tput", "dask_fn_tput")),
    Row("latency", "latency_vs_htex", "rp_latency_ms", "ms",
        ("htex_latency_ms", "dask_latency_ms", "ppe_latency_ms"),
        ("rp_latency_ms", "htex_latency_ms"), "<=", 0.5),
    Row("latency", "latency_p90", "rp_latency_p90_ms", "ms",
        ("htex_latency_p90_ms", "dask_latency_p90_ms", "ppe_latency_p90_ms"),
        ("rp_latency_p90_ms", "htex_latency_p90_ms")),
    Row("fn_tput", "client_fn_tput", "client_fn_tput", "tasks/s",
        ("rp_fn_tput", "dask_fn_tput", "ppe_fn_tput"), ("client_fn_tput", "dask_fn_tput")),
    Row("latency", "client_latency", "client_latency_ms", "ms",
        ("client_latency_p90_ms", "rp_latency_ms", "dask_latency_ms"),
        ("client_latency_ms", "dask_latency_ms")),
    Row("latency", "exec_latency", "rp_exec_latency_ms", "ms", ("rp_exec_latency_p90_ms",)),
    Row("exec_tput", "exec_tput_vs_raw", "rp_exec_tput", "tasks/s", ("raw_exec_tput",),
        ("rp_exec_tput", "raw_exec_tput")),
    # CPU per unit, all processes: on 2 busy cores, raw's over rp's bounds the ratio above
    Row("exec_tput", "exec_cpu_ceiling", "rp_exec_tput_cpu_total_us", "us/unit",
        ("raw_exec_tput_cpu_total_us", "rp_exec_tput_cpu_units_us",
         "raw_exec_tput_cpu_units_us"),
        ("raw_exec_tput_cpu_total_us", "rp_exec_tput_cpu_total_us")),
    # how close the throughput ratio comes to the bound its CPU per unit sets
    Row("exec_tput", "exec_tput_vs_ceiling", "exec_tput_vs_raw", "x raw",
        ("exec_cpu_ceiling",), ("exec_tput_vs_raw", "exec_cpu_ceiling"), ">=", 0.9),
    Row("exec_tput", "exec_tput_disk", "rp_disk_exec_tput", "tasks/s", ("raw_exec_tput",),
        ("rp_disk_exec_tput", "raw_exec_tput")),
    Row("parsl_tput", "parsl_tput_vs_htex", "rpex_fn_tput", "tasks/s", ("htex_fn_tput",),
        ("rpex_fn_tput", "htex_fn_tput"), ">=", 1.3),
    Row("parsl_tput", "parsl_dfk_alone", "inline_fn_tput", "tasks/s",
        ("htex_fn_tput", "rpex_fn_tput"), ("inline_fn_tput", "htex_fn_tput")),
    Row("parsl_tput", "parsl_vs_dfk_alone", "rpex_fn_tput", "tasks/s",
        ("inline_fn_tput",), ("rpex_fn_tput", "inline_fn_tput")),
    Row("dask_cluster", "dask_cluster_map_vs_local", "daskcluster_map_tput", "tasks/s",
        ("localcluster_map_tput",), ("daskcluster_map_tput", "localcluster_map_tput"),
        ">=", 0.9),
    Row("dask_cluster", "dask_cluster_array_vs_local", "daskcluster_array_tput", "tasks/s",
        ("localcluster_array_tput",), ("daskcluster_array_tput", "localcluster_array_tput"),
        ">=", 0.9),
    Row("dask_cluster", "dask_cluster_start_vs_local", "daskcluster_start_s", "s",
        ("localcluster_start_s",), ("daskcluster_start_s", "localcluster_start_s"),
        "<=", 1.5),
    Row("queue", "queue_all_done", "rp_queue_done", "units", ("rp_queue_n",),
        ("rp_queue_done", "rp_queue_n"), ">=", 1.0),
    Row("queue", "queue_peak_rss", "rp_queue_peak_rss_mb", "MB", (), None, "<=", 600.0, "value"),
    Row("queue", "queue_wall", "rp_queue_wall_s", "s", ("rp_queue_tput",)),
    Row("million", "million_tput", "rp_million_tput", "tasks/s", ("dask_million_tput",),
        ("rp_million_tput", "dask_million_tput"), ">=", 20_000.0, "value"),
    Row("million", "million_wall", "rp_million_wall_s", "s", ("dask_million_wall_s",)),
    Row("million", "million_peak_rss", "rp_million_peak_rss_mb", "MB",
        ("dask_million_peak_rss_mb",)),
    Row("million", "million_mem_per_unit", "rp_million_mem_per_unit", "B/unit",
        ("rp_million_rss_before_mb",)),
    Row("million", "million_journal_per_unit", "rp_million_journal_per_unit", "B/unit",
        (), None, "<=", 300.0, "value"),
    Row("million", "million_all_done", "rp_million_done", "units", ("rp_million_n",),
        ("rp_million_done", "rp_million_n"), ">=", 1.0),
)

#: Results computed from other results, in this order (one may use one before it):
#: name -> ``(numerator, denominator)``. They are computed for each round, so that a
#: row with a ratio of them takes the median of the rounds' ratios as any other.
DERIVED: dict[str, tuple[str, str]] = {
    "exec_tput_vs_raw": ("rp_exec_tput", "raw_exec_tput"),
    "exec_cpu_ceiling": ("raw_exec_tput_cpu_total_us", "rp_exec_tput_cpu_total_us"),
}

#: The ending of the key by which a peer says it ran out of time (see the module doc).
DNF_SUFFIX = "_dnf_s"


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(results: dict[str, Any], key: str) -> float | None:
    value = results.get(key)
    return float(value) if _numeric(value) else None


def ratio(results: dict[str, Any], num: str, den: str) -> float | None:
    """Return ``results[num] / results[den]``, or None if either is missing or den is 0."""
    a, b = _number(results, num), _number(results, den)
    return a / b if a is not None and b else None


def derive(results: dict[str, Any],
           derived: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    """Return ``results`` with the :data:`DERIVED` ratios (or ``derived``) added, each
    where both its numbers are there; the results' own keys are kept as they are."""
    out = dict(results)
    for name, (num, den) in (DERIVED if derived is None else derived).items():
        if name not in results:
            r = ratio(out, num, den)
            if r is not None:
                out[name] = r
    return out


def did_not_finish(results: dict[str, Any], key: str) -> float | None:
    """The seconds a peer was given when ``key`` is missing because the peer ran out
    of time (``<prefix of key>_dnf_s`` is there, e.g. ``dask_million_dnf_s`` for
    ``dask_million_tput``), else None."""
    if _number(results, key) is not None:
        return None
    parts = key.split("_")
    for end in range(len(parts), 0, -1):
        seconds = _number(results, "_".join(parts[:end]) + DNF_SUFFIX)
        if seconds is not None:
            return seconds
    return None


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One results dict from the rounds' dicts: the median of each number found in
    more than one round, otherwise the value as it is."""
    merged: dict[str, Any] = {}
    for values in rounds:
        for key, value in values.items():
            merged.setdefault(key, []).append(value)
    out = {}
    for key, values in merged.items():
        numbers = [v for v in values if _numeric(v)]
        out[key] = statistics.median(numbers) if len(numbers) > 1 else values[-1]
    return out


def evaluate(results: dict[str, Any], measurements: Iterable[str] | None = None,
             rows: tuple[Row, ...] = ROWS,
             rounds: dict[str, list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """Return one dict per row: value, peers, ratio, target text and pass (None: n/a).

    :param measurements: keep only the rows of these measurements (all when None).
    :param rounds: per measurement, each round's results. A row then reads its own
        measurement's values (medians over the rounds; other measurements may
        report a key too, such as ``rp_startup_s``), and when it ran more than once
        its ratio is the median of the rounds' ratios (``ratio_rounds`` lists
        them), each taken between peers that ran minutes apart at most.
    """
    keep = None if measurements is None else set(measurements)
    out = []
    for row in rows:
        if keep is not None and row.measurement not in keep:
            continue
        mine = [derive(v) for v in (rounds or {}).get(row.measurement, [])]
        values = {**derive(results), **medians(mine)}
        value = _number(values, row.key)
        dnf = {k: s for k in (row.key, *row.peers)
               if (s := did_not_finish(values, k)) is not None}
        r = ratio(values, *row.ratio) if row.ratio else None
        per_round = [x for x in (ratio(v, *row.ratio) for v in mine)
                     if x is not None] if row.ratio else []
        if len(per_round) > 1:
            r = statistics.median(per_round)
        tested = r if row.on == "ratio" else value
        passed = None if row.op is None else \
            False if row.key in dnf else \
            None if tested is None else bool(_OPS[row.op](tested, row.bound))
        out.append({
            "measurement": row.measurement, "name": row.name, "key": row.key,
            "value": value, "unit": row.unit,
            "peers": {k: _number(values, k) for k in row.peers},
            "ratio_of": "/".join(row.ratio) if row.ratio else None, "ratio": r,
            "ratio_rounds": per_round if len(per_round) > 1 else None,
            "target": row.target_text() or None, "pass": passed,
            "did_not_finish": dnf or None,
        })
    return out


def ratios(evaluated: list[dict[str, Any]]) -> dict[str, float | None]:
    """Return ``{"num/den": ratio}`` for every row that has a ratio."""
    return {e["ratio_of"]: e["ratio"] for e in evaluated if e["ratio_of"]}


def fmt(x: float | None) -> str:
    """Format a number for the table with about three significant digits."""
    if x is None:
        return "n/a"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _peer_name(key: str) -> str:
    """``htex_latency_ms`` -> ``htex``; ``rp_exec_latency_p90_ms`` -> ``rp_exec p90``."""
    for suffix in ("_first_result_s", "_fn_tput", "_exec_tput", "_latency_p90_ms",
                   "_latency_ms", "_queue_n", "_queue_tput", "_map_tput", "_array_tput",
                   "_start_s", "_million_tput", "_million_wall_s", "_million_peak_rss_mb",
                   "_million_rss_before_mb", "_million_n"):
        if key.endswith(suffix):
            head = key[: -len(suffix)]
            return {"_latency_p90_ms": f"{head} p90", "_queue_n": "of",
                    "_queue_tput": "tasks/s", "_million_n": "of",
                    "_million_rss_before_mb": "MB before"}.get(suffix, head)
    return key


def _shown(key: str, value: float | None, dnf: dict[str, float]) -> str:
    """A value as the table shows it: the number, or that its peer did not finish."""
    return f"did not finish in {dnf[key]:g} s" if key in dnf else fmt(value)


def table(evaluated: list[dict[str, Any]]) -> str:
    """Return the rows as an aligned text table (name, value, unit, peers, ratio, target, pass)."""
    header = ("name", "value", "unit", "peer values", "ratio", "target", "pass")
    lines = [header]
    for e in evaluated:
        dnf = e.get("did_not_finish") or {}
        peers = "  ".join(f"{_peer_name(k)}={_shown(k, v, dnf)}"
                          for k, v in e["peers"].items())
        passed = "" if e["target"] is None else \
            ("n/a" if e["pass"] is None else ("PASS" if e["pass"] else "FAIL"))
        shown = "" if e["ratio_of"] is None else fmt(e["ratio"])
        if e.get("ratio_rounds"):
            shown += " (" + " ".join(fmt(x) for x in e["ratio_rounds"]) + ")"
        lines.append((e["name"], _shown(e["key"], e["value"], dnf), e["unit"], peers, shown,
                      e["target"] or "", passed))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rendered = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
                for line in lines]
    rendered.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(rendered)


def summary(results: dict[str, Any], evaluated: list[dict[str, Any]],
            **extra: Any) -> dict[str, Any]:
    """Return the JSON summary: results, ratios, targets with pass/fail, and ``extra``."""
    targets = {e["name"]: {"target": e["target"], "ratio": e["ratio"], "value": e["value"],
                           "pass": e["pass"], "ratio_rounds": e.get("ratio_rounds"),
                           "did_not_finish": e.get("did_not_finish")}
               for e in evaluated if e["target"] is not None}
    return {"bench": "rp-executor", **extra, "results": results,
            "ratios": ratios(evaluated), "targets": targets,
            "passed": sum(1 for t in targets.values() if t["pass"] is True),
            "failed": sum(1 for t in targets.values() if t["pass"] is False),
            "not_measured": sum(1 for t in targets.values() if t["pass"] is None)}
