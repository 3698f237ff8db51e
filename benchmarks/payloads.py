"""The work every peer runs: a no-op, importable by workers in other processes.

It lives in its own module so that pickling it sends a reference
(``benchmarks.payloads.noop``), not code; the driver puts the repository root on
``PYTHONPATH`` so that pilots, HTEX workers and Dask workers can import it.
"""

from __future__ import annotations

from typing import Any


def noop(*args: Any, **kwargs: Any) -> None:
    """Do nothing and return None, whatever the arguments."""
    return None
