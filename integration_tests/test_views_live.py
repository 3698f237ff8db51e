"""The notebook views (``_repr_html_``) and reprs of real sessions, managers, pilots,
units, clients, futures and Parsl executors: well-formed, self-contained HTML, every
user-supplied text escaped, the counts and colours of the states shown."""

from __future__ import annotations

import shlex

import pytest

import rp_executor as rp
from rp_executor.views.html import COLOURS, MAX_ROWS
from support import assert_no_session_processes, html_problems

EVIL = "<script>alert(1)</script> & co"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"


def view_of(obj) -> str:
    """The object's HTML view, checked: well-formed, self-contained, nothing of
    EVIL left unescaped."""
    text = obj._repr_html_()
    assert isinstance(text, str)
    assert html_problems(text) == [], (html_problems(text), text)
    assert EVIL not in text and "<script" not in text
    return text


def failing(name: str) -> rp.ComputeUnitDescription:
    """A unit named ``name`` that writes EVIL to its stderr and exits 3."""
    script = f"echo {shlex.quote(EVIL)} >&2; exit 3"
    return rp.ComputeUnitDescription(executable="/bin/sh", name=name,
                                     arguments=["-c", shlex.quote(script)])


@pytest.mark.timeout(120)
def test_views_of_a_session_its_managers_its_pilot_and_its_units(
        session, pmgr, pilot, umgr, capsys):
    cuds = [rp.ComputeUnitDescription(executable="/bin/echo", arguments=[str(i)],
                                      name=f"echo {i} & more")
            for i in range(10)]
    cuds += [failing(EVIL) for _ in range(6)]
    cuds.append(rp.ComputeUnitDescription(executable="/bin/no-such-program"))
    units = umgr.submit_units(cuds)
    states = umgr.wait_units(timeout=90, progress=True)
    assert states == [rp.DONE] * 10 + [rp.FAILED] * 7, [u.stderr for u in units]
    assert capsys.readouterr().err == ""   # not a terminal, not a notebook: no bar

    assert repr(umgr) == f"<UnitManager {umgr.uid}: 17 units (DONE 10, FAILED 7), 1 pilot>"
    assert repr(pmgr) == f"<PilotManager {pmgr.uid}: 1 pilot (PMGR_ACTIVE 1)>"
    assert repr(session) == (f"<Session {session.uid}: 1 pilot (PMGR_ACTIVE 1), "
                             f"17 units (DONE 10, FAILED 7)>")
    assert repr(units[10]) == str(units[10]) == f"<ComputeUnit {units[10].uid} FAILED>"

    page = view_of(umgr)
    done_colour, failed_colour = COLOURS["done"][0], COLOURS["failed"][0]
    assert f"background:{done_colour}" in page and f"background:{failed_colour}" in page
    assert ">DONE</span>&nbsp;10" in page and ">FAILED</span>&nbsp;7" in page
    assert "17 units" in page and f"first {MAX_ROWS} of 7" in page
    assert page.count(ESCAPED) == 2 * MAX_ROWS         # the names and the reasons
    assert units[10].uid in page and units[15].uid not in page   # 5 rows, no more
    assert pilot.uid in page and "of 10 min" in page

    unit_page = view_of(units[10])
    assert ESCAPED in unit_page and ">FAILED</span>" in unit_page
    assert "exit code: </span>3" in unit_page
    missing = view_of(units[16])
    assert "rp_executor: cannot execute &#x27;/bin/no-such-program&#x27;" in missing
    done_page = view_of(units[0])
    assert "echo 0 &amp; more" in done_page and "reason" not in done_page

    pilot_page = view_of(pilot)
    assert ">PMGR_ACTIVE</span>" in pilot_page and "2 / 0" in pilot_page
    assert "of 10 min" in pilot_page and "local.localhost" in pilot_page
    assert f"background:{COLOURS['running'][0]}" in pilot_page

    pmgr_page = view_of(pmgr)
    assert ">PMGR_ACTIVE</span>&nbsp;1" in pmgr_page and "of 10 min" in pmgr_page

    session_page = view_of(session)
    assert umgr.uid in session_page and pmgr.uid in session_page
    assert ">FAILED</span>&nbsp;7" in session_page and ESCAPED in session_page

    pilot.cancel()
    assert "ended" in view_of(pilot) and ">CANCELED</span>" in view_of(pilot)


