"""``import rp_executor as rp`` offers this project's names, and only those."""

from __future__ import annotations

import importlib
import pkgutil
import types

import rp_executor as rp


def test_star_import_gives_exactly_all_and_all_names_resolve():
    ns: dict = {}
    exec("from rp_executor import *", ns)
    assert sorted(set(ns) - {"__builtins__"}) == sorted(rp.__all__)
    for name in rp.__all__:
        assert getattr(rp, name) is ns[name]


def test_no_foreign_helpers_leak_into_the_namespace():
    for leaked in ("Any", "Callable", "Iterable", "annotations", "importlib"):
        assert leaked not in dir(rp) and leaked not in rp.__all__
    for name in rp.__all__:
        module = getattr(getattr(rp, name), "__module__", None)
        assert module is None or module.startswith("rp_executor") or \
            module == "builtins", (name, module)


def test_no_submodule_shadows_a_public_name():
    # import every module of the package, then every public name is still itself
    for info in pkgutil.walk_packages(rp.__path__, "rp_executor."):
        if not info.name.endswith(("__main__", ".parsl.config")):
            importlib.import_module(info.name)
    for name in rp.__all__:
        assert not isinstance(getattr(rp, name), types.ModuleType), name
    from rp_executor import as_completed
    from rp_executor.futures import as_completed as from_the_door
    assert as_completed is from_the_door is rp.AsCompleted


def test_the_ra_pilot_api_names_are_all_there():
    for name in ("Session", "Context", "PilotManager", "ComputePilotDescription",
                 "ComputePilot", "UnitManager", "ComputeUnitDescription", "ComputeUnit",
                 "PilotException", "DatabaseError", "BadParameter", "DONE", "FAILED",
                 "CANCELED", "PMGR_ACTIVE", "EXECUTING", "PENDING_LAUNCH", "MPI", "POSIX",
                 "COPY", "TRANSFER", "UNIT_STATE", "PILOT_STATE", "WAIT_QUEUE_SIZE",
                 "Client", "Future", "RPExecutor", "UnitFailed", "as_completed"):
        assert name in rp.__all__ and hasattr(rp, name), name
