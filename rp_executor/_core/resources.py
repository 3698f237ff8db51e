"""One mapping from a door's resource request to unit description fields.

Both doors let a task ask for resources as a small dict: the futures door's
``resources={"cores": 2, "gpus": 1, "mpi": True}`` and the Parsl door's
``resource_specification``. :func:`parse` checks such a dict (unknown keys, types,
ranges) and maps it onto a :class:`UnitResources`, whose :meth:`~UnitResources.fields`
are the :class:`~rp_executor.description.ComputeUnitDescription` attributes to set.
Each door raises its own exception type through ``error``. Pure: no Parsl import.

The keys:

* ``cores``: cores of each process (threads), int >= 1;
* ``gpus``: GPU processes, int >= 0;
* ``mpi`` (bool), ``ranks`` and ``ranks_per_node`` (ints >= 1): an MPI unit of
  ``ranks`` processes (``mpi=True`` alone: one rank); ``ranks`` must be a multiple
  of ``ranks_per_node``;
* ``priority``: a number (lower runs first);
* ``walltime``: seconds > 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

#: Every key :func:`parse` knows; a door allows a part of them.
KEYS = ("cores", "gpus", "mpi", "ranks", "ranks_per_node", "priority", "walltime")

_LOWEST = {"cores": 1, "gpus": 0, "ranks": 1, "ranks_per_node": 1}


@dataclass
class UnitResources:
    """What a resource request asks of a unit."""

    cpu_processes: int = 1
    cpu_threads: int = 1
    cpu_process_type: str = ""
    gpu_processes: int = 0
    priority: float = math.inf
    walltime: float | None = None
    environment: dict[str, str] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        """The ComputeUnitDescription attributes that differ from their defaults."""
        out: dict[str, Any] = {}
        if self.cpu_processes != 1:
            out["cpu_processes"] = self.cpu_processes
        if self.cpu_threads != 1:
            out["cpu_threads"] = self.cpu_threads
        if self.cpu_process_type:
            out["cpu_process_type"] = self.cpu_process_type
        if self.gpu_processes:
            out["gpu_processes"] = self.gpu_processes
        return out


#: ``error(keys, message)``: the exception a door raises for bad ``keys``.
ErrorFactory = Callable[[set, str], Exception]


def parse(spec: Mapping[str, Any] | None, allowed: tuple[str, ...], error: ErrorFactory,
          name: str = "resources") -> UnitResources:
    """Check a resource request and map it onto unit resources.

    :param spec: the request; None or empty asks for one core.
    :param allowed: the keys this door allows (a part of :data:`KEYS`).
    :param error: makes the exception to raise, from the offending keys and a message
        that names ``name``, the key, the value and what is allowed.
    :raises Exception: what ``error`` makes, for a request that is not a dict, an
        unknown key, or a value of the wrong type or range.
    """
    if not spec:
        return UnitResources()
    if not isinstance(spec, Mapping):
        raise error(set(), f"{name}: expected a dict like {{'cores': 2, 'gpus': 0}}; "
                           f"got {type(spec).__name__}: {spec!r}")
    unknown = set(spec) - set(allowed)
    if unknown:
        raise error(unknown, f"{name}: unknown key(s) "
                             f"{', '.join(map(repr, sorted(unknown)))}; allowed keys: "
                             f"{', '.join(allowed)}")
    value: dict[str, Any] = {}
    for key, low in _LOWEST.items():
        v = spec.get(key)
        if v is not None and (type(v) is not int or v < low):
            raise error({key}, f"{name}[{key!r}]: must be an int >= {low}; got {v!r}")
        value[key] = v
    mpi, ranks, per_node = spec.get("mpi"), value["ranks"], value["ranks_per_node"]
    if mpi is not None and type(mpi) is not bool:
        raise error({"mpi"}, f"{name}['mpi']: must be a bool; got {mpi!r}")
    if mpi is False and (ranks or per_node):
        raise error({"mpi"}, f"{name}: 'ranks'/'ranks_per_node' need mpi=True (or leave "
                             "'mpi' out)")
    if per_node and ranks and ranks % per_node:
        raise error({"ranks_per_node"}, f"{name}: ranks={ranks} is not a multiple of "
                                        f"ranks_per_node={per_node}")
    res = UnitResources()
    if mpi or ranks or per_node:
        res.cpu_process_type = "MPI"
        res.cpu_processes = ranks or per_node or 1
    res.cpu_threads = value["cores"] or 1
    res.gpu_processes = value["gpus"] or 0
    priority = spec.get("priority")
    if priority is not None:
        if isinstance(priority, bool) or not isinstance(priority, (int, float)):
            raise error({"priority"}, f"{name}['priority']: must be a number; "
                                      f"got {priority!r}")
        res.priority = priority
    walltime = spec.get("walltime")
    if walltime is not None:
        if isinstance(walltime, bool) or not isinstance(walltime, (int, float)) \
                or walltime <= 0:
            raise error({"walltime"}, f"{name}['walltime']: must be seconds > 0; "
                                      f"got {walltime!r}")
        res.walltime = float(walltime)
    return res
