"""Resource managers: what a pilot's block holds, as a list of nodes.

A resource manager turns what the batch system (or, for local blocks, the pilot
description) says about an allocation into ``Node`` records that the scheduler
places units on.  This mirrors RADICAL-Pilot's LRMS family (``agent/rm``): the
contract is tiny (``nodes`` and ``info()``, built by ``from_config``), each batch
system gets its own class, and classes are registered by name in
``RESOURCE_MANAGERS``; :func:`make_resource_manager` picks one by the agent
config's ``resource_manager`` (the resource config's ``lrms``).

One agent manages every node of its block and runs on the first one.  GPUs per
node come from the resource config (``gpus_per_node``), else from the pilot
description (``gpus``, spread over the nodes), else from what the first node
shows (``CUDA_VISIBLE_DEVICES``, ``nvidia-smi``); ``gpus_per_node: 0`` means none.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import AgentConfig

logger = logging.getLogger(__name__)

__all__ = ["Node", "ResourceManager", "LocalResourceManager", "SlurmResourceManager",
           "PBSResourceManager", "LSFResourceManager", "RESOURCE_MANAGERS",
           "make_resource_manager", "expand_hostlist", "detect_cores", "detect_gpus"]


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

    @classmethod
    def from_config(cls, cfg: AgentConfig,
                    environ: Mapping[str, str] | None = None) -> "ResourceManager":
        """Build the manager from the agent config and the block's environment.

        Raises ``ValueError`` naming the missing or malformed variable when the
        environment does not describe an allocation of this kind.
        """
        raise NotImplementedError

    @property
    def cores(self) -> int:
        """Total cores over all nodes."""
        return sum(n.cores for n in self.nodes)

    @property
    def gpus(self) -> int:
        """Total GPUs over all nodes."""
        return sum(n.gpus for n in self.nodes)

    @property
    def agent_node(self) -> str:
        """The node the agent runs on: the first of the allocation."""
        return self.nodes[0].name

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



    @classmethod
    def from_config(cls, cfg: AgentConfig,
                    environ: Mapping[str, str] | None = None) -> "LocalResourceManager":
        """The pilot description's cores and GPUs (``gpus_per_node: null`` and no
        GPUs described: the GPUs this host shows)."""
        gpus = cfg.gpus or 0
        gpn = cfg.gpus_per_node
        if not gpus and gpn is None:
            gpus = detect_gpus(os.environ if environ is None else environ)
        return cls(cores=cfg.cores, gpus=gpus, cores_per_node=cfg.cores_per_node,
                   gpus_per_node=gpn or None)


class _BatchResourceManager(ResourceManager):
    """An allocation of whole nodes, as ``(host, cores)`` pairs in batch-system order.

    ``cores_per_node`` (from the resource config) overrides what the batch system
    says about each node; GPUs per node follow the module's rule.
    """

    def __init__(self, hosts: list[tuple[str, int]], cfg: AgentConfig,
                 environ: Mapping[str, str]) -> None:
        if not hosts:
            raise ValueError(f"{type(self).__name__}: the allocation has no nodes")
        cpn = cfg.cores_per_node
        gpn = _gpus_per_node(cfg, len(hosts), environ)
        self.nodes = [Node(name, cpn or cores, gpn) for name, cores in hosts]
        if any(n.cores < 1 for n in self.nodes):
            raise ValueError(f"{type(self).__name__}: a node without cores in {hosts}")
        logger.info("%s: %d node(s) %s, %d cores, %d gpus", type(self).__name__,
                    len(self.nodes), [n.name for n in self.nodes], self.cores, self.gpus)


class SlurmResourceManager(_BatchResourceManager):
    """RP's SLURM LRMS: ``SLURM_JOB_NODELIST`` (or ``SLURM_NODELIST``) expanded, CPUs
    per node from ``SLURM_JOB_CPUS_PER_NODE`` (``4(x2),2``) or ``SLURM_CPUS_ON_NODE``."""

    @classmethod
    def from_config(cls, cfg: AgentConfig,
                    environ: Mapping[str, str] | None = None) -> "SlurmResourceManager":
        env = os.environ if environ is None else environ
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        if not nodelist:
            raise ValueError("SlurmResourceManager: neither SLURM_JOB_NODELIST nor "
                             "SLURM_NODELIST is set: the agent does not run in a Slurm job")
        names = expand_hostlist(nodelist)
        per_node = env.get("SLURM_JOB_CPUS_PER_NODE")
        if per_node:
            cpus = _expand_counts(per_node)
            if len(cpus) != len(names):
                raise ValueError(f"SLURM_JOB_CPUS_PER_NODE={per_node!r} names {len(cpus)} "
                                 f"node(s), SLURM_NODELIST={nodelist!r} {len(names)}")
        else:
            one = env.get("SLURM_CPUS_ON_NODE")
            if not one and not cfg.cores_per_node:
                raise ValueError("SlurmResourceManager: SLURM_JOB_CPUS_PER_NODE and "
                                 "SLURM_CPUS_ON_NODE are unset; set cores_per_node")
            cpus = [int(one or 0)] * len(names)
        return cls(list(zip(names, cpus)), cfg, env)


class PBSResourceManager(_BatchResourceManager):
    """RP's PBSPRO/TORQUE LRMS: ``PBS_NODEFILE`` has one line per CPU (a host
    repeated once per CPU it gives), in allocation order."""

    @classmethod
    def from_config(cls, cfg: AgentConfig,
                    environ: Mapping[str, str] | None = None) -> "PBSResourceManager":
        env = os.environ if environ is None else environ
        return cls(_host_file(env, "PBS_NODEFILE"), cfg, env)


class LSFResourceManager(_BatchResourceManager):
    """RP's LSF LRMS: ``LSB_DJOB_HOSTFILE`` has one line per slot; without it,
    ``LSB_MCPU_HOSTS`` (``host1 4 host2 4``)."""

    @classmethod
    def from_config(cls, cfg: AgentConfig,
                    environ: Mapping[str, str] | None = None) -> "LSFResourceManager":
        env = os.environ if environ is None else environ
        if not env.get("LSB_DJOB_HOSTFILE") and env.get("LSB_MCPU_HOSTS"):
            words = env["LSB_MCPU_HOSTS"].split()
            if len(words) % 2:
                raise ValueError(f"LSB_MCPU_HOSTS={env['LSB_MCPU_HOSTS']!r} is not "
                                 "'host count' pairs")
            return cls([(h, int(c)) for h, c in zip(words[::2], words[1::2])], cfg, env)
        return cls(_host_file(env, "LSB_DJOB_HOSTFILE"), cfg, env)


RESOURCE_MANAGERS: dict[str, type[ResourceManager]] = {
    "local": LocalResourceManager,
    "slurm": SlurmResourceManager,
    "pbs": PBSResourceManager,
    "pbspro": PBSResourceManager,
    "torque": PBSResourceManager,
    "lsf": LSFResourceManager,
}
"""Resource managers by name, as a pilot's configuration names them (any case;
RP's ``FORK`` is ``local``)."""

