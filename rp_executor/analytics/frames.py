"""The records of :mod:`rp_executor.analytics.metrics` as pandas DataFrames.

pandas is optional: these functions import it when called and raise ImportError,
saying how to install it, when it is missing. Times are seconds since the epoch, as
in the records.
"""

from __future__ import annotations

from typing import Any

from rp_executor.analytics import metrics
from rp_executor.analytics.model import SessionModel


def pandas() -> Any:
    """The pandas module.

    :raises ImportError: pandas is not installed (the message says how to get it).
    """
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError("the analytics' DataFrames need pandas: pip install pandas "
                          "(the records of rp_executor.analytics need nothing)") from exc
    return pd


def unit_durations_frame(model: SessionModel) -> Any:
    """:func:`~rp_executor.analytics.metrics.unit_durations` as a DataFrame, one row
    per unit (NaN for a phase a unit never entered)."""
    return pandas().DataFrame(metrics._duration_columns(model))


def state_counts_frame(model: SessionModel, samples: int = 200,
                       interval: float | None = None) -> Any:
    """:func:`~rp_executor.analytics.metrics.state_counts` as a DataFrame: a ``time``
    column and one column per unit state."""
    return pandas().DataFrame(metrics.state_counts(model, samples, interval))


def phase_counts_frame(model: SessionModel, samples: int = 200,
                       interval: float | None = None) -> Any:
    """:func:`~rp_executor.analytics.metrics.phase_counts` as a DataFrame."""
    return pandas().DataFrame(metrics.phase_counts(model, samples, interval))


def utilization_frame(model: SessionModel) -> Any:
    """:func:`~rp_executor.analytics.metrics.utilization` as a DataFrame, one row per
    pilot."""
    return pandas().DataFrame(metrics.as_dicts(metrics.utilization(model)))


def utilization_over_time_frame(model: SessionModel, samples: int = 200,
                                interval: float | None = None) -> Any:
    """:func:`~rp_executor.analytics.metrics.utilization_over_time` as a DataFrame."""
    return pandas().DataFrame(metrics.utilization_over_time(model, samples, interval))


def throughput_frame(model: SessionModel, samples: int = 200,
                     interval: float | None = None) -> Any:
    """:func:`~rp_executor.analytics.metrics.throughput` as a DataFrame."""
    return pandas().DataFrame(metrics.throughput(model, samples, interval))


def timeline_frame(model: SessionModel) -> Any:
    """:func:`~rp_executor.analytics.metrics.timeline` as a DataFrame (the rows as
    tuples)."""
    return pandas().DataFrame(metrics.as_dicts(metrics.timeline(model)))


def units_frame(model: SessionModel) -> Any:
    """:func:`~rp_executor.analytics.metrics.units` as a DataFrame, one row per unit."""
    return pandas().DataFrame(list(metrics.units(model)))
