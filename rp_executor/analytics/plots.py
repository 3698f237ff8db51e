"""Plots of a session, drawn with matplotlib's object-oriented API.

Each function draws on a new :class:`matplotlib.figure.Figure` (no pyplot, no global
backend: it works without a display and leaves a notebook's backend alone), writes it
to ``path`` when given (the format follows the file's suffix: PNG, SVG, PDF...) and
returns it. The time axis is seconds since the session started.

matplotlib is optional (the ``plot`` extra): the functions raise ImportError, saying
how to install it, when it is missing.
"""

from __future__ import annotations

import os
from typing import Any

from rp_executor import states
from rp_executor.analytics import metrics
from rp_executor.analytics.model import SessionModel

STATE_COLORS = {states.DONE: "#2ca02c", states.FAILED: "#d62728",
                states.CANCELED: "#7f7f7f"}
"""The colour of a unit's bar by its final state; units still running are blue."""
RUNNING_COLOR = "#1f77b4"
"""The colour of a unit that has not ended."""
PHASE_COLORS = ("#c7c7c7", "#9edae5", "#ffbb78", "#1f77b4", "#98df8a")
"""The colours of :data:`~rp_executor.analytics.metrics.PHASES`, in order."""

KINDS = ("timeline", "concurrency", "utilization")
"""The kinds of plot :func:`plot` draws."""


def _figure(rows: int = 1, height: float = 4.5) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plots need matplotlib: pip install 'rp-executor[plot]' "
                          "(or pip install matplotlib)") from exc
    fig = Figure(figsize=(10, height * rows / (1 if rows == 1 else 1.4)),
                 layout="constrained")
    return fig, [fig.add_subplot(rows, 1, k + 1) for k in range(rows)]


def _finish(fig: Any, path: str | os.PathLike | None) -> Any:
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def _start(model: SessionModel) -> float:
    return model.created if model.created is not None else 0.0


def plot_timeline(model: SessionModel, path: str | os.PathLike | None = None) -> Any:
    """One bar per unit that executed, on the core rows of its pilot (a unit of n
    cores has a bar on n rows), coloured by its final state; pilots are stacked.
    Rows are assigned by packing (:func:`~rp_executor.analytics.metrics.timeline`)."""
    fig, (ax,) = _figure()
    t0 = _start(model)
    bars = metrics.timeline(model)
    offsets, base = {}, 0
    for uid, info in model.pilots.items():
        offsets[uid] = base
        used = max((max(b.cores) + 1 for b in bars if b.pilot == uid and b.cores),
                   default=0)
        base += max(info.cores, used, 1)
    # a unit of a few milliseconds still shows: at least 1/400 of the time axis
    least = max(model.end - t0, 1e-3) / 400
    segments: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for bar in bars:
        color = STATE_COLORS.get(bar.state, RUNNING_COLOR)
        for row in bar.cores:
            segments.setdefault((offsets[bar.pilot] + row, color), []).append(
                (bar.start - t0, max(bar.stop - bar.start, least)))
    failed = STATE_COLORS[states.FAILED]     # drawn last: on top of their neighbours
    for (row, color), spans in sorted(segments.items(), key=lambda s: s[0][1] == failed):
        # white edges: units that follow each other on a core stay apart
        ax.broken_barh(spans, (row + 0.1, 0.8), facecolors=color, edgecolors="white",
                       linewidth=0.5)
    for uid, offset in offsets.items():
        if offset:
            ax.axhline(offset, color="black", linewidth=0.8)
        info = model.pilots[uid]
        ax.text(1.0, offset, f" {uid}", transform=ax.get_yaxis_transform(),
                va="bottom", fontsize=8)
        for name, ts in info.history:
            if name == states.PMGR_ACTIVE or name in states.FINAL_STATES:
                ax.plot([ts - t0] * 2, [offset, offset + max(info.cores, 1)],
                        color="black", linestyle=":", linewidth=0.8)
    ax.set_ylim(0, max(base, 1))
    _integer_ticks(ax, base)
    ax.set_xlim(left=0, right=max(model.end - t0, 1e-3))
    ax.set_xlabel("seconds since the session started")
    ax.set_ylabel("core (slot row)")
    ax.set_title(f"{model.uid}: {len(bars)} unit(s) on the cores of their pilots")
    _legend(ax, {state: color for state, color in STATE_COLORS.items()
                 if any(b.state == state for b in bars)}
            | ({"running": RUNNING_COLOR}
               if any(b.state not in STATE_COLORS for b in bars) else {}))
    if not bars:
        ax.text(0.5, 0.5, "no unit executed", transform=ax.transAxes, ha="center")
    return _finish(fig, path)


