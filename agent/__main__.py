"""``python -m rp_executor.agent <config file>``: run a pilot's agent.

The config file is an :class:`~rp_executor.agent.config.AgentConfig` written by the
client with mode 0600 (it holds the agent's CURVE secret key); it is read and then
removed.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Run the agent configured by the file named in ``argv``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m rp_executor.agent <agent config file (0600)>", file=sys.stderr)
        return 2
    from .agent import Agent
    from .config import AgentConfig

    path = Path(argv[0])
    cfg = AgentConfig.read(path)
    os.unlink(path)  # the secret lives in the agent's memory only from now on
    os.chdir(cfg.sandbox)
    log_path = os.path.join(cfg.sandbox, "agent.log")
    os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT, 0o600))   # owner only
    logging.basicConfig(filename=log_path,
                        level=cfg.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    profile = os.environ.get("RP_EXECUTOR_AGENT_PROFILE")
    if profile:  # a developer's aid: cProfile of the whole agent, written at exit
        import cProfile
        profiler = cProfile.Profile()
        try:
            return profiler.runcall(Agent(cfg).run)
        finally:
            profiler.dump_stats(os.path.join(cfg.sandbox, profile))
    return Agent(cfg).run()


if __name__ == "__main__":
    sys.exit(main())
