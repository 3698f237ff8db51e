"""Smoke test of ``python -m benchmarks``: it runs, exits 0 and reports positive numbers.

No timing is asserted: the machine is shared and noisy; this only pins down that the
driver, the per-job subprocesses and the JSON line work end to end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert set(summary["targets"]) == {"startup_abs", "startup_vs_htex", "exec_tput_vs_ceiling"}
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

    results = {"rp_fn_tput": 5000.0, "htex_fn_tput": 1000.0, "ppe_fn_tput": 3000.0,
               "rp_queue_done": 10, "rp_queue_n": 10, "rp_queue_peak_rss_mb": 700.0}
    rows = {e["name"]: e for e in report.evaluate(results, {"fn_tput", "queue", "latency"})}
    assert rows["fn_tput_vs_htex"]["ratio"] == 5.0 and rows["fn_tput_vs_htex"]["pass"] is False
    assert rows["fn_tput_vs_ppe"]["pass"] is True   # 1.67 >= 1.5
    assert [r for r in report.evaluate({"rp_fn_tput": 5000.0, "ppe_fn_tput": 4000.0},
                                       {"fn_tput"}) if r["name"] == "fn_tput_vs_ppe"
            ][0]["pass"] is False                   # 1.25
    assert rows["queue_all_done"]["pass"] is True
    assert rows["queue_peak_rss"]["pass"] is False
    assert rows["latency_vs_htex"]["pass"] is None  # not measured: neither pass nor fail
    assert "startup_abs" not in rows  # not selected


def test_measurements_with_rounds_alternate_their_peers_and_report_median_ratios():
    from benchmarks import plan, report

    jobs = plan.jobs(["parsl_tput"])
    rounds = plan.MEASUREMENTS["parsl_tput"].rounds
    assert rounds > 1 and len(jobs) == 3 * rounds
    assert [j.peer for j in jobs[:6]] == ["rpex", "htex", "inline", "inline", "htex", "rpex"]
    assert jobs[0].name == "parsl_tput/rpex#1" and jobs[-1].round == rounds - 1
    assert [j.name for j in plan.jobs(["parsl_tput"], quick=True)] == \
        ["parsl_tput/rpex", "parsl_tput/htex", "parsl_tput/inline"]

    per_round = [{"rpex_fn_tput": 900.0, "htex_fn_tput": 600.0},    # 1.5
                 {"rpex_fn_tput": 500.0, "htex_fn_tput": 500.0},    # 1.0
                 {"rpex_fn_tput": 1200.0, "htex_fn_tput": 1000.0}]  # 1.2
    results = report.medians(per_round)
    assert results == {"rpex_fn_tput": 900.0, "htex_fn_tput": 600.0}
    row = {e["name"]: e for e in report.evaluate(
        results, {"parsl_tput"}, rounds={"parsl_tput": per_round})}
    vs_htex = row["parsl_tput_vs_htex"]
    assert vs_htex["ratio_rounds"] == [1.5, 1.0, 1.2]
    assert vs_htex["ratio"] == 1.2 and vs_htex["pass"] is False   # median, not 900/600
    assert "1.20 (1.50 1.00 1.20)" in report.table(list(row.values()))

    # a key that two measurements report is read from the row's own measurement
    rounds = {"startup": [{"rp_startup_s": 0.5, "htex_first_result_s": 5.0}],
              "exec_tput": [{"rp_startup_s": 2.0}, {"rp_startup_s": 3.0}]}
    results = {"rp_startup_s": 2.5, "htex_first_result_s": 5.0}
    row = {e["name"]: e for e in report.evaluate(results, {"startup"}, rounds=rounds)}
    assert row["startup_abs"]["value"] == 0.5 and row["startup_abs"]["pass"] is True
    assert row["startup_vs_htex"]["ratio"] == 0.1 and row["startup_vs_htex"]["ratio_rounds"] is None


def test_dask_cluster_rows_compare_throughput_and_start_up_with_localcluster():
    from benchmarks import plan, report

    assert [j.peer for j in plan.jobs(["dask_cluster"], quick=True)] == \
        ["daskcluster", "localcluster"]
    assert plan.jobs(["dask_cluster"], quick=True)[0].n == 1000
    results = {"daskcluster_map_tput": 500.0, "localcluster_map_tput": 540.0,
               "daskcluster_array_tput": 150.0, "localcluster_array_tput": 200.0,
               "daskcluster_start_s": 0.9, "localcluster_start_s": 0.6}
    rows = {e["name"]: e for e in report.evaluate(results, {"dask_cluster"})}
    assert rows["dask_cluster_map_vs_local"]["pass"] is True      # 0.93 >= 0.9
    assert rows["dask_cluster_array_vs_local"]["pass"] is False   # 0.75
    assert rows["dask_cluster_start_vs_local"]["ratio"] == 1.5
    assert rows["dask_cluster_start_vs_local"]["pass"] is True
    assert "localcluster=540" in report.table(list(rows.values()))


def test_exec_tput_is_held_against_the_ceiling_its_cpu_per_unit_sets_median_of_rounds():
    from benchmarks import report

    def one(rp, raw, rp_us, raw_us):
        return {"rp_exec_tput": rp, "raw_exec_tput": raw,
                "rp_exec_tput_cpu_total_us": rp_us, "raw_exec_tput_cpu_total_us": raw_us}

    per_round = [one(800.0, 1000.0, 2000.0, 1600.0),    # 0.8 of raw, ceiling 0.8: 1.0
                 one(600.0, 1000.0, 2000.0, 1500.0),    # 0.6, ceiling 0.75: 0.8
                 one(900.0, 1000.0, 2000.0, 1900.0)]    # 0.9, ceiling 0.95: 0.947
    rows = {e["name"]: e for e in report.evaluate(
        report.medians(per_round), {"exec_tput"}, rounds={"exec_tput": per_round})}
    vs_raw, ceiling = rows["exec_tput_vs_raw"], rows["exec_tput_vs_ceiling"]
    assert vs_raw["target"] is None and vs_raw["pass"] is None   # information now
    assert ceiling["ratio_rounds"] == pytest.approx([1.0, 0.8, 0.9 / 0.95])
    assert ceiling["ratio"] == pytest.approx(0.9 / 0.95) and ceiling["pass"] is True
    assert ceiling["value"] == pytest.approx(0.8)                # median of 0.8, 0.6, 0.9
    assert ceiling["peers"] == {"exec_cpu_ceiling": pytest.approx(0.8)}

    # one round, as --quick runs it: the same ratio of ratios from the results alone
    row = [e for e in report.evaluate(one(600.0, 1000.0, 2000.0, 1500.0), {"exec_tput"})
           if e["name"] == "exec_tput_vs_ceiling"][0]
    assert row["ratio"] == pytest.approx(0.8) and row["pass"] is False
    assert report.derive({"rp_exec_tput": 1.0}) == {"rp_exec_tput": 1.0}  # nothing to derive


def test_million_rows_show_a_peer_out_of_time_as_did_not_finish():
    from benchmarks import plan, report

    assert [(j.peer, j.n) for j in plan.jobs(["million"], quick=True)] == \
        [("rp", 1_000_000 // plan.QUICK_DIVISOR), ("dask", 1_000_000 // plan.QUICK_DIVISOR)]
    results = {"rp_million_n": 1000, "rp_million_done": 1000, "rp_million_tput": 25_000.0,
               "rp_million_wall_s": 0.04, "rp_million_peak_rss_mb": 90.0,
               "rp_million_mem_per_unit": 2900.0, "rp_million_journal_per_unit": 280.0,
               "dask_million_dnf_s": 660.0, "dask_million_peak_rss_mb": 4000.0}
    rows = {e["name"]: e for e in report.evaluate(results, {"million"})}
    assert rows["million_tput"]["pass"] is True and rows["million_tput"]["ratio"] is None
    assert rows["million_tput"]["did_not_finish"] == {"dask_million_tput": 660.0}
    assert rows["million_peak_rss"]["did_not_finish"] is None   # dask's peak is measured
    assert rows["million_journal_per_unit"]["pass"] is True
    assert rows["million_all_done"]["pass"] is True
    text = report.table(list(rows.values()))
    assert "dask=did not finish in 660 s" in text and "dask=4,000" in text

    # rp out of time misses its targets, also those it has no value for, rather than
    # leaving them open; a row of another measurement stays open
    mine = {"rp_million_n": 1000, "rp_million_done": 10, "rp_million_dnf_s": 720.0}
    rows = {e["name"]: e for e in report.evaluate(mine, {"million", "queue"})}
    assert rows["million_tput"]["pass"] is False and rows["million_all_done"]["pass"] is False
    assert rows["million_journal_per_unit"]["pass"] is False
    assert rows["queue_peak_rss"]["pass"] is None
    assert "did not finish in 720 s" in report.table([rows["million_tput"]])
    assert report.did_not_finish({"rp_million_tput": 1.0, "rp_million_dnf_s": 5.0},
                                 "rp_million_tput") is None     # a value beats the marker


def test_a_failed_jobs_stderr_keeps_the_traceback_lines_around_a_huge_message():
    from benchmarks.driver import STDERR_LINE, STDERR_TAIL, _tail
    keys = ", ".join(f"'noop-{i:032x}'" for i in range(20_000))
    err = ("Traceback (most recent call last):\n  File \"peer_dask.py\", line 107\n"
           f"distributed.client.FutureCancelledError: lost: [{keys}]\n")
    tail = _tail(err)
    assert len(tail) <= STDERR_TAIL + 3
    assert tail.startswith("Traceback") and "line 107" in tail
    assert "FutureCancelledError: lost: ['noop-" in tail
    assert max(len(line) for line in tail.splitlines()) <= STDERR_LINE + 3
    assert _tail("short\n") == "short"
