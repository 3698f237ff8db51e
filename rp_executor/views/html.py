"""HTML views for notebooks: the ``_repr_html_`` of every class a user holds.

A view is self-contained HTML: inline styles only, no script, no stylesheet, no
external font or URL. Every text is escaped (:func:`esc`) unless it was built here
as :class:`Html`, so that a name, a stderr or a label holding ``<script>`` shows as
text. Views list a few rows at most (:data:`MAX_ROWS`): a manager of a million units
costs one pass over its units' states.

The building blocks are :func:`badge` (a state in the colour of its family),
:func:`state_counts`, :func:`table` and :func:`frame`; the ``*_view`` functions
compose them for each class.
"""

from __future__ import annotations

import html
import time
from typing import Any, Iterable, Mapping, Sequence

from rp_executor import states
from rp_executor.views import summary

#: the rows a table of a view shows at most (pilots, failed units)
MAX_ROWS = 5

#: colours (background, text) of the state families
COLOURS = {
    "new": ("#e0e0e0", "#212121"),
    "pending": ("#ffe082", "#212121"),
    "running": ("#1565c0", "#ffffff"),
    "done": ("#2e7d32", "#ffffff"),
    "failed": ("#c62828", "#ffffff"),
    "canceled": ("#6d4c41", "#ffffff"),
}

_RUNNING = frozenset({states.EXECUTING, states.AGENT_STAGING_OUTPUT_PENDING,
                      states.AGENT_STAGING_OUTPUT, states.UMGR_STAGING_OUTPUT_PENDING,
                      states.UMGR_STAGING_OUTPUT, states.PMGR_ACTIVE, "running"})
_FAMILY = {states.NEW: "new", states.DONE: "done", states.FAILED: "failed",
           states.CANCELED: "canceled", "finished": "done", "error": "failed",
           "cancelled": "canceled", "pending": "pending"}

_FRAME = ("font-family:sans-serif;font-size:13px;line-height:1.4;"
          "border:1px solid #bdbdbd;border-radius:4px;padding:6px 8px;margin:2px 0;"
          "display:inline-block;max-width:100%")
_TABLE = "border-collapse:collapse;margin:4px 0;font-size:12px"
_CELL = "border:1px solid #e0e0e0;padding:2px 6px;text-align:left;vertical-align:top"
_PRE = ("margin:0;white-space:pre-wrap;font-family:monospace;font-size:11px;"
        "max-width:60em")
_MUTED = "color:#757575"


class Html(str):
    """Text that is HTML already: :func:`esc` leaves it as it is."""

    __slots__ = ()


