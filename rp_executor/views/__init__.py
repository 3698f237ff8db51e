"""What the user sees of pilots and units: HTML views for notebooks and progress bars.

* :mod:`~rp_executor.views.summary`: what a view says (counts per state in one pass,
  the walltime a pilot has left, why a unit failed, the one-line ``repr`` texts);
* :mod:`~rp_executor.views.html`: how a notebook shows it (the ``_repr_html_`` of the
  sessions, managers, pilots, units, clients, futures and the Parsl executor);
* :mod:`~rp_executor.views.progress`: :func:`~rp_executor.views.progress.progress`
  and ``UnitManager.wait_units(progress=True)``.

The classes import these modules when a view is asked for, not before.
"""
