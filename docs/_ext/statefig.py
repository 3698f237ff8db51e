"""Sphinx extension: state-model figures and tables generated from the code.

On ``builder-inited`` it writes into ``<srcdir>/_generated/``:

* ``unit_states.svg`` and ``pilot_states.svg``: the states of
  :data:`rp_executor.states.UNIT_STATES` / ``PILOT_STATES`` as a column of boxes in
  order, an arrow between consecutive states, and a side bar that leads from every
  non-final state to FAILED and CANCELED;
* ``unit_states.rst`` / ``pilot_states.rst``: name and numeric value of every state;
* ``state_mapping.rst``: the rows of :data:`rp_executor.states.STATE_MAPPING`;
* ``unit_aliases.rst`` / ``pilot_aliases.rst``: every legacy or alias name and the
  state it resolves to;
* ``cpd_attributes.rst`` / ``cud_attributes.rst``: the attributes of the two
  description classes (name, type, default, meaning), from their schemas.

The ``.rst`` files are fragments for ``.. include::``; ``conf.py`` keeps them out of
the document list. A file is rewritten only when its content changed, so that an
incremental build does not re-read every page.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any, Iterable, Sequence

from rp_executor import states

# geometry of the figures (pixels)
_BOX_W, _BOX_H, _GAP, _PAD = 300, 26, 14, 16
_BAR_X = _PAD + _BOX_W + 40          # the side bar "any non-final state"
_SIDE_X = _BAR_X + 40                # left edge of the FAILED / CANCELED boxes
_SIDE_W = 130
_FONT = "font-family:DejaVu Sans Mono,Menlo,Consolas,monospace;font-size:12px"
_FILL = {states.DONE: "#d9f2d9", states.FAILED: "#f8d7d7", states.CANCELED: "#eeeeee"}


def _box(x: float, y: float, w: float, number: int, label: str, fill: str) -> list[str]:
    """A state's box: its value at the left, its name in the middle."""
    base = y + _BOX_H / 2 + 4
    return [f'<rect x="{x}" y="{y}" width="{w}" height="{_BOX_H}" rx="4" ry="4" '
            f'fill="{fill}" stroke="#333" stroke-width="1"/>',
            f'<text x="{x + 8}" y="{base}" style="{_FONT}" fill="#666">{number}</text>',
            f'<text x="{x + w / 2 + 8}" y="{base}" text-anchor="middle" '
            f'style="{_FONT}">{escape(label)}</text>']


def _arrow(x1: float, y1: float, x2: float, y2: float) -> str:
    return (f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#333" '
            f'stroke-width="1.2" marker-end="url(#arrow)"/>')


def state_svg(title: str, order: Sequence[str], value: Any) -> str:
    """Return an SVG picture of one state model.

    :param title: the caption drawn at the top.
    :param order: the states in order, finals last (``states.UNIT_STATES``).
    :param value: the model's value function (``states.unit_value``).
    """
    ordered = [s for s in order if s not in states.FINAL_STATES]
    top = _PAD + 24
    step = _BOX_H + _GAP
    out: list[str] = []
    for i, state in enumerate(ordered + [states.DONE]):
        y = top + i * step
        fill = _FILL.get(state, "#e8eef8")
        out += _box(_PAD, y, _BOX_W, value(state), state, fill)
        if i:
            out.append(_arrow(_PAD + _BOX_W / 2, y - _GAP, _PAD + _BOX_W / 2, y - 1))
    # the side bar: every non-final state may end FAILED or CANCELED
    first_mid = top + _BOX_H / 2
    last_mid = top + (len(ordered) - 1) * step + _BOX_H / 2
    for i in range(len(ordered)):
        mid = top + i * step + _BOX_H / 2
        out.append(f'<line x1="{_PAD + _BOX_W}" y1="{mid}" x2="{_BAR_X}" y2="{mid}" '
                   f'stroke="#999" stroke-width="1"/>')
    out.append(f'<line x1="{_BAR_X}" y1="{first_mid}" x2="{_BAR_X}" '
               f'y2="{last_mid + step}" stroke="#999" stroke-width="3"/>')
    label_y = (first_mid + last_mid) / 2
    out.append(f'<text x="{_BAR_X + 12}" y="{label_y}" style="{_FONT}" '
               f'fill="#555">any non-final state</text>')
    out.append(f'<text x="{_BAR_X + 12}" y="{label_y + 16}" style="{_FONT}" '
               f'fill="#555">→ FAILED / CANCELED</text>')
    final_y = top + len(ordered) * step
    side = [states.FAILED, states.CANCELED]
    for j, state in enumerate(side):
        y = final_y + j * step
        out += _box(_SIDE_X, y, _SIDE_W, value(state), state, _FILL[state])
    # from the bar to the side finals
    out.append(_arrow(_BAR_X, final_y + _BOX_H / 2, _SIDE_X - 1, final_y + _BOX_H / 2))
    out.append(f'<line x1="{_BAR_X}" y1="{last_mid + step}" x2="{_BAR_X}" '
               f'y2="{final_y + step + _BOX_H / 2}" stroke="#999" stroke-width="3"/>')
    out.append(_arrow(_BAR_X, final_y + step + _BOX_H / 2, _SIDE_X - 1,
                      final_y + step + _BOX_H / 2))
    width = _SIDE_X + _SIDE_W + _PAD
    height = final_y + 2 * step + _PAD
    head = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f'<title>{escape(title)}</title>',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="#333"/></marker></defs>',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
        f'<text x="{_PAD}" y="{_PAD + 8}" style="{_FONT};font-weight:bold">'
        f'{escape(title)}</text>',
    ]
    return "\n".join(head + out + ["</svg>", ""])


