"""A pilot's Dask workers as distributed's ``SpecCluster`` sees one job.

``SpecCluster`` keeps one spec entry per job and makes one :class:`PilotJob` of it
(``cls(scheduler_address, name=..., **options)``), awaits it to start it and
closes it when the spec entry goes, as dask-jobqueue's ``Job`` does for one batch
job. Here a job is a pilot (the cluster's own, or one of the user's) and its
``processes`` worker units. The RP calls block, so they run on threads of the
cluster's loop, which also runs the scheduler.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from distributed.deploy.spec import ProcessInterface

from rp_executor.dask.pilots import PilotWorkers
from rp_executor.dask.workers import Layout

log = logging.getLogger(__name__)

#: Seconds a job waits for the scheduler to move its workers' data elsewhere.
RETIRE_TIMEOUT = 120.0


class PilotJob(ProcessInterface):
    """One pilot's Dask workers.

    :param scheduler: the scheduler's address (``tls://host:port``).
    :param name: the job's name; its workers are ``<name><suffix>``.
    :param workers: the cluster's :class:`~rp_executor.dask.pilots.PilotWorkers`.
    :param shape: how the workers split the pilot's cores.
    :param suffixes: one per worker process (``-0``, ``-1``, ...).
    :param pilot: a pilot of the user's to run on (left running at close); None:
        the job starts a pilot of its own and ends it at close.
    :param retire: ``retire(worker names)``, awaited before the workers are
        ended, so that the scheduler moves their data and work first.
    """

    def __init__(self, scheduler: str, name: str, *, workers: PilotWorkers,
                 shape: Layout, suffixes: list[str], pilot: Any = None,
                 retire: Callable[[list[str]], Awaitable[Any]] | None = None) -> None:
        super().__init__(scheduler, name)
        self.scheduler_address = scheduler
        self.name = name
        self.shape = shape
        self.suffixes = list(suffixes)
        self.pilot = pilot
        self.own = pilot is None
        self.units: list = []
        self._workers = workers
        self._retire = retire

    @property
    def worker_names(self) -> list[str]:
        """The names of the job's Dask workers."""
        return [f"{self.name}{s}" for s in self.suffixes]

    async def start(self) -> None:
        """Submit the pilot (if the job owns one) and the worker units; returns
        without waiting for them to run."""
        loop = asyncio.get_running_loop()
        self.pilot, self.units = await loop.run_in_executor(
            None, self._workers.start, self.name, self.scheduler_address, self.pilot,
            self.shape, self.suffixes)
        await super().start()

    async def close(self) -> None:
        """Retire the workers (the scheduler moves their data to other workers),
        then cancel their units and, if the job started it, the pilot."""
        if self._retire is not None and any(not u.is_final for u in self.units):
            try:
                await asyncio.wait_for(self._retire(self.worker_names), RETIRE_TIMEOUT)
            except Exception as exc:   # the units end all the same
                log.warning("%s: retiring its workers failed: %r", self.name, exc)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._workers.stop, self.pilot, self.units,
                                   self.own)
        await super().close()

    def __repr__(self) -> str:
        pilot = getattr(self.pilot, "uid", None)
        return f"<PilotJob {self.name} on {pilot or 'a new pilot'}: " \
               f"{len(self.suffixes)} × {self.shape.threads} thread(s), " \
               f"status={self.status.name}>"
