"""Lazy package namespaces: a name is imported from its module on first use.

The agent imports a few light modules of ``rp_executor`` and must not pay for the
client's (Parsl, ZMQ threads, ...); a door's package must not import its door until
one of its names is used.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def exports(package: str, names: dict[str, str]
            ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public ``names`` map to the
    modules (relative to ``package``) that define them."""
    module = importlib.import_module(package)

    def getattr_(name: str) -> Any:
        where = names.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where, package), name)
        setattr(module, name, value)
        return value

    def dir_() -> list[str]:
        return sorted(set(vars(module)) | set(names))

    return getattr_, dir_