# ------------------------------------------------------------------------------ tables

def _plain(text: str) -> str:
    """Escape plain text (an attribute's ``doc``) for reST, so ``*args`` stays text."""
    for ch in "\\*`|_":
        text = text.replace(ch, "\\" + ch)
    return text


def _literal(value: Any) -> str:
    return "—" if value is None else f"``{value}``"


def list_table(header: Sequence[str], rows: Iterable[Sequence[str]],
               widths: Sequence[int] | None = None) -> str:
    """Return a reST ``list-table`` with a header row; cells are reST text."""
    lines = [".. list-table::", "   :header-rows: 1"]
    if widths:
        lines.append("   :widths: " + " ".join(str(w) for w in widths))
    lines.append("")
    for row in [header, *rows]:
        for k, cell in enumerate(row):
            text = str(cell) if str(cell) else " "
            lines.append(("   * - " if k == 0 else "     - ") + text)
    return "\n".join(lines) + "\n"


def values_table(order: Sequence[str], value: Any, docs: dict[str, str]) -> str:
    """States with their numeric value and the meaning from the constant's docstring."""
    return list_table(["value", "state", "meaning"],
                      [[str(value(s)), f"``{s}``", docs.get(s, "")] for s in order],
                      widths=[8, 40, 52])


def mapping_table() -> str:
    """The rows of :data:`rp_executor.states.STATE_MAPPING`."""
    return list_table(["< 0.27", "0.28", "current"],
                      [[_literal(a), _literal(b), f"``{c}``"]
                       for a, b, c in states.STATE_MAPPING])


def aliases_table(names: dict[str, str], resolve: Any, module_aliases: dict[str, str]
                  ) -> str:
    """Every accepted non-canonical name and the canonical state it resolves to."""
    rows = []
    for name in sorted(set(names) | set(module_aliases), key=lambda n: (n.lower(), n)):
        where = []
        if name in module_aliases:
            where.append("constant")
        if name in names:
            where.append("accepted name")
        rows.append([f"``{name}``", f"``{resolve(name)}``", ", ".join(where)])
    return list_table(["name", "resolves to", "as"], rows, widths=[40, 40, 20])


def _state_docs() -> dict[str, str]:
    """The docstrings of the state constants (the string literal below each one)."""
    from sphinx.pycode import ModuleAnalyzer

    attr_docs = ModuleAnalyzer.for_module("rp_executor.states").find_attr_docs()
    docs = {}
    for (_, name), lines in attr_docs.items():
        value = getattr(states, name, None)
        if isinstance(value, str) and value == name:
            docs[name] = " ".join(line.strip() for line in lines if line.strip())
    return docs


def _module_aliases(order: Sequence[str]) -> dict[str, str]:
    """Constants of the states module whose name differs from their state string."""
    return {name: value for name, value in vars(states).items()
            if name.isupper() and isinstance(value, str) and value in order
            and name != value}


def attributes_table(cls: Any) -> str:
    """The schema of a description class: name, type, default, meaning."""
    rows = []
    for attr in cls._schema:
        if attr.name.startswith("_"):
            continue
        kind = attr.expect.removeprefix("must be ")
        rows.append([f"``{attr.name}``", _plain(kind), f"``{attr.default!r}``",
                     _plain(attr.doc)])
    for alias in cls._aliases:
        rows.append([f"``{alias.name}``", "deprecated alias",
                     "", f"sets ``{alias.target}`` (warns with DeprecationWarning)"])
    return list_table(["attribute", "type", "default", "meaning"], rows,
                      widths=[22, 30, 18, 30])


# ------------------------------------------------------------------------------ output

def generate(outdir: Path) -> list[Path]:
    """Write every generated figure and table into ``outdir``; return the paths."""
    from rp_executor.description import ComputePilotDescription, ComputeUnitDescription

    docs = _state_docs()
    files = {
        "unit_states.svg": state_svg("ComputeUnit states (rp_executor.states)",
                                     states.UNIT_STATES, states.unit_value),
        "pilot_states.svg": state_svg("ComputePilot states (rp_executor.states)",
                                      states.PILOT_STATES, states.pilot_value),
        "unit_states.rst": values_table(states.UNIT_STATES, states.unit_value, docs),
        "pilot_states.rst": values_table(states.PILOT_STATES, states.pilot_value, docs),
        "state_mapping.rst": mapping_table(),
        "unit_aliases.rst": aliases_table(states.LEGACY_UNIT_STATES, states.unit_state,
                                          _module_aliases(states.UNIT_STATES)),
        "pilot_aliases.rst": aliases_table(states.LEGACY_PILOT_STATES, states.pilot_state,
                                           _module_aliases(states.PILOT_STATES)),
        "cpd_attributes.rst": attributes_table(ComputePilotDescription),
        "cud_attributes.rst": attributes_table(ComputeUnitDescription),
    }
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = outdir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _on_builder_inited(app: Any) -> None:
    generate(Path(app.srcdir) / "_generated")


def setup(app: Any) -> dict[str, Any]:
    """Register the generator with Sphinx."""
    app.connect("builder-inited", _on_builder_inited)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
