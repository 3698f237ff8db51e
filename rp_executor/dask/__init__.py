"""Real Dask clusters on pilots: ``distributed.Client`` over pilot resources.

* :mod:`.cluster`: :class:`~rp_executor.dask.cluster.DaskCluster`, the user's entry
  (a ``distributed`` ``SpecCluster``; where its scheduler runs, and why);
* :mod:`.job`: one pilot's workers as the ``SpecCluster`` sees a job;
* :mod:`.pilots`: the RP side: pilots, and workers as units of them;
* :mod:`.workers`: the workers' layout, lifetime and unit (pure functions);
* :mod:`.tls`: distributed's ``Security``, and the files its workers read.

Importing this package imports none of them (nor distributed); its names load on
first use.
"""

from __future__ import annotations

from rp_executor._core import lazy as _lazy

__getattr__, __dir__ = _lazy.exports(__name__, {"DaskCluster": ".cluster"})
