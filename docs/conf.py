"""Sphinx configuration of the rp-executor documentation.

Build with warnings as errors::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The state figures and tables are generated from :mod:`rp_executor.states` at build
time by the local extension ``_ext/statefig.py`` (into ``docs/_generated/``).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))  # the checkout, for builds without an install

import rp_executor  # noqa: E402

project = "rp-executor"
author = "rp-executor developers"
copyright = "rp-executor developers"
release = rp_executor.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "statefig",
    "clihelp",
]

root_doc = "index"
# _generated/*.rst are fragments for ``.. include::``, not pages of their own
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {
    "members": True,
    "show-inheritance": False,
}
autoclass_content = "class"

html_theme = "alabaster"
html_title = f"rp-executor {release}"
html_static_path: list[str] = []
