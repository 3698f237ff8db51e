"""Pilots are blocks: launching an agent through a Parsl ExecutionProvider.

This is the only client module that imports Parsl, and only when a pilot is launched.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def make_provider(rcfg: dict, description: Any, script_dir: Path) -> Any:
    """The Parsl provider that launches a pilot's block.

    A provider handed in with the description (``description.provider``) is used as
    is; otherwise the resource config names the provider class and its arguments,
    and the description sizes and names the block (:func:`batch.provider_kwargs`).
    The agent owns its whole allocation, so the block runs one agent through
    Parsl's ``SimpleLauncher``.
    """
    provider = description.provider
    if provider is None:
        import parsl.providers
        from parsl.launchers import SimpleLauncher

        name = rcfg.get("provider") or "LocalProvider"
        cls = getattr(parsl.providers, name, None)
        if cls is None:
            from .exceptions import BadParameter
            raise BadParameter(f"resource {description.resource!r} names provider {name!r}, "
                               "which parsl.providers does not have",
                               attribute="provider", value=name)
        from .batch import provider_kwargs

        kwargs = {**(rcfg.get("provider_args") or {}), **provider_kwargs(rcfg, description)}
        kwargs.setdefault("launcher", SimpleLauncher())
        kwargs.setdefault("init_blocks", 0)
        provider = cls(**kwargs)
    if getattr(provider, "script_dir", None) is None:
        provider.script_dir = str(script_dir)
    Path(provider.script_dir).mkdir(parents=True, exist_ok=True)
    return provider


def agent_command(python: str, cfg_path: Path) -> str:
    """The block's command: start the agent with its config file (0600) as argument."""
    return f"exec {shlex.quote(python)} -m rp_executor.agent {shlex.quote(str(cfg_path))}"


def python_for(rcfg: dict) -> str:
    """The Python interpreter the agent runs with on this resource."""
    return rcfg.get("python_interpreter") or sys.executable


def sweep_local_processes(session_id: str, pilot_id: str, sandbox: str | None) -> int:
    """Kill processes on this machine that a pilot started and left behind.

    Used when an agent died without cleaning up (SIGKILL): its units carry
    ``RP_SESSION_ID``, ``RP_PILOT_ID`` and ``RP_PILOT_SANDBOX`` in their environment,
    and all three must match, so that another session that happens to reuse the uid
    is left alone. Returns how many processes were killed.
    """
    import psutil

    me = os.getpid()
    victims = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if env.get("RP_SESSION_ID") != session_id or env.get("RP_PILOT_ID") != pilot_id \
                or env.get("RP_PILOT_SANDBOX") != sandbox:
            continue
        victims.append(proc)
    for proc in victims:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            continue
    if victims:
        psutil.wait_procs(victims, timeout=3)
        log.info("killed %d leftover process(es) of %s %s", len(victims), session_id,
                 pilot_id)
    return len(victims)


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
