"""The tutorial notebook of the docs runs in a real Jupyter kernel (nbclient), so it
cannot rot: its views render as HTML, its bars as widgets or text, its plot as a PNG."""

from __future__ import annotations

import base64
from pathlib import Path

import nbclient
import nbformat
import pytest

from support import assert_no_session_processes, html_problems

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "tutorial.ipynb"


@pytest.mark.timeout(600)
def test_the_tutorial_notebook_runs_in_a_real_kernel(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()     # raises CellExecutionError if a cell (an assert) fails

    outputs = [(cell.source, out) for cell in nb.cells if cell.cell_type == "code"
               for out in cell.get("outputs", [])]
    errors = [out for _, out in outputs if out.get("output_type") == "error"]
    assert not errors, errors
    views = {source.splitlines()[-1]: out["data"]["text/html"] for source, out in outputs
             if out.get("output_type") == "execute_result" and "text/html" in out["data"]}
    for name in ("client", "umgr", "units[-1]", "pilot"):
        assert name in views, (name, list(views))
        assert not html_problems(views[name]), (name, html_problems(views[name]))
    assert "fails on purpose" in views["umgr"] or "FAILED" in views["umgr"]
    pngs = [out["data"]["image/png"] for _, out in outputs
            if out.get("output_type") == "execute_result" and "image/png" in out["data"]]
    assert len(pngs) == 1
    png = base64.b64decode(pngs[0])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    sessions = [p.name for p in tmp_path.iterdir() if p.name.startswith("rp.session.")]
    assert len(sessions) == 2, sessions      # the client's and the RP workflow's
    for uid in sessions:
        assert_no_session_processes(uid)
