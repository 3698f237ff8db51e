"""The Parsl door: an executor whose blocks are pilots and whose apps are units.

* :mod:`.executor`: :class:`~rp_executor.parsl.executor.RPExecutor`;
* :mod:`.blocks`: a pilot as a Parsl block (its job states, its runtime);
* :mod:`.apps`: bash apps as executable units, and their outcome;
* :mod:`.config`: a ready Parsl ``Config`` with one RPExecutor.

Importing this package imports none of them (nor Parsl); its names load on first use.
"""

from __future__ import annotations

from rp_executor._core import lazy as _lazy

__getattr__, __dir__ = _lazy.exports(__name__, {
    "RPExecutor": ".executor", "fresh_config": ".config",
})
