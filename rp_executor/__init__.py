"""rp_executor: the RADICAL-Pilot API, with pilots as Parsl blocks and units as futures.

``import rp_executor as rp`` gives the names of RADICAL-Pilot's 0.50-era API, and the
two other doors: the futures door (:mod:`rp_executor.futures`: ``Client``,
``Future``) and the Parsl door (:mod:`rp_executor.parsl`: ``RPExecutor``). The
package is imported lazily: the agent imports a few light submodules and must not pay
for the client's (Parsl, ZMQ threads, ...).
"""

from __future__ import annotations

import importlib as _importlib

from rp_executor._core import lazy as _lazy

__version__ = "0.1.0"
version = version_short = version_detail = __version__

_EXPORTS = {
    "Session": ".session", "Context": ".context", "PilotManager": ".pilot_manager",
    "ComputePilot": ".pilot", "ComputePilotDescription": ".description",
    "UnitManager": ".unit_manager", "ComputeUnit": ".unit",
    "ComputeUnitDescription": ".description", "ResourceConfig": ".resource_config",
    "Client": ".futures.client", "Future": ".futures.future",
    "ClientExecutor": ".futures.executor", "AsCompleted": ".futures.as_completed",
    "UnitFailed": ".exceptions", "RPExecutor": ".parsl.executor",
}
# every public name of these modules (states, their legacy names, constants, errors)
_STAR_MODULES = (".states", ".constants", ".exceptions")


def _star_names() -> dict[str, str]:
    names = {}
    for mod in _STAR_MODULES:
        module = _importlib.import_module(mod, __name__)
        for name in dir(module):
            if not name.startswith("_") and (name.isupper() or name[:1].isupper()):
                names[name] = mod
    return names


__getattr__, __dir__ = _lazy.exports(__name__, _EXPORTS, _star_names)
