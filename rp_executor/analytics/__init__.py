"""Analytics of a session, from its journal: usable on a closed session and on one
that runs in another process (read-only, beside the session's writer).

>>> from rp_executor import analytics
>>> model = analytics.load("rp.session.host.user.020000.0000")   # or a directory
>>> analytics.unit_durations(model)[0].executing                # records
>>> analytics.utilization_frame(model)                          # DataFrames (pandas)
>>> analytics.plot_timeline(model, "timeline.png")              # plots (matplotlib)

:mod:`~rp_executor.analytics.model` reads the journal into a compact
:class:`SessionModel`; :mod:`~rp_executor.analytics.metrics` computes records from it,
:mod:`~rp_executor.analytics.frames` gives them as pandas DataFrames,
:mod:`~rp_executor.analytics.plots` draws them, and
:mod:`~rp_executor.analytics.profiles` writes RADICAL-Pilot's profiles for
radical.analytics. pandas and matplotlib are imported only when a frame or a plot is
asked for.
"""

from rp_executor.analytics.frames import (phase_counts_frame, state_counts_frame,
                                          throughput_frame, timeline_frame,
                                          unit_durations_frame, units_frame,
                                          utilization_frame, utilization_over_time_frame)
from rp_executor.analytics.metrics import (PHASES, PilotUtilization, TimelineBar,
                                           UnitDurations, phase_counts, state_counts,
                                           throughput, timeline, unit_durations, units,
                                           utilization, utilization_over_time)
from rp_executor.analytics.model import (PilotInfo, SessionModel, SessionNotFound,
                                         SessionSummary, find_session, load, session_dirs,
                                         summarize)
from rp_executor.analytics.plots import (plot, plot_concurrency, plot_timeline,
                                         plot_utilization)
from rp_executor.analytics.profiles import write_profiles

__all__ = [
    "load", "find_session", "session_dirs", "summarize", "SessionModel", "PilotInfo",
    "SessionSummary", "SessionNotFound",
    "PHASES", "UnitDurations", "PilotUtilization", "TimelineBar",
    "unit_durations", "state_counts", "phase_counts", "utilization",
    "utilization_over_time", "throughput", "timeline", "units",
    "unit_durations_frame", "state_counts_frame", "phase_counts_frame",
    "utilization_frame", "utilization_over_time_frame", "throughput_frame",
    "timeline_frame", "units_frame",
    "plot", "plot_timeline", "plot_concurrency", "plot_utilization",
    "write_profiles",
]