def _integer_ticks(ax: Any, rows: int) -> None:
    """Few rows: one tick in the middle of each, named by its number; many: whole
    numbers only."""
    from matplotlib.ticker import MaxNLocator
    if 0 < rows <= 32:
        ax.set_yticks([row + 0.5 for row in range(rows)], [str(row) for row in range(rows)])
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _legend(ax: Any, colors: dict[str, str]) -> None:
    from matplotlib.patches import Patch
    if colors:
        ax.legend(handles=[Patch(color=c, label=label) for label, c in colors.items()],
                  loc="upper left", fontsize=8)


def plot_concurrency(model: SessionModel, path: str | os.PathLike | None = None,
                     samples: int = 400) -> Any:
    """How many units are in each phase over time, stacked, and how many have ended
    (:func:`~rp_executor.analytics.metrics.phase_counts`)."""
    fig, (ax,) = _figure()
    from matplotlib.ticker import MaxNLocator
    t0 = _start(model)
    rows = metrics.phase_counts(model, samples)
    x = [row["time"] - t0 for row in rows]
    series = [[row[phase] for row in rows] for phase in metrics.PHASE_NAMES]
    labels = [phase.replace("_", " ") for phase in metrics.PHASE_NAMES]
    ax.stackplot(x, *series, labels=labels, colors=PHASE_COLORS, step="post")
    ax.step(x, [row["ended"] for row in rows], where="post", color="black",
            linewidth=1.2, label="ended")
    ax.set_xlim(left=0, right=max(x[-1], 1e-3))
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("seconds since the session started")
    ax.set_ylabel("units")
    ax.set_title(f"{model.uid}: units by phase ({len(model)} unit(s))")
    ax.legend(loc="upper left", fontsize=8)
    return _finish(fig, path)


def plot_utilization(model: SessionModel, path: str | os.PathLike | None = None,
                     samples: int = 400) -> Any:
    """Each pilot's cores (and GPUs, if any) in use by executing units against those
    it held, over time; the legend gives each pilot's utilization
    (:func:`~rp_executor.analytics.metrics.utilization`)."""
    from matplotlib.ticker import MaxNLocator
    gpus = any(info.gpus for info in model.pilots.values())
    fig, axes = _figure(2 if gpus else 1)
    t0 = _start(model)
    totals = {u.pilot: u for u in metrics.utilization(model)}
    rows = metrics.utilization_over_time(model, samples)
    kinds = (("cores", "core"), ("gpus", "gpu"))[:len(axes)]
    for ax, (kind, one) in zip(axes, kinds):
        for k, uid in enumerate(model.pilots):
            mine = [row for row in rows if row["pilot"] == uid]
            x = [row["time"] - t0 for row in mine]
            share = getattr(totals[uid], f"{one}_utilization")
            label = f"{uid}: {share:.0%} of {getattr(totals[uid], kind)} {kind}" \
                if share is not None else f"{uid}: no {kind} held"
            color = f"C{k % 10}"
            used = [row[f"{kind}_used"] for row in mine]
            ax.fill_between(x, used, step="post", color=color, alpha=0.25, linewidth=0)
            ax.step(x, used, where="post", color=color, label=f"{label} (used)")
            ax.step(x, [row[f"{kind}_held"] for row in mine], where="post", color=color,
                    linestyle="--", linewidth=0.9, label=f"{uid}: held")
        ax.set_xlim(left=0, right=max(model.end - t0, 1e-3))
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"{kind} in use")
        ax.legend(loc="upper left", fontsize=8)
    axes[-1].set_xlabel("seconds since the session started")
    axes[0].set_title(f"{model.uid}: utilization of the pilots")
    return _finish(fig, path)


def plot(model: SessionModel, kind: str, path: str | os.PathLike | None = None) -> Any:
    """The plot of ``kind`` (one of :data:`KINDS`).

    :raises ValueError: an unknown kind.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown plot kind {kind!r}; known: {', '.join(KINDS)}")
    return {"timeline": plot_timeline, "concurrency": plot_concurrency,
            "utilization": plot_utilization}[kind](model, path)
