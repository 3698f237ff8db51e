"""rp_executor: the RADICAL-Pilot API, with pilots as Parsl blocks and units as futures.

``import rp_executor as rp`` gives the names of RADICAL-Pilot's 0.50-era API (its
classes, states with their legacy names, constants and exceptions), the two other
doors: the futures door (:mod:`rp_executor.futures`: ``Client``, ``Future``,
``as_completed``) and the Parsl door (:mod:`rp_executor.parsl`: ``RPExecutor``), and
real Dask clusters on pilots (:mod:`rp_executor.dask`: ``DaskCluster``).
``__all__`` lists them all, and ``from rp_executor import *`` gives just those.

The package is imported lazily: the agent imports a few light submodules and must not
pay for the client's (Parsl, ZMQ threads, ...).
"""

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
    "ClientExecutor": ".futures.executor", "AsCompleted": ".futures.completion",
    "as_completed": ".futures.completion",
    "UnitFailed": ".exceptions", "RPExecutor": ".parsl.executor",
    "progress": ".views.progress", "DaskCluster": ".dask.cluster",
}
# the public names of these modules: states and their legacy names, constants, errors
_STAR_MODULES = (".states", ".constants", ".exceptions")


def _public(module: object) -> list[str]:
    """A module's public names: its ``__all__``, or its upper-case names that it
    defines itself (not what it imported, such as ``typing.Callable``)."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    own = module.__name__
    return [n for n in dir(module) if not n.startswith("_") and n[:1].isupper()
            and getattr(getattr(module, n), "__module__", own) == own]


def _star_names() -> dict[str, str]:
    names = {}
    for mod in _STAR_MODULES:
        for name in _public(_importlib.import_module(mod, __name__)):
            names[name] = mod
    return names


_NAMES = {**_star_names(), **_EXPORTS}

#: Every public name; listed here so that ``dir()`` and ``import *`` need no import.
__all__ = sorted({*_NAMES, "version", "version_short", "version_detail", "__version__"})

__getattr__, __dir__ = _lazy.exports(__name__, _NAMES)
