"""The documentation builds with warnings as errors, and shows what the code defines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rp_executor import states

DOCS = Path(__file__).resolve().parent.parent / "docs"

import sphinx  # noqa: E402,F401  - the docs extra; a missing install must fail, not skip


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the HTML docs once, fresh (``-E``), with every warning an error."""
    out = tmp_path_factory.mktemp("docs_html")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q",
         "-b", "html", str(DOCS), str(out)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, \
        f"sphinx-build failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return out


def test_docs_build_without_warnings(built_docs: Path) -> None:
    for page in ("index", "getting_started", "functions", "api", "states", "design",
                 "futures", "parsl", "dask", "staging", "resources", "views", "cli"):
        assert (built_docs / f"{page}.html").is_file(), page


def test_state_figures_are_generated_from_the_state_model(built_docs: Path) -> None:
    unit_svg = (built_docs / "_images" / "unit_states.svg").read_text(encoding="utf-8")
    pilot_svg = (built_docs / "_images" / "pilot_states.svg").read_text(encoding="utf-8")
    for state in states.UNIT_STATES:
        assert f">{state}<" in unit_svg, state
    for state in states.PILOT_STATES:
        assert f">{state}<" in pilot_svg, state
    assert "UMGR_SCHEDULING_PENDING" in unit_svg
    page = (built_docs / "states.html").read_text(encoding="utf-8")
    assert "unit_states.svg" in page and "pilot_states.svg" in page


def test_state_tables_show_values_and_legacy_names(built_docs: Path) -> None:
    page = (built_docs / "states.html").read_text(encoding="utf-8")
    for state in states.UNIT_STATES + states.PILOT_STATES:
        assert state in page, state
    for old, mid, _ in states.STATE_MAPPING:
        for legacy in (old, mid):
            assert legacy is None or legacy in page, legacy
    for legacy in (*states.LEGACY_UNIT_STATES, *states.LEGACY_PILOT_STATES):
        assert legacy in page, legacy


def test_api_page_documents_the_public_classes(built_docs: Path) -> None:
    page = (built_docs / "api.html").read_text(encoding="utf-8")
    for target in ("rp_executor.session.Session", "rp_executor.context.Context",
                   "rp_executor.pilot_manager.PilotManager", "rp_executor.pilot.ComputePilot",
                   "rp_executor.description.ComputePilotDescription",
                   "rp_executor.unit_manager.UnitManager", "rp_executor.unit.ComputeUnit",
                   "rp_executor.description.ComputeUnitDescription",
                   "rp_executor.resource_config.ResourceConfig",
                   "rp_executor.dask.cluster.DaskCluster",
                   "rp_executor.exceptions.BadParameter",
                   "rp_executor.constants.UNIT_STATE",
                   "rp_executor.unit_manager.UnitManager.submit_units",
                   "rp_executor.unit_manager.UnitManager.wait_units"):
        assert f'id="{target}"' in page, target
    assert "submit_units" in page


def test_cli_page_shows_every_commands_help_and_the_analytics(built_docs: Path) -> None:
    from rp_executor import cli
    page = (built_docs / "cli.html").read_text(encoding="utf-8")
    for name, cmd in cli.COMMANDS.items():
        assert f"usage: rp-executor {name}" in page, name
    for name in ("model.load", "model.SessionModel", "metrics.unit_durations",
                 "metrics.utilization", "frames.unit_durations_frame", "plots.plot_timeline",
                 "profiles.write_profiles"):
        assert f'id="rp_executor.analytics.{name}"' in page, name
