"""Smoke test of ``python -m benchmarks``: it runs, exits 0 and reports positive numbers.

No timing is asserted: the machine is shared and noisy; this only pins down that the
driver, the per-job subprocesses and the JSON line work end to end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

MEASURED_KEYS = ("rp_startup_s", "htex_first_result_s", "dask_first_result_s",
                 "rp_exec_tput", "raw_exec_tput")


def test_quick_startup_and_exec_tput_print_positive_numbers(tmp_path):
    json_out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "startup,exec_tput",
         "--json-out", str(json_out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    last = proc.stdout.strip().splitlines()[-1]
    summary = json.loads(last)
    assert summary["errors"] == {}
    results = summary["results"]
    for key in MEASURED_KEYS:
        assert isinstance(results.get(key), (int, float)) and results[key] > 0, (key, results)
    assert summary["ratios"]["rp_exec_tput/raw_exec_tput"] > 0
    assert set(summary["targets"]) == {"startup_abs", "startup_vs_htex", "exec_tput_vs_raw"}
    assert all(isinstance(t["pass"], bool) for t in summary["targets"].values())
    assert json.loads(json_out.read_text()) == summary
    assert "startup_vs_htex" in proc.stdout  # the table came before the JSON line


def test_unknown_measurement_is_refused_with_the_known_names():
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "nope"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "'nope'" in proc.stderr and "fn_tput" in proc.stderr


def test_report_passes_misses_and_leaves_unmeasured_targets_open():
    from benchmarks import report

    results = {"rp_fn_tput": 5000.0, "htex_fn_tput": 1000.0, "ppe_fn_tput": 4000.0,
               "rp_queue_done": 10, "rp_queue_n": 10, "rp_queue_peak_rss_mb": 700.0}
    rows = {e["name"]: e for e in report.evaluate(results, {"fn_tput", "queue", "latency"})}
    assert rows["fn_tput_vs_htex"]["ratio"] == 5.0 and rows["fn_tput_vs_htex"]["pass"] is False
    assert rows["fn_tput_vs_ppe"]["pass"] is True
    assert rows["queue_all_done"]["pass"] is True
    assert rows["queue_peak_rss"]["pass"] is False
    assert rows["latency_vs_htex"]["pass"] is None  # not measured: neither pass nor fail
    assert "startup_abs" not in rows  # not selected
