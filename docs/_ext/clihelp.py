"""Sphinx extension: the ``--help`` of every ``rp-executor`` subcommand, from the code.

On ``builder-inited`` it writes ``<srcdir>/_generated/cli_help.rst``: one section per
entry of :data:`rp_executor.cli.COMMANDS`, holding what ``rp-executor <command>
--help`` prints (80 columns wide). The file is a fragment for ``.. include::`` and is
rewritten only when its content changed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def cli_help() -> str:
    """The reStructuredText of every subcommand's help."""
    from rp_executor import cli
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"        # argparse wraps to the terminal's width
    try:
        parser = cli.build_parser()
        subparsers = next(a for a in parser._actions if a.dest == "command").choices
        parts = []
        for name in cli.COMMANDS:
            title = f"rp-executor {name}"
            text = subparsers[name].format_help().rstrip()
            parts.append(f"{title}\n{'~' * len(title)}\n\n.. code-block:: text\n\n"
                         + "\n".join(f"   {line}" if line else "" for line in
                                     text.splitlines()) + "\n")
        return "\n".join(parts)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def _on_builder_inited(app: Any) -> None:
    out = Path(app.srcdir) / "_generated" / "cli_help.rst"
    out.parent.mkdir(exist_ok=True)
    text = cli_help()
    if not out.is_file() or out.read_text(encoding="utf-8") != text:
        out.write_text(text, encoding="utf-8")


def setup(app: Any) -> dict[str, Any]:
    """Register the generator with Sphinx."""
    app.connect("builder-inited", _on_builder_inited)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
