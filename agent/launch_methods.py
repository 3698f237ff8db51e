"""Launch methods: how a unit's command reaches the cores the scheduler gave it.

RADICAL-Pilot's ``agent/lm`` family with a tiny contract: a launch method turns
the unit's argv (what a plain fork would exec) into the argv that starts it on its
``Slots`` -- ``fork`` leaves it as it is, ``mpirun`` (Open MPI, MPICH) and ``srun``
(a step of the pilot's Slurm allocation) prefix it.  Methods are registered by name
in ``LAUNCH_METHODS``; the resource config picks one for plain units
(``task_launch_method``) and one for MPI units (``mpi_launch_method``), and
:class:`LaunchMethods` chooses between them per unit.

A method is built once per agent and called for every unit it launches, so
``command`` must not change the method's state.  The argv a method gets already
carries the unit's arguments under RP 0.50's quoting rule (:mod:`.arguments`): either
the literal words or ``/bin/bash <unit script>``; methods put it on their own argv as
a list, never as shell text, so that the wrapped command keeps its meaning.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any, ClassVar

from .config import AgentConfig
from .scheduler import Slots

logger = logging.getLogger(__name__)

__all__ = ["LaunchMethod", "Fork", "MPIRun", "Srun", "LaunchMethods", "LAUNCH_METHODS",
           "LaunchError"]


class LaunchError(ValueError):
    """A unit cannot be launched this way (a tool is missing, the slots do not fit);
    the unit fails with this text."""


class LaunchMethod:
    """The contract: ``command`` wraps a unit's argv for its slots.

    :param options: the resource config's ``launch_options`` for this method
        (for example ``{"args": [...]}``, extra arguments put before the unit's argv).
    """

    name: ClassVar[str] = ""
    wraps: ClassVar[bool] = True
    """False for ``fork``: the executor then skips the call entirely."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})
        self.extra_args = [str(a) for a in self.options.get("args") or []]

    def command(self, argv: list[str], descr: Mapping[str, Any], slots: Slots,
                env: MutableMapping[str, str], sandbox: Path) -> list[str]:
        """The argv that starts ``argv`` on ``slots``.

        ``descr`` is the unit's (wire) description, ``env`` its environment, which
        the method may extend; files the method needs go to ``sandbox``.

        :raises LaunchError: when the unit cannot be started this way.
        """
        raise NotImplementedError


class Fork(LaunchMethod):
    """RP's FORK: the agent's own child process, on the agent's node."""

    name = "FORK"
    wraps = False

    def command(self, argv, descr, slots, env, sandbox):
        return argv


def _processes(descr: Mapping[str, Any], slots: Slots) -> list[tuple[str, int]]:
    """``(node, processes)`` per node of ``slots``: its cores over the unit's threads."""
    threads = int(descr.get("cpu_threads") or 1)
    return [(part.node, len(part.cores) // threads) for part in slots.nodes
            if len(part.cores) >= threads]


def _is_mpi(descr: Mapping[str, Any]) -> bool:
    return descr.get("cpu_process_type") == "MPI"


class MPIRun(LaunchMethod):
    """``mpirun`` of Open MPI or MPICH (options: ``flavor`` ``openmpi`` | ``mpich``,
    found from ``mpirun --version`` when not given; ``executable``, default
    ``mpirun``).

    Ranks go to the unit's nodes (``--host n1:2,n2:2``; MPICH ``-hosts``), without
    binding and without Open MPI's slot check (``--oversubscribe``), since the agent
    accounts for the cores itself.  Open MPI gets the unit's
    environment exported to every rank (``-x``) and ``--allow-run-as-root`` when the
    agent runs as root; inside a Slurm job ``SLURM_OVERLAP=1`` lets its ``srun``-started
    daemons share CPUs with other units' steps.
    """

    name = "MPIRUN"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.executable = str(self.options.get("executable") or "mpirun")
        self._flavor: str | None = self.options.get("flavor")

    @property
    def flavor(self) -> str:
        """``openmpi`` or ``mpich``, asked of ``mpirun --version`` once."""
        if self._flavor is None:
            self._flavor = _mpi_flavor(self.executable)
        return self._flavor

    def command(self, argv, descr, slots, env, sandbox):
        if shutil.which(self.executable, path=env.get("PATH")) is None:
            raise LaunchError(f"{self.executable!r} is not on the PATH of the agent's "
                              f"node (launch method {self.name}); install an MPI or "
                              f"choose another mpi_launch_method")
        per_node = _processes(descr, slots) if _is_mpi(descr) else \
            [(slots.nodes[0].node, 1)]
        n = sum(c for _, c in per_node)
        hosts = ",".join(f"{node}:{count}" for node, count in per_node)
        cmd = [self.executable, "-np", str(n)]
        if self.flavor == "mpich":
            cmd += ["-hosts", hosts]
        else:
            # the batch system's slot counts (often one task per node) are not the
            # agent's: it has already checked that the ranks have cores
            cmd += ["--host", hosts, "--bind-to", "none", "--oversubscribe"]
            if os.geteuid() == 0:
                cmd.append("--allow-run-as-root")
            for key in _exported(descr, env):
                cmd += ["-x", key]
            if "SLURM_JOB_ID" in env:
                env["SLURM_OVERLAP"] = "1"
        return [*cmd, *self.extra_args, *argv]


class Srun(LaunchMethod):
    """``srun``: the unit as a step of the pilot's Slurm allocation, on its nodes.

    Steps use ``--overlap``: the agent already accounts for the cores, and Slurm must
    not make a step wait for CPUs held by the agent or by other steps.  MPI units get
    ``--mpi=<options['mpi']>`` (default ``pmix``, which Open MPI from Debian needs)
    and, across nodes, their exact rank placement through ``SLURM_HOSTFILE`` with
    ``--distribution=arbitrary``; a plain unit is one task with all its cores.
    """

    name = "SRUN"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.executable = str(self.options.get("executable") or "srun")
        self.mpi = self.options.get("mpi", "pmix")

    def command(self, argv, descr, slots, env, sandbox):
        threads = int(descr.get("cpu_threads") or 1)
        cmd = [self.executable, "--overlap", "--export=ALL", "--kill-on-bad-exit=1"]
        if _is_mpi(descr):
            per_node = _processes(descr, slots)
            n = sum(c for _, c in per_node)
            cmd += [f"--ntasks={n}", f"--cpus-per-task={threads}", f"--nodes={len(per_node)}"]
            if len(per_node) > 1:
                # one line per rank; srun refuses --nodelist together with it
                hostfile = sandbox / f"{env.get('RP_UNIT_ID', 'unit')}.hosts"
                hostfile.write_text("".join(f"{node}\n" * count for node, count in per_node))
                env["SLURM_HOSTFILE"] = str(hostfile)
                cmd.append("--distribution=arbitrary")
            else:
                cmd.append(f"--nodelist={per_node[0][0]}")
            if self.mpi:
                cmd.append(f"--mpi={self.mpi}")
        else:
            cmd += ["--ntasks=1", f"--cpus-per-task={max(1, slots.cores)}", "--nodes=1",
                    f"--nodelist={slots.nodes[0].node}"]
        return [*cmd, *self.extra_args, *argv]


LAUNCH_METHODS: dict[str, type[LaunchMethod]] = {
    "FORK": Fork,
    "POPEN": Fork,
    "MPIRUN": MPIRun,
    "MPIEXEC": MPIRun,
    "SRUN": Srun,
}
"""Launch methods by (upper-case) name, as resource configs name them."""


def make_launch_method(name: str | None, options: Mapping[str, Any] | None = None
                       ) -> LaunchMethod:
    """The launch method called ``name`` (any case; None means FORK).

    :raises ValueError: an unknown name; the message lists the known ones.
    """
    key = (name or "FORK").upper()
    cls = LAUNCH_METHODS.get(key)
    if cls is None:
        raise ValueError(f"unknown launch method {name!r}; known: "
                         f"{', '.join(sorted(LAUNCH_METHODS))}")
    if key == "MPIEXEC":
        options = {"executable": "mpiexec", **(options or {})}
    return cls(options)


class LaunchMethods:
    """The agent's two launch methods and the per-unit choice between them.

    :param task: the method for plain units (``task_launch_method``).
    :param mpi: the method for MPI units (``mpi_launch_method``).
    """

    def __init__(self, task: LaunchMethod, mpi: LaunchMethod) -> None:
        self.task = task
        self.mpi = mpi
        self.trivial = not task.wraps and not mpi.wraps

    @classmethod
    def from_config(cls, cfg: AgentConfig) -> "LaunchMethods":
        """From the agent config's ``task_launch_method``, ``mpi_launch_method`` and
        ``launch_options`` (a dict of options per method name)."""
        options = {str(k).upper(): v for k, v in (cfg.launch_options or {}).items()}
        task = str(cfg.task_launch_method or "FORK").upper()
        mpi = str(cfg.mpi_launch_method or "MPIRUN").upper()
        return cls(make_launch_method(task, options.get(task)),
                   make_launch_method(mpi, options.get(mpi)))

    def for_unit(self, descr: Mapping[str, Any]) -> LaunchMethod | None:
        """The method that launches a unit, or None when it is simply forked."""
        method = self.mpi if _is_mpi(descr) else self.task
        return method if method.wraps else None


def _exported(descr: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    keys = ["OMP_NUM_THREADS", "RP_UNIT_ID", "RP_UNIT_SANDBOX", "RP_SESSION_ID",
            "RP_PILOT_ID", "RP_PILOT_SANDBOX", "CUDA_VISIBLE_DEVICES", "PATH",
            "LD_LIBRARY_PATH", "PYTHONPATH", "VIRTUAL_ENV"]
    keys += [str(k) for k in descr.get("environment") or {}]
    return [k for k in dict.fromkeys(keys) if k in env]


def _mpi_flavor(executable: str) -> str:
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True,
                             timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("%s --version failed (%s); assuming Open MPI", executable, exc)
        return "openmpi"
    text = (out.stdout + out.stderr).lower()
    if "open mpi" in text or "open-mpi" in text or "openrte" in text:
        return "openmpi"
    if "hydra" in text or "mpich" in text or "intel" in text:
        return "mpich"
    logger.warning("cannot tell the MPI of %s from %r; assuming Open MPI", executable,
                   text[:200])
    return "openmpi"