_ALIASES = {"fork": "local"}


def make_resource_manager(cfg: AgentConfig,
                          environ: Mapping[str, str] | None = None) -> ResourceManager:
    """The resource manager the agent config names (``resource_manager``, default
    ``local``), built from ``cfg`` and the environment.

    Raises ``ValueError`` for an unknown name (naming the known ones) or an
    environment that does not describe the allocation.
    """
    name = str(cfg.resource_manager or "local").lower()
    name = _ALIASES.get(name, name)
    cls = RESOURCE_MANAGERS.get(name)
    if cls is None:
        raise ValueError(f"unknown resource manager {cfg.resource_manager!r}; "
                         f"known: {', '.join(sorted(RESOURCE_MANAGERS))}")
    return cls.from_config(cfg, environ)


# -- helpers (pure, for tests) ------------------------------------------------------


def expand_hostlist(hostlist: str) -> list[str]:
    """Slurm's compressed host list in full: ``n[1-3,7],gpu[01-02]`` gives
    ``n1 n2 n3 n7 gpu01 gpu02`` (leading zeros kept, several bracket groups in a
    name expand as a product).

    Raises ``ValueError`` for unbalanced brackets or a bad range.
    """
    names: list[str] = []
    for part in _split_top(hostlist):
        names.extend(_expand_one(part))
    return names


def _split_top(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in host list {text!r}")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"unbalanced '[' in host list {text!r}")
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _expand_one(name: str) -> list[str]:
    open_at = name.find("[")
    if open_at < 0:
        return [name]
    close_at = name.index("]", open_at)
    prefix, ranges, rest = name[:open_at], name[open_at + 1:close_at], name[close_at + 1:]
    out = []
    for item in ranges.split(","):
        lo, _, hi = item.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(f"bad range {item!r} in host list entry {name!r}")
        width = len(lo)
        for i in range(int(lo), int(hi or lo) + 1):
            out.extend(f"{prefix}{i:0{width}d}{tail}" for tail in _expand_one(rest))
    return out


def _expand_counts(text: str) -> list[int]:
    """``SLURM_JOB_CPUS_PER_NODE``: ``4(x2),2`` gives ``[4, 4, 2]``."""
    counts = []
    for item in text.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", item)
        if not m:
            raise ValueError(f"bad CPUs-per-node item {item!r} in {text!r}")
        counts.extend([int(m.group(1))] * int(m.group(2) or 1))
    return counts


def _host_file(env: Mapping[str, str], var: str) -> list[tuple[str, int]]:
    """``(host, lines)`` pairs of a one-line-per-slot host file, in first-seen order."""
    path = env.get(var)
    if not path:
        raise ValueError(f"{var} is not set: the agent does not run in such a job")
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError as exc:
        raise ValueError(f"cannot read {var}={path!r}: {exc}") from exc
    counts: dict[str, int] = {}
    for host in lines:
        counts[host] = counts.get(host, 0) + 1
    return list(counts.items())


def _gpus_per_node(cfg: AgentConfig, n_nodes: int, env: Mapping[str, str]) -> int:
    declared = cfg.gpus_per_node
    if declared is not None:
        return int(declared)
    described = cfg.gpus or 0
    if described:
        return math.ceil(described / n_nodes)
    return detect_gpus(env)


def detect_cores() -> int:
    """How many cores this process may run on: its CPU affinity (what a batch
    system's cgroup or ``taskset`` left it), else ``os.cpu_count()``, else 1."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):   # not on Linux
        return os.cpu_count() or 1


def detect_gpus(environ: Mapping[str, str]) -> int:
    """How many GPUs this host shows: the entries of ``CUDA_VISIBLE_DEVICES`` when it
    is set, else the lines of ``nvidia-smi --list-gpus``, else 0."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "--list-gpus"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("nvidia-smi failed, assuming no GPUs: %s", exc)
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))
