"""Resource managers: what a pilot's block holds, as a list of nodes.

A resource manager turns what the batch system (or, for local blocks, the pilot
description) says about an allocation into ``Node`` records that the scheduler
places units on.  This mirrors RADICAL-Pilot's LRMS family (``agent/rm``): the
contract is tiny (``nodes`` and ``info()``), each batch system gets its own class,
and classes are registered by name in ``RESOURCE_MANAGERS``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["Node", "ResourceManager", "LocalResourceManager", "RESOURCE_MANAGERS"]


@dataclass(slots=True)
class Node:
    """One (possibly virtual) node: its name and how many cores and GPUs it offers."""

    name: str
    cores: int
    gpus: int = 0


class ResourceManager:
    """The contract every resource manager fulfils.

    Subclasses fill ``self.nodes`` in their constructor.  ``cores`` and ``gpus``
    are the totals over all nodes.
    """

    nodes: list[Node]

    @property
    def cores(self) -> int:
        """Total cores over all nodes."""
        return sum(n.cores for n in self.nodes)

    @property
    def gpus(self) -> int:
        """Total GPUs over all nodes."""
        return sum(n.gpus for n in self.nodes)

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary for reporting: totals and the node list."""
        return {
            "cores": self.cores,
            "gpus": self.gpus,
            "nodes": [{"name": n.name, "cores": n.cores, "gpus": n.gpus} for n in self.nodes],
        }


class LocalResourceManager(ResourceManager):
    """RP's FORK LRMS: the requested cores, sliced into virtual nodes on this host.

    ``cores`` are cut into ``ceil(cores / cores_per_node)`` nodes named
    ``localhost``, ``localhost_1``, ``localhost_2``...; every node has
    ``cores_per_node`` cores except the last, which has the remainder, so the
    pilot offers exactly ``cores`` cores.  ``cores_per_node`` defaults to
    ``cores`` (one node).  GPUs are dealt out in node order, at most
    ``gpus_per_node`` per node (default: an even share, rounded up).

    Raises ``ValueError`` for non-positive cores or cores_per_node, negative
    GPU counts, or more GPUs than the nodes can hold.
    """

    def __init__(
        self,
        cores: int,
        gpus: int = 0,
        cores_per_node: int | None = None,
        gpus_per_node: int | None = None,
    ) -> None:
        if cores < 1:
            raise ValueError(f"a pilot needs at least 1 core, got cores={cores!r}")
        if gpus < 0:
            raise ValueError(f"gpus must be 0 or more, got gpus={gpus!r}")
        cpn = cores if cores_per_node is None else cores_per_node
        if cpn < 1:
            raise ValueError(f"cores_per_node must be 1 or more, got {cores_per_node!r}")
        n_nodes = math.ceil(cores / cpn)
        gpn = math.ceil(gpus / n_nodes) if gpus_per_node is None else gpus_per_node
        if gpn < 0:
            raise ValueError(f"gpus_per_node must be 0 or more, got {gpus_per_node!r}")
        if gpus > gpn * n_nodes:
            raise ValueError(
                f"gpus={gpus} do not fit on {n_nodes} node(s) with gpus_per_node={gpn}; "
                f"raise gpus_per_node to at least {math.ceil(gpus / n_nodes)}"
            )
        self.nodes = []
        cores_left, gpus_left = cores, gpus
        for i in range(n_nodes):
            name = "localhost" if i == 0 else f"localhost_{i}"
            node = Node(name, min(cpn, cores_left), min(gpn, gpus_left))
            cores_left -= node.cores
            gpus_left -= node.gpus
            self.nodes.append(node)
        logger.debug("local resources: %d cores, %d gpus on %d node(s)", cores, gpus, n_nodes)


RESOURCE_MANAGERS: dict[str, type[ResourceManager]] = {"local": LocalResourceManager}
"""Resource managers by name, as a pilot's configuration names them."""
