"""The agent's configuration: what the client writes for a pilot's agent, and it reads.

The client fills an :class:`AgentConfig` when it launches a pilot and writes it with
:meth:`AgentConfig.write` into the pilot sandbox, mode 0600 (it holds the agent's CURVE
secret key); the agent reads it with :meth:`AgentConfig.read` and removes the file.
Resource managers and launch methods read the fields that concern them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class AgentConfig:
    """Everything an agent is told about its pilot.

    :ivar session_id: the session's uid (``RP_SESSION_ID`` of every unit).
    :ivar pilot_id: the pilot's uid (the agent's wire identity).
    :ivar endpoint: the client's ZMQ address (``tcp://host:port``).
    :ivar server_public: the client's CURVE public key.
    :ivar public: the agent's CURVE public key.
    :ivar secret: the agent's CURVE secret key.
    :ivar sandbox: the pilot sandbox (the agent's working directory).
    :ivar cores: the cores the pilot holds.
    :ivar gpus: the GPUs the pilot holds.
    :ivar runtime: the pilot's runtime in minutes.
    :ivar cores_per_node: cores of one node (None: what the node shows).
    :ivar gpus_per_node: GPUs of one node (None: what the node shows).
    :ivar resource_manager: how the agent finds its nodes: ``local``, ``slurm``,
        ``pbspro``, ``lsf``, ...
    :ivar task_launch_method: how single-process units start (``FORK``, ``SRUN``, ...).
    :ivar mpi_launch_method: how MPI units start (``MPIRUN``, ``SRUN``, ...).
    :ivar launch_options: options per launch method name.
    :ivar heartbeat_interval: seconds between heartbeats.
    :ivar reconnect_grace: seconds the agent carries on without a client (one that
        reattaches in that time finds everything); past it the agent ends its units
        and exits.
    :ivar log_level: the level of ``agent.log``.
    :ivar python_path: directories function units can import from (the client's
        ``sys.path`` when the pilot runs on the client's machine).
    :ivar function_workers: warm worker processes for function units at most (None:
        one per core of the pilot, at most 4 per core of the agent's node and 256 in
        all; see :func:`rp_executor.agent.function_pool.pool_size`).
    """

    session_id: str = ""
    pilot_id: str = ""
    endpoint: str = ""
    server_public: str = ""
    public: str = ""
    secret: str = field(default="", repr=False)
    sandbox: str = "."
    cores: int = 1
    gpus: int = 0
    runtime: float = 10.0
    cores_per_node: int | None = None
    gpus_per_node: int | None = None
    resource_manager: str = "local"
    task_launch_method: str = "FORK"
    mpi_launch_method: str = "MPIRUN"
    launch_options: dict[str, Any] = field(default_factory=dict)
    heartbeat_interval: float = 1.0
    reconnect_grace: float = 120.0
    log_level: str = "INFO"
    python_path: list[str] = field(default_factory=list)
    function_workers: int | None = None

    @property
    def batch_job(self) -> bool:
        """Whether the pilot runs as a batch system's job (not on a local fork)."""
        return (self.resource_manager or "local").lower() not in ("local", "fork")

    def write(self, path: Path | str) -> None:
        """Write the config as JSON to ``path``, created with mode 0600."""
        from rp_executor._core.wire import write_secret
        write_secret(Path(path), asdict(self))

    @classmethod
    def read(cls, path: Path | str) -> "AgentConfig":
        """Read a config written by :meth:`write`.

        :raises PermissionError: the file is readable by others than its owner.
        :raises ValueError: the file names a field an AgentConfig does not have.
        """
        from rp_executor._core.wire import read_secret
        data = read_secret(Path(path))
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown agent config field(s) "
                             f"{', '.join(sorted(unknown))}")
        return cls(**data)
