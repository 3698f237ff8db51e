"""From a pilot description to the arguments of a batch system's Parsl provider.

A resource config names a Parsl provider class (``provider``) and fixed arguments
for it (``provider_args``); what changes from pilot to pilot comes from the
:class:`ComputePilotDescription`: ``queue`` (or the config's ``default_queue``)
becomes the partition or queue, ``project`` the account, ``runtime`` (minutes) the
walltime, and ``cores`` / ``gpus`` the number of nodes, by the config's
``cores_per_node`` / ``gpus_per_node``. Pure functions: no Parsl import, no I/O.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

__all__ = ["nodes_for", "walltime", "provider_kwargs", "BATCH_PROVIDERS"]

# provider class -> (keyword of the queue, keyword of the project/account)
BATCH_PROVIDERS: dict[str, tuple[str, str]] = {
    "SlurmProvider": ("partition", "account"),
    "PBSProProvider": ("queue", "account"),
    "TorqueProvider": ("queue", "account"),
    "LSFProvider": ("queue", "project"),
    "GridEngineProvider": ("queue", "project"),
    "CondorProvider": ("", "project"),
}
"""The providers whose blocks are sized and named from the pilot description."""


def nodes_for(cores: int, gpus: int, cores_per_node: int | None,
              gpus_per_node: int | None) -> int:
    """How many whole nodes hold ``cores`` and ``gpus``; 1 when the config does not
    say how big a node is (``cores_per_node`` None or 0).

    >>> nodes_for(48, 0, 16, 0)
    3
    >>> nodes_for(4, 8, 16, 4)
    2
    """
    nodes = math.ceil(cores / cores_per_node) if cores_per_node else 1
    if gpus and gpus_per_node:
        nodes = max(nodes, math.ceil(gpus / gpus_per_node))
    return max(1, nodes)


def walltime(minutes: int) -> str:
    """``HH:MM:SS`` for a runtime in minutes (``walltime(90) == '01:30:00'``)."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def provider_kwargs(rcfg: Mapping[str, Any], description: Any) -> dict[str, Any]:
    """The provider arguments ``description`` implies on the resource ``rcfg``.

    Empty for providers that do not size blocks by nodes (``LocalProvider``);
    values the description leaves unset are not included, so that the config's
    ``provider_args`` keep them.
    """
    name = rcfg.get("provider") or "LocalProvider"
    keys = BATCH_PROVIDERS.get(name)
    if keys is None:
        return {}
    queue_key, project_key = keys
    cpn, gpn = rcfg.get("cores_per_node"), rcfg.get("gpus_per_node")
    gpus = description.gpus or 0
    nodes = nodes_for(description.cores, gpus, cpn, gpn)
    kwargs: dict[str, Any] = {"nodes_per_block": nodes}
    if description.runtime:
        kwargs["walltime"] = walltime(description.runtime)
    queue = description.queue or rcfg.get("default_queue")
    if queue and queue_key:
        kwargs[queue_key] = queue
    if description.project and project_key:
        kwargs[project_key] = description.project
    if name == "SlurmProvider":
        if gpus and gpn:
            kwargs["gpus_per_node"] = gpn
    elif name == "PBSProProvider":
        if cpn:
            kwargs["cpus_per_node"] = cpn
        if gpus and gpn:
            kwargs["select_options"] = f":ngpus={gpn}"
    elif name == "LSFProvider":
        kwargs["request_by_nodes"] = True
    return kwargs
