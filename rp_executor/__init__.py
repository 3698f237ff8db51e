"""rp_executor: the RADICAL-Pilot API, with pilots as Parsl blocks and units as futures.

``import rp_executor as rp`` gives the names of RADICAL-Pilot's 0.50-era API. The
package is imported lazily: the agent imports a few light submodules and must not pay
for the client's (Parsl, ZMQ threads, ...).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
version = version_short = version_detail = __version__

_EXPORTS = {
    "Session": ".session", "Context": ".context", "PilotManager": ".pilot_manager",
    "ComputePilot": ".pilot", "ComputePilotDescription": ".description",
    "UnitManager": ".unit_manager", "ComputeUnit": ".unit",
    "ComputeUnitDescription": ".description", "ResourceConfig": ".resource_config",
    "Client": ".client", "Future": ".futures", "ClientExecutor": ".executor",
    "AsCompleted": ".as_completed", "UnitFailed": ".futures",
    "RPExecutor": ".parsl_executor",
}
_STAR_MODULES = (".states", ".constants", ".exceptions")


def _star_names() -> dict[str, str]:
    names = {}
    for mod in _STAR_MODULES:
        module = importlib.import_module(mod, __name__)
        for name in dir(module):
            if not name.startswith("_") and (name.isupper() or name[:1].isupper()):
                names[name] = mod
    return names


_STAR: dict[str, str] | None = None


def __getattr__(name: str) -> Any:
    global _STAR
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    if _STAR is None:
        _STAR = _star_names()
    if name in _STAR:
        value = getattr(importlib.import_module(_STAR[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rp_executor' has no attribute {name!r}")


def __dir__() -> list[str]:
    global _STAR
    if _STAR is None:
        _STAR = _star_names()
    return sorted(set(globals()) | set(_EXPORTS) | set(_STAR))
