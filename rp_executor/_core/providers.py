"""Pilots are blocks: launching an agent through a Parsl ExecutionProvider, and the
provider's arguments from a pilot description.

This is the only client module that imports Parsl, and only when a pilot is launched.
A resource config names a Parsl provider class (``provider``) and fixed arguments for
it (``provider_args``); what changes from pilot to pilot comes from the
:class:`ComputePilotDescription`: ``queue`` (or the config's ``default_queue``)
becomes the partition or queue, ``project`` the account, ``runtime`` (minutes) the
walltime, and ``cores`` / ``gpus`` the number of nodes, by the config's
``cores_per_node`` / ``gpus_per_node`` (:func:`provider_kwargs`, pure).
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)


def make_provider(rcfg: dict, description: Any, script_dir: Path) -> Any:
    """The Parsl provider that launches a pilot's block.

    A provider handed in with the description (``description.provider``) is used as
    is; otherwise the description or the resource config names the provider class
    (``description.provider`` as a name wins) and the config gives its arguments,
    and the description sizes and names the block (:func:`batch.provider_kwargs`).
    The agent owns its whole allocation, so the block runs one agent through
    Parsl's ``SimpleLauncher``.
    """
    provider = description.provider
    if provider is None or isinstance(provider, str):   # built here, by name
        import parsl.providers
        from parsl.launchers import SimpleLauncher

        name = provider or rcfg.get("provider") or "LocalProvider"
        cls = getattr(parsl.providers, name, None)
        if cls is None:
            from rp_executor.exceptions import BadParameter
            raise BadParameter(f"resource {description.resource!r} names provider {name!r}, "
                               "which parsl.providers does not have",
                               attribute="provider", value=name)
        from rp_executor._core.providers import provider_kwargs

        kwargs = {**(rcfg.get("provider_args") or {}), **provider_kwargs(rcfg, description)}
        kwargs.setdefault("launcher", SimpleLauncher())
        kwargs.setdefault("init_blocks", 0)
        provider = cls(**kwargs)
    if getattr(provider, "script_dir", None) is None:
        provider.script_dir = str(script_dir)
    Path(provider.script_dir).mkdir(parents=True, exist_ok=True)
    return provider


def agent_command(python: str, cfg_path: Path | str, output: str | None = None,
                  error: str | None = None) -> str:
    """The block's command: start the agent with its config file (0600) as argument,
    its stdout and stderr into the files ``output`` and ``error`` when given (relative
    ones in the config file's directory, the pilot sandbox)."""
    command = f"exec {shlex.quote(python)} -m rp_executor.agent {shlex.quote(str(cfg_path))}"
    for fd, name in ((1, output), (2, error)):
        if name:
            path = os.path.join(os.path.dirname(str(cfg_path)), name)
            command += f" {fd}>{shlex.quote(path)}"
    return command


def python_for(rcfg: dict) -> str:
    """The Python interpreter the agent runs with on this resource."""
    return rcfg.get("python_interpreter") or sys.executable


KILL_GRACE = 3.0
"""Seconds a process of an ended local pilot has after SIGTERM before SIGKILL."""


def sweep_local_processes(session_id: str, pilot_id: str, sandbox: str | None,
                          grace: float = KILL_GRACE) -> int:
    """End every process on this machine that belongs to a pilot the client ended.

    Every path that ends a local pilot (its block ended, its heartbeats stopped, it
    was canceled, its manager or session closed) calls this once the block is gone
    or canceled, so that nothing a dead or hung agent left behind lives on: the
    processes :func:`local_processes` finds get :func:`end_processes` (SIGTERM and
    SIGCONT, SIGKILL after ``grace`` seconds), stopped ones included. Returns how
    many there were.
    """
    victims = local_processes(session_id, pilot_id, sandbox)
    if victims:
        ended = end_processes(victims, grace)
        log.info("ended %d leftover process(es) of %s %s (%d needed SIGKILL)",
                 len(victims), session_id, pilot_id, ended)
    return len(victims)


def local_processes(session_id: str, pilot_id: str, sandbox: str | None) -> list[Any]:
    """The live processes on this machine that belong to a local pilot (psutil).

    - its units (each in its own process group) and function workers: they carry
      ``RP_SESSION_ID``, ``RP_PILOT_ID`` and ``RP_PILOT_SANDBOX`` in their
      environment, and all three must match, so that another session that happens
      to reuse the uid is left alone;
    - the agent and its workers: ``python -m rp_executor.agent...`` with an
      argument in the pilot's sandbox;
    - the block's shell: a shell running the job script ``rp.<session>.<pilot>.*``
      (LocalProvider's wrapper);
    - every descendant of those (a unit's child that cleared its environment).

    Zombies are not included: they are dead already.
    """
    import psutil

    me = os.getpid()
    found: dict[int, Any] = {}
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.pid == me or proc.info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        cmdline = proc.info.get("cmdline") or []
        if _is_agent_of(cmdline, sandbox) or _is_block_of(cmdline, session_id, pilot_id):
            found[proc.pid] = proc
            continue
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if env.get("RP_SESSION_ID") == session_id and env.get("RP_PILOT_ID") == pilot_id \
                and env.get("RP_PILOT_SANDBOX") == sandbox:
            found[proc.pid] = proc
    for proc in list(found.values()):
        try:
            for child in proc.children(recursive=True):
                if child.pid != me:
                    found.setdefault(child.pid, child)
        except psutil.Error:
            continue
    return list(found.values())


def end_processes(procs: list[Any], grace: float = KILL_GRACE) -> int:
    """End ``procs`` (psutil processes): SIGTERM, then SIGCONT (a stopped process
    keeps a SIGTERM pending until it runs again), then SIGKILL to those still there
    after ``grace`` seconds. Returns after every one is gone (zombies count as gone)
    or, for one that even SIGKILL does not end at once (uninterruptible I/O), after
    a few more seconds; returns how many needed SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGCONT):
        for proc in procs:
            _signal(proc, sig)
    left = _wait_gone(procs, grace)
    for proc in left:
        _signal(proc, signal.SIGKILL)
    if left:
        still = _wait_gone(left, max(grace, 1.0))
        if still:
            log.warning("%d process(es) outlived SIGKILL: %s", len(still),
                        ", ".join(str(p.pid) for p in still))
    return len(left)


def _signal(proc: Any, sig: int) -> None:
    import psutil
    try:
        proc.send_signal(sig)
    except psutil.NoSuchProcess:
        pass   # gone already
    except psutil.Error as exc:
        log.warning("cannot send %s to process %d: %s", signal.Signals(sig).name,
                    proc.pid, exc)


def _wait_gone(procs: list[Any], timeout: float) -> list[Any]:
    """Poll until every process is gone or a zombie; those left after ``timeout``."""
    import psutil

    deadline = time.monotonic() + timeout
    left = list(procs)
    while True:
        alive = []
        for proc in left:
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.NoSuchProcess:
                continue
            except psutil.Error:
                alive.append(proc)
        left = alive
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def _is_agent_of(cmdline: list[str], sandbox: str | None) -> bool:
    """Whether ``cmdline`` is the agent (or a worker) of the pilot in ``sandbox``."""
    if not sandbox or "-m" not in cmdline:
        return False
    module = cmdline[cmdline.index("-m") + 1] if cmdline.index("-m") + 1 < len(cmdline) \
        else ""
    prefix = sandbox.rstrip("/") + "/"
    return module.startswith("rp_executor.agent") and \
        any(arg == sandbox or arg.startswith(prefix) for arg in cmdline)


def _is_block_of(cmdline: list[str], session_id: str, pilot_id: str) -> bool:
    """Whether ``cmdline`` is a shell running the pilot's block script: Parsl's
    LocalProvider names it ``<script_dir>/<job name>.<time>.sh``, and the job name
    of a pilot is ``rp.<session uid>.<pilot uid>`` (see ``PilotManager._launch``)."""
    if not cmdline or os.path.basename(cmdline[0]) not in ("bash", "sh"):
        return False
    marker = f"/rp.{session_id}.{pilot_id}."
    return any(marker in arg for arg in cmdline[1:])


def wait_terminal(provider: Any, job_id: str, timeout: float) -> bool:
    """Poll the provider until the job is terminal; False if it was not within timeout."""
    deadline = time.monotonic() + timeout
    while True:
        status = provider.status([job_id])[0]
        if status.terminal:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)



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
