"""The futures door: ``concurrent.futures`` and Dask-style futures over units.

* :mod:`.client`: :class:`~rp_executor.futures.client.Client`, the user's entry;
* :mod:`.engine`: how futures become units (keys, dependencies, retries, cancel);
* :mod:`.future`: :class:`~rp_executor.futures.future.Future`, one per task;
* :mod:`.executor`: a ``concurrent.futures.Executor`` over a client;
* :mod:`.completion`: ``as_completed``, iterate over futures as they end;
* :mod:`.dependencies`: finding futures among arguments and replacing them.

Importing this package imports none of them; its names load on first use.
"""

from __future__ import annotations

from rp_executor._core import lazy as _lazy

__getattr__, __dir__ = _lazy.exports(__name__, {
    "Client": ".client", "Future": ".future", "ClientExecutor": ".executor",
    "AsCompleted": ".completion", "as_completed": ".completion",
    "UnitFailed": "rp_executor.exceptions",
})
