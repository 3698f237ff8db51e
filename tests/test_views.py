"""The pieces of the notebook views: escaping, state colours, counts in one pass, the
walltime a pilot has left, why a unit failed, the one-line reprs. No processes; the
views of real sessions, pilots and units are in integration_tests/test_views_live.py."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

import rp_executor as rp
from rp_executor import states
from rp_executor.views import html, summary

EVIL = "<script>alert(1)</script> & co"


class Obj:
    """Something with a state, as views read units and pilots (``_state``)."""

    __slots__ = ("_state", "uid", "name", "exit_code", "stderr", "outcome")

    def __init__(self, state: str, uid: str = "") -> None:
        self._state, self.uid = state, uid
        self.name, self.exit_code, self.stderr = EVIL, 1, f"{EVIL}\nrp_executor: why"
        self.outcome = None


def test_text_is_escaped_and_html_built_here_is_not():
    assert html.esc(EVIL) == "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"
    assert html.esc('a "quoted" \'x\'') == "a &quot;quoted&quot; &#x27;x&#x27;"
    assert html.esc(None) == ""
    built = html.tag("b", EVIL)
    assert built == "<b>&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</b>"
    assert html.esc(built) is built
    # a str that only looks like HTML is text
    assert html.tag("div", "<b>x</b>") == "<div>&lt;b&gt;x&lt;/b&gt;</div>"
    cell = html.table(["<th>"], [[EVIL, html.badge(rp.DONE)]])
    assert "&lt;th&gt;" in cell and "&lt;script&gt;" in cell and "<script" not in cell


@pytest.mark.parametrize("state, family", [
    (states.NEW, "new"), (states.UMGR_SCHEDULING_PENDING, "pending"),
    (states.AGENT_SCHEDULING, "pending"), (states.EXECUTING_PENDING, "pending"),
    (states.EXECUTING, "running"), (states.UMGR_STAGING_OUTPUT, "running"),
    (states.DONE, "done"), (states.FAILED, "failed"), (states.CANCELED, "canceled"),
    (states.PMGR_LAUNCHING, "pending"), (states.PMGR_ACTIVE, "running"),
    ("pending", "pending"), ("running", "running"), ("finished", "done"),
    ("error", "failed"), ("cancelled", "canceled"),
])
def test_every_state_and_status_has_the_colour_of_its_family(state, family):
    assert html.family(state) == family
    back, fore = html.COLOURS[family]
    assert f"background:{back};color:{fore}" in html.badge(state)
    assert f">{state}</span>" in html.badge(state)


def test_the_final_states_have_distinct_colours():
    colours = {html.COLOURS[html.family(s)] for s in (*states.FINAL, states.EXECUTING)}
    assert len(colours) == 4


def test_states_are_counted_in_model_order():
    objs = [Obj(s) for s in (states.FAILED, states.DONE, states.EXECUTING, states.DONE,
                             states.NEW)]
    counts = summary.count_states(objs)
    assert counts == {states.NEW: 1, states.EXECUTING: 1, states.DONE: 2, states.FAILED: 1}
    assert list(counts) == [states.NEW, states.EXECUTING, states.DONE, states.FAILED]
    assert summary.counts_text(counts) == "NEW 1, EXECUTING 1, DONE 2, FAILED 1"
    pilots = [Obj(states.PMGR_ACTIVE), Obj(states.CANCELED), Obj(states.PMGR_ACTIVE)]
    assert summary.count_states(pilots, "pilot") == {states.PMGR_ACTIVE: 2,
                                                      states.CANCELED: 1}
    assert summary.described(0, "unit", {}) == "0 units"
    assert summary.described(1, "pilot", {states.PMGR_ACTIVE: 1}) == \
        "1 pilot (PMGR_ACTIVE 1)"


def test_a_census_of_a_million_units_gives_counts_and_the_first_failures_quickly():
    n = 1_000_000
    units = [Obj(states.DONE, f"unit.{i:06d}") for i in range(n)]
    for i in (10, 500_000, 999_990, 999_995, 999_998, 999_999):
        units[i]._state = states.FAILED
    start = time.perf_counter()
    counts, failed = summary.census(units, 5)
    took = time.perf_counter() - start
    assert counts == {states.DONE: n - 6, states.FAILED: 6}
    assert [u.uid for u in failed] == ["unit.000010", "unit.500000", "unit.999990",
                                       "unit.999995", "unit.999998"]
    assert took < 2.0, took   # about 0.1 s on a laptop; a shared CI core is slower
    failed_html = html.failed_rows(failed, counts[states.FAILED])
    assert failed_html.count("<tr>") == 1 + 5 and "first 5 of 6" in failed_html
    assert "<script" not in failed_html and "rp_executor: why" in failed_html


def test_the_reason_of_a_failure_is_the_last_lines_of_its_stderr():
    stderr = "noise 1\nnoise 2\n\nTraceback\n  boom\nrp_executor: the unit failed\n\n"
    assert summary.reason(stderr) == "Traceback\n  boom\nrp_executor: the unit failed"
    assert summary.reason(stderr, lines=1) == "rp_executor: the unit failed"
    assert summary.reason(None) == summary.reason("") == ""
    long = summary.reason("x" * 1000)
    assert len(long) == summary.REASON_WIDTH and long.endswith("…")


def pilot_like(state: str, history: list, runtime: int = 10) -> SimpleNamespace:
    return SimpleNamespace(state=state, is_final=state in states.FINAL_STATES,
                           state_history=history,
                           _description=SimpleNamespace(runtime=runtime))


def test_a_pilots_walltime_left_counts_from_when_it_became_active():
    t0 = 1000.0
    launching = pilot_like(states.PMGR_LAUNCHING, [(states.NEW, t0),
                                                    (states.PMGR_LAUNCHING, t0 + 1)])
    assert summary.walltime_left(launching, now=t0 + 100) is None
    assert summary.walltime_text(launching, now=t0 + 100) == "10 min (not active yet)"
    active = pilot_like(states.PMGR_ACTIVE, [(states.NEW, t0),
                                             (states.PMGR_ACTIVE, t0 + 60)])
    assert summary.walltime_left(active, now=t0 + 60 + 18) == 600 - 18
    assert summary.walltime_text(active, now=t0 + 60 + 18) == "9 min 42 s of 10 min"
    assert summary.walltime_left(active, now=t0 + 60 + 601) == 0.0
    ended = pilot_like(states.CANCELED, [(states.PMGR_ACTIVE, t0),
                                         (states.CANCELED, t0 + 5)])
    assert summary.walltime_left(ended, now=t0 + 10) is None
    assert summary.walltime_text(ended) == "ended"
    long = pilot_like(states.PMGR_ACTIVE, [(states.PMGR_ACTIVE, t0)], runtime=24 * 60)
    assert summary.walltime_text(long, now=t0 + 3600) == "23 h of 24 h"
    assert summary.walltime_text(long, now=t0 + 3600 + 5 * 60 + 7) == "22 h 54 min of 24 h"
    assert [summary.duration(s) for s in (12.7, 60, 65, 3600 + 300)] == \
        ["12 s", "1 min", "1 min 05 s", "1 h 05 min"]


def test_what_a_unit_runs_is_its_executable_or_its_functions_name():
    cud = rp.ComputeUnitDescription(executable="/bin/echo")
    assert summary.what_runs(cud) == "/bin/echo"
    fn = rp.ComputeUnitDescription(function=test_the_reason_of_a_failure_is_the_last_lines_of_its_stderr)
    assert summary.what_runs(fn) == "test_the_reason_of_a_failure_is_the_last_lines_of_its_stderr"
    assert summary.what_runs(rp.ComputeUnitDescription(function="os.path:join")) == \
        "os.path:join"


def test_future_statuses_are_read_from_any_future():
    import concurrent.futures as cf
    done, failed, cancelled, pending = cf.Future(), cf.Future(), cf.Future(), cf.Future()
    done.set_result(1)
    failed.set_exception(ValueError(EVIL))
    cancelled.cancel()
    assert [summary.future_status(f) for f in (done, failed, cancelled, pending)] == \
        ["finished", "error", "cancelled", "pending"]
    assert summary.count_statuses([done, failed, pending, done]) == \
        {"pending": 1, "finished": 2, "error": 1}