def esc(value: Any) -> Html:
    """``value`` as HTML: escaped text (quotes too), or itself if it is :class:`Html`
    already; None is the empty string."""
    if isinstance(value, Html):
        return value
    return Html(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Html:
    """The parts, each escaped unless :class:`Html`, joined by ``sep``."""
    return Html(esc(sep).join(esc(p) for p in parts))


def tag(name: str, content: Any = "", style: str | None = None) -> Html:
    """``<name style="...">content</name>``, the content escaped unless :class:`Html`."""
    attr = f' style="{esc(style)}"' if style else ""
    return Html(f"<{name}{attr}>{esc(content)}</{name}>")


def family(state: str | None) -> str | None:
    """The family of a unit or pilot state, or of a future's status, which gives its
    colour: new, pending, running, done, failed, canceled (None for no state)."""
    if state is None:
        return None
    if state in _RUNNING:
        return "running"
    return _FAMILY.get(state, "pending")


def badge(state: str | None) -> Html:
    """A state (or a future's status) in the colours of its family."""
    if state is None:
        return tag("span", "no state", _MUTED)
    back, fore = COLOURS[family(state)]
    return tag("span", state, f"background:{back};color:{fore};border-radius:3px;"
                              "padding:0 4px;font-family:monospace;font-size:11px;"
                              "white-space:nowrap")


def state_counts(counts: Mapping[str, int]) -> Html:
    """Counts per state as badges with their numbers: ``DONE 4990 FAILED 10``."""
    if not counts:
        return tag("span", "none", _MUTED)
    return join((Html(f"{badge(state)}&nbsp;{n}") for state, n in counts.items()), " ")


def table(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> Html:
    """A table; cells are escaped unless :class:`Html`."""
    head = join(tag("th", h, _CELL) for h in header)
    body = join(tag("tr", join(tag("td", c, _CELL) for c in row)) for row in rows)
    return tag("table", join((tag("thead", tag("tr", head)), tag("tbody", body))), _TABLE)


def pre(text: Any) -> Html:
    """Preformatted text (a stderr's last lines)."""
    return tag("pre", text, _PRE)


def frame(title: Any, *parts: Any) -> Html:
    """A view: a bold title line, then each part on a line of its own."""
    lines = [tag("div", title, "font-weight:bold")]
    lines.extend(tag("div", p) for p in parts if p)
    return tag("div", join(lines), _FRAME)


def line(label: str, value: Any) -> Html:
    """``label: value``, the label muted (:func:`frame` puts it on a line)."""
    return join((tag("span", f"{label}: ", _MUTED), value))


def title(kind: str, uid: str, state: str | None = None, note: Any = None) -> Html:
    """``kind uid [badge] note`` for the title line of a view."""
    parts: list[Any] = [f"{kind} ", tag("span", uid, "font-family:monospace")]
    if state is not None:
        parts += [" ", badge(state)]
    if note:
        parts += [" ", tag("span", note, _MUTED + ";font-weight:normal")]
    return join(parts)


def more(shown: int, total: int, what: str) -> Html:
    """``'… and 12 more pilots'`` when a table shows fewer rows than there are."""
    if total <= shown:
        return Html("")
    return tag("div", f"… and {total - shown} more {what}", _MUTED)


# pilots and units --------------------------------------------------------------------

def pilot_rows(pilots: Sequence[Any], now: float) -> Html:
    """The table of the first :data:`MAX_ROWS` pilots: uid, state, resource, cores,
    GPUs, walltime left."""
    rows = [(tag("span", p.uid, "font-family:monospace"), badge(p.state), p.resource,
             p._description.cores, p._description.gpus, summary.walltime_text(p, now))
            for p in pilots[:MAX_ROWS]]
    return join((table(("pilot", "state", "resource", "cores", "GPUs", "walltime left"),
                       rows), more(len(rows), len(pilots), "pilots")))


def failed_rows(failed: Sequence[Any], n_failed: int) -> Html:
    """The table of the first failed units (``failed``, of ``n_failed``) and why
    they failed."""
    if not n_failed:
        return Html("")
    rows = [(tag("span", u.uid, "font-family:monospace"), u.name or "", u.exit_code,
             pre(summary.unit_reason(u))) for u in failed]
    return join((tag("div", f"failed units (first {len(rows)} of {n_failed}):"
                 if n_failed > len(rows) else "failed units:"),
                 table(("unit", "name", "exit code", "reason"), rows)))


def units_part(units: Sequence[Any]) -> Html:
    """Counts per state of units, and the first failed units with their reasons."""
    counts, failed = summary.census(units, MAX_ROWS)
    return join((tag("div", line(summary.plural(len(units), "unit"), state_counts(counts))),
                 failed_rows(failed, counts.get(states.FAILED, 0))))


def unit_view(unit: Any) -> Html:
    """The view of a ComputeUnit: uid and state, name, pilot, exit code, and why it
    failed."""
    what = summary.what_runs(unit._desc())
    parts = [line("name", unit.name) if unit.name else "",
             line("runs", what) if what else "",
             line("pilot", unit.pilot or "not bound yet"),
             line("exit code", unit.exit_code) if unit.exit_code is not None else ""]
    if unit.state == states.FAILED:
        parts.append(join((tag("div", "reason:", _MUTED), pre(summary.unit_reason(unit)))))
    return frame(title("ComputeUnit", unit.uid, unit.state), *parts)


def pilot_view(pilot: Any, now: float | None = None) -> Html:
    """The view of a ComputePilot: uid and state, resource, cores and GPUs, the
    walltime left, its job id and sandbox."""
    d = pilot._description
    now = time.time() if now is None else now
    return frame(title("ComputePilot", pilot.uid, pilot.state),
                 line("resource", pilot.resource),
                 line("cores / GPUs", f"{d.cores} / {d.gpus}"),
                 line("walltime left", summary.walltime_text(pilot, now)),
                 line("job", pilot.job_id) if pilot.job_id else "",
                 line("sandbox", pilot.pilot_sandbox) if pilot.pilot_sandbox else "")


def pmgr_view(pmgr: Any) -> Html:
    """The view of a PilotManager: counts per state of its pilots, and the first of
    them."""
    pilots = list(pmgr._pilots.values())
    return frame(title("PilotManager", pmgr.uid, note="closed" if pmgr._closed else None),
                 line(summary.plural(len(pilots), "pilot"),
                      state_counts(summary.count_states(pilots, "pilot"))),
                 pilot_rows(pilots, time.time()) if pilots else "")


def umgr_view(umgr: Any) -> Html:
    """The view of a UnitManager: its units' counts per state, its pilots, the first
    failed units with their reasons."""
    units = summary.units_of(umgr)
    pilots = list(umgr._pilots.values())
    note = f"scheduler {umgr.scheduler}" + (", closed" if umgr._closed else "")
    return frame(title("UnitManager", umgr.uid, note=note), units_part(units),
                 line(summary.plural(len(pilots), "pilot"),
                      state_counts(summary.count_states(pilots, "pilot"))),
                 pilot_rows(pilots, time.time()) if pilots else "")


def session_view(session: Any) -> Html:
    """The view of a Session: its directory, its managers, its pilots and units."""
    pilots = list(session._pilots.values())
    units = list(session._units.values())
    umgrs = list(session._umgrs.values())
    rows = []
    for m in umgrs[:MAX_ROWS]:
        units_here = summary.units_of(m)
        rows.append((tag("span", m.uid, "font-family:monospace"), len(units_here),
                     state_counts(summary.count_states(units_here)), len(m._pilots)))
    return frame(title("Session", session.uid, note="closed" if session._closed else None),
                 line("directory", session.path),
                 line("pilot managers", ", ".join(session._pmgrs) or "none"),
                 line(summary.plural(len(pilots), "pilot"),
                      state_counts(summary.count_states(pilots, "pilot"))),
                 pilot_rows(pilots, time.time()) if pilots else "",
                 units_part(units),
                 join((table(("unit manager", "units", "states", "pilots"), rows),
                       more(len(rows), len(umgrs), "unit managers"))) if umgrs else "")


# the doors ---------------------------------------------------------------------------

def future_reason(fut: Any) -> str:
    """Why a future failed: the last lines of its unit's stderr (an executable) or
    of its traceback (a function); its exception's text otherwise."""
    exc = fut.exception()
    text = getattr(exc, "remote_traceback", None) or getattr(exc, "stderr", None)
    if text:
        return summary.reason(text)
    return summary.reason(f"{type(exc).__name__}: {exc}")


def future_view(fut: Any) -> Html:
    """The view of a Future: key and status, its unit and the unit's state, why it
    failed."""
    status = summary.future_status(fut)
    unit = fut.unit
    parts = [line("unit", join((unit.uid, " ", badge(unit.state))) if unit is not None
                  else "none (waiting for dependencies or a worker, or scattered data)")]
    if status == "error":
        parts.append(join((tag("div", "reason:", _MUTED), pre(future_reason(fut)))))
    return frame(join(("Future ", tag("span", fut.key, "font-family:monospace"), " ",
                       badge(status))), *parts)


def futures_part(futures: Sequence[Any]) -> Html:
    """Counts per status of futures."""
    return line(summary.plural(len(futures), "live future"),
                state_counts(summary.count_statuses(futures)))


def client_view(client: Any) -> Html:
    """The view of a Client: its session and unit manager, its live futures per
    status, its units per state with the first failed ones, its pilots."""
    umgr = client._umgr
    futures = summary.live_futures(client)
    units = summary.units_of(umgr)
    pilots = umgr.get_pilots()
    return frame(title("Client", umgr.uid, note="closed" if client._closed else None),
                 line("session", client._session.uid),
                 futures_part(futures), units_part(units),
                 pilot_rows(pilots, time.time()) if pilots else "")


def executor_view(executor: Any) -> Html:
    """The view of an RPExecutor: its label and provider, its blocks (pilots), the
    tasks outstanding, its units per state with the first failed ones."""
    umgr = executor._umgr
    provider = type(executor.provider).__name__ if executor.provider is not None \
        else "none"
    parts: list[Any] = [line("provider", provider),
                        line("tasks outstanding", executor.outstanding())]
    if umgr is None:
        parts.append(tag("div", "not started", _MUTED))
    else:
        parts.append(line("session", executor._session.uid))
        parts.append(units_part(summary.units_of(umgr)))
        pilots = list(executor._pilots.values())
        parts.append(line(summary.plural(len(pilots), "block"),
                          state_counts(summary.count_states(pilots, "pilot"))))
        if pilots:
            parts.append(pilot_rows(pilots, time.time()))
    return frame(join(("RPExecutor ", tag("span", executor.label,
                                          "font-family:monospace"))), *parts)
