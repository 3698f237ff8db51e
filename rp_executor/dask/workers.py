"""What a pilot's Dask workers are: their layout, their lifetime, their unit.

Pure functions, so that the rules are tested without processes:

* :func:`layout` splits a pilot's cores into worker processes and threads, and its
  GPUs and memory among those processes (distributed's own split of cores when the
  caller gives neither, as ``LocalCluster`` and dask-jobqueue do);
* :func:`lifetime` is how long a worker may live on a pilot with so many seconds of
  runtime left, so that it retires (and Dask moves its data and work) before the
  pilot ends;
* :func:`worker_description` is the long-running executable unit of one worker
  process: ``python -m distributed.cli.dask_worker <scheduler> ...``. Its TLS
  credentials are paths of files (mode 0600), never key material on a command line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rp_executor.exceptions import BadParameter

#: The module a worker unit runs (``python -m ...``), as dask-jobqueue's workers do.
WORKER_MODULE = "distributed.cli.dask_worker"
#: Seconds a worker waits for an unreachable scheduler before it exits.
DEATH_TIMEOUT = 60
#: The smallest and largest margin (seconds) a worker retires before its pilot ends.
MARGIN_MIN, MARGIN_MAX = 30.0, 300.0


@dataclass(frozen=True)
class Layout:
    """How one pilot's cores hold Dask workers.

    :ivar processes: worker processes (one unit each).
    :ivar threads: threads of each worker (the cores its unit takes).
    :ivar gpus: GPUs of each worker (its unit's ``gpu_processes``; a ``GPU``
        resource of the worker).
    :ivar memory: bytes each worker may use (its ``--memory-limit``); None: Dask's
        ``auto``.
    """

    processes: int
    threads: int
    gpus: int = 0
    memory: int | None = None

    @property
    def cores(self) -> int:
        """The cores the workers take together: ``processes × threads``."""
        return self.processes * self.threads


def layout(cores: int, processes: int | None = None, threads: int | None = None,
           gpus: int = 0, memory: Any = None, where: str = "DaskCluster") -> Layout:
    """Split ``cores`` (and ``gpus``, and ``memory`` in bytes or a string like
    ``"4GB"``) into worker processes.

    Neither ``processes`` nor ``threads``: distributed's split of the cores
    (``nprocesses_nthreads``: one process per core up to 4 cores, then about √cores
    processes). One of them: the other fills the cores. Both: as given, at most
    ``cores`` together.

    :raises BadParameter: a count below 1, more than ``cores`` cores, GPUs that the
        processes cannot share evenly, or memory that is not a size; ``where``
        starts the message.
    """
    from dask.utils import parse_bytes
    from distributed.deploy.utils import nprocesses_nthreads

    for name, value in (("processes", processes), ("threads", threads)):
        if value is not None and (type(value) is not int or value < 1):
            raise BadParameter(f"{where}: {name} must be an int >= 1 or None; got "
                               f"{value!r}", attribute=name, value=value)
    if type(cores) is not int or cores < 1:
        raise BadParameter(f"{where}: cores must be an int >= 1; got {cores!r}",
                           attribute="cores", value=cores)
    if processes is None and threads is None:
        processes, threads = nprocesses_nthreads(cores)
    elif processes is None:
        processes = max(1, cores // threads)
    elif threads is None:
        threads = max(1, cores // processes)
    if processes * threads > cores:
        raise BadParameter(f"{where}: processes × threads = {processes} × {threads} = "
                           f"{processes * threads} cores, more than the {cores} of the "
                           f"pilot; allowed: at most {cores}", attribute="processes",
                           value=processes)
    if gpus % processes:
        raise BadParameter(f"{where}: {gpus} GPUs cannot be shared evenly by "
                           f"{processes} worker processes; allowed: a multiple of "
                           f"{processes}", attribute="gpus", value=gpus)
    per_worker = None
    if memory is not None:
        try:
            total = parse_bytes(memory) if isinstance(memory, str) else int(memory)
        except (TypeError, ValueError) as exc:
            raise BadParameter(f"{where}: memory must be bytes (an int) or a size such "
                               f"as '4GB'; got {memory!r}", attribute="memory",
                               value=memory) from exc
        if total < processes:
            raise BadParameter(f"{where}: memory {memory!r} is too small for {processes} "
                               "worker processes", attribute="memory", value=memory)
        per_worker = total // processes
    return Layout(processes, threads, gpus // processes, per_worker)


def default_margin(runtime_s: float) -> float:
    """Seconds before its pilot ends that a worker retires by default: a tenth of
    the runtime, at least 30 s, at most 5 minutes (dask-jobqueue's advice: a 55
    minute lifetime for a one-hour job)."""
    return min(MARGIN_MAX, max(MARGIN_MIN, runtime_s / 10.0))


def lifetime(left_s: float, margin_s: float) -> tuple[float, float]:
    """``(lifetime, stagger)`` in seconds of a worker on a pilot with ``left_s``
    seconds of runtime left, retiring ``margin_s`` seconds before it ends.

    Dask picks each worker's lifetime at random in ``lifetime ± stagger``, so that
    the workers of a cluster do not all leave at once; the latest of them leaves
    ``margin_s`` before the pilot ends. The stagger is a fifth of the margin. A
    pilot with no time for that still gets workers, which retire after 1 s.
    """
    stagger = margin_s / 5.0
    life = left_s - margin_s - stagger
    if life < 1.0:
        return 1.0, 0.0
    return life, stagger


def worth_starting(left_s: float, margin_s: float) -> bool:
    """Whether a pilot with ``left_s`` seconds of runtime left should get new
    workers: they would live at least half the margin (so that a pilot whose
    workers just retired for its end is not given new ones)."""
    return lifetime(left_s, margin_s)[0] >= margin_s / 2.0


@dataclass
class WorkerTemplate:
    """What every worker unit of a cluster has in common.

    :ivar python: the interpreter on the pilot's nodes.
    :ivar tls: ``{"ca_file", "cert", "key"}`` paths, or None for plain TCP.
    :ivar nanny: start each worker under a nanny process (restarts it when it dies,
        enforces its memory limit) or alone.
    :ivar extra_args: more ``dask worker`` arguments (``worker_extra_args``).
    :ivar environment: variables for the worker units.
    :ivar pre_exec: shell lines before each worker starts (``job_script_prologue``).
    """

    python: str
    tls: dict[str, str] | None = None
    nanny: bool = False
    extra_args: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    pre_exec: list[str] = field(default_factory=list)


def worker_arguments(template: WorkerTemplate, scheduler: str, name: str, shape: Layout,
                     life: tuple[float, float] | None) -> list[str]:
    """The arguments of ``python`` for one worker: ``-m distributed.cli.dask_worker
    <scheduler> --name <name> ...``, its TLS files by path."""
    args = ["-m", WORKER_MODULE, scheduler, "--name", name,
            "--nthreads", str(shape.threads),
            "--memory-limit", "auto" if shape.memory is None else str(shape.memory),
            "--nanny" if template.nanny else "--no-nanny",
            "--death-timeout", str(DEATH_TIMEOUT),
            # the unit's sandbox: the worker's spill files stay with the pilot
            "--local-directory", ".", "--no-dashboard"]
    if life is not None:
        args += ["--lifetime", f"{life[0]:.0f}s", "--lifetime-stagger", f"{life[1]:.0f}s"]
    if shape.gpus:
        args += ["--resources", f"GPU={shape.gpus}"]
    if template.tls is not None:
        args += ["--tls-ca-file", template.tls["ca_file"],
                 "--tls-cert", template.tls["cert"], "--tls-key", template.tls["key"]]
    return args + [str(a) for a in template.extra_args]


def worker_description(template: WorkerTemplate, scheduler: str, name: str,
                       shape: Layout, pilot: str,
                       life: tuple[float, float] | None) -> Any:
    """The ComputeUnitDescription of one worker process on ``pilot``: an executable
    unit taking ``shape.threads`` cores and ``shape.gpus`` GPUs, named ``name``."""
    from rp_executor.description import ComputeUnitDescription

    return ComputeUnitDescription(
        executable=template.python,
        arguments=worker_arguments(template, scheduler, name, shape, life),
        cpu_processes=1, cpu_threads=shape.threads, gpu_processes=shape.gpus,
        environment=dict(template.environment), pre_exec=list(template.pre_exec),
        name=name, pilot=pilot)


def jobs_for(workers: int, processes: int) -> int:
    """Pilots (jobs) that hold ``workers`` worker processes, ``processes`` each."""
    return int(math.ceil(workers / processes)) if workers > 0 else 0


def job_of(worker: Any) -> str:
    """The job (pilot) name of a worker: ``dask.0000-3`` for ``dask.0000-3-1``.

    Given to distributed's ``Adaptive`` as ``worker_key``, so that it retires whole
    pilots, not one worker of each. Takes a ``WorkerState`` or a name.
    """
    name = str(getattr(worker, "name", worker))
    return name.rsplit("-", 1)[0]