def test_views_of_a_session_without_pilots_and_a_closed_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with rp.Session() as session:
        umgr = rp.UnitManager(session)
        assert repr(umgr) == f"<UnitManager {umgr.uid}: 0 units, 0 pilots>"
        units = umgr.submit_units([rp.ComputeUnitDescription(executable="/bin/true",
                                                             name=EVIL)] * 3)
        umgr.cancel_units(units[0].uid)
        page = view_of(umgr)
        assert ">CANCELED</span>&nbsp;1" in page
        assert f"background:{COLOURS['canceled'][0]}" in page
        assert "failed units" not in page
        assert "not bound yet" in view_of(units[1])
        view_of(session)
    assert repr(session).endswith(", closed>")
    assert "closed" in view_of(session) and repr(umgr).endswith(", closed>")


def raise_evil() -> None:
    raise ValueError(EVIL)


def square(x: int) -> int:
    return x * x


@pytest.mark.timeout(120)
def test_views_of_a_client_and_its_futures(client):
    futures = client.map(square, range(4))
    bad = client.submit(raise_evil, key=EVIL)
    client.wait([*futures, bad], timeout=90)
    assert bad.status == "error"

    page = view_of(bad)
    assert ESCAPED in page            # the key, and the reason (the remote traceback)
    assert page.count(ESCAPED) >= 2 and "ValueError" in page
    assert f"background:{COLOURS['failed'][0]}" in page and ">error</span>" in page
    assert bad.unit.uid in page

    good = view_of(futures[0])
    assert ">finished</span>" in good and "reason" not in good

    client_page = view_of(client)
    assert client.unit_manager.uid in client_page and client.session.uid in client_page
    assert ">finished</span>&nbsp;" in client_page and ">error</span>&nbsp;" in client_page
    assert "live futures" in client_page and ESCAPED in client_page
    assert repr(client).startswith(f"<Client {client.unit_manager.uid} of "
                                   f"{client.session.uid}: ")
    assert "live futures (" in repr(client) and "error 1" in repr(client)


def test_the_view_of_an_executor_not_started_escapes_its_label():
    ex = rp.RPExecutor(label=EVIL)
    page = view_of(ex)
    assert ESCAPED in page and "not started" in page and "LocalProvider" in page
    assert repr(ex).startswith("RPExecutor(")     # Parsl's repr: how it was configured


@pytest.mark.timeout(180)
def test_the_view_of_a_running_executor_shows_its_blocks_and_units(tmp_path, monkeypatch):
    import parsl
    from parsl.app.app import python_app
    from parsl.config import Config
    from parsl.launchers import SimpleLauncher
    from parsl.providers import LocalProvider

    monkeypatch.chdir(tmp_path)
    ex = rp.RPExecutor(label="views", cores_per_block=2, provider=LocalProvider(
        init_blocks=1, min_blocks=0, max_blocks=1, launcher=SimpleLauncher()))
    parsl.load(Config(executors=[ex], run_dir=str(tmp_path / "runinfo"),
                      strategy_period=0.2))
    try:
        app = python_app(square, executors=["views"])
        boom = python_app(raise_evil, executors=["views"])
        results = [app(i) for i in range(3)]
        failed = boom()
        assert [r.result(timeout=90) for r in results] == [0, 1, 4]
        with pytest.raises(ValueError):
            failed.result(timeout=90)
        page = view_of(ex)
        # a Python app's exception is the result of a DONE unit (Parsl's wrapper)
        assert ">DONE</span>&nbsp;4" in page and "4 units" in page
        assert "1 block" in page and ">PMGR_ACTIVE</span>" in page
        assert "LocalProvider" in page and "tasks outstanding: </span>0" in page
        assert "of 168 h" in page      # the executor's default runtime: a week
        assert rp.progress([*results, failed], file=None).ended == 4   # AppFutures
    finally:
        parsl.dfk().cleanup()
        parsl.clear()
    assert_no_session_processes(ex._session.uid)
