"""A Parsl ``Staging`` provider for ``globus://`` files, on :mod:`.globus`.

Use it in any Parsl executor's ``storage_access`` (``RPExecutor``, HTEX,
``ThreadPoolExecutor``)::

    staging = GlobusStaging(endpoint_uuid="<collection of the executor's side>",
                            endpoint_path="/~/work", local_path="/home/me/work",
                            context=rp.Context("globus", {...}))
    ThreadPoolExecutor(working_dir="/home/me/work/run", storage_access=[staging])

Files ``File("globus://<collection>/<path>")`` are staged in to, and out from,
``<executor working_dir>/<file name>``. That local path is a path on the collection
``endpoint_uuid``: ``endpoint_path`` + its place below ``local_path`` (both default
to the working directory itself), or, without ``endpoint_uuid``, whatever the
context's ``collections`` map says.

Unlike Parsl's own ``GlobusStaging``, it works with globus-sdk v4, succeeds only on a
task status of SUCCEEDED, bounds every wait (``deadline``, ``timeout``), puts the
Globus error text into the exception, never prompts for a login, and batches the
files of apps submitted together into few transfer tasks.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from typing import Any

from parsl.app.app import python_app
from parsl.data_provider.staging import Staging
from parsl.utils import RepresentationMixin

from rp_executor.constants import CREATE_PARENTS

from .directives import GlobusPath, parse_globus
from .local import StagingError

log = logging.getLogger(__name__)


class GlobusStaging(Staging, RepresentationMixin):
    """Stages ``globus://`` files in and out of an executor's working directory.

    :param endpoint_uuid: the collection that holds the executor's working directory.
    :param endpoint_path: the working directory's (or ``local_path``'s) path on it.
    :param local_path: a local directory above the working directory whose
        collection path is ``endpoint_path``.
    :param context: a ``Context('globus')`` with the credentials (and ``collections``).
    :param deadline: as for :class:`~rp_executor.staging.globus.GlobusTransfer`.
    :param timeout: as for :class:`~rp_executor.staging.globus.GlobusTransfer`.
    :param poll_interval: as for :class:`~rp_executor.staging.globus.GlobusTransfer`.
    :param window: seconds within which staging requests are batched together.
    """

    def __init__(self, endpoint_uuid: str | None = None, endpoint_path: str | None = None,
                 local_path: str | None = None, *, context: Any = None,
                 deadline: float = 3600.0, timeout: float | None = None,
                 poll_interval: float = 2.0, window: float = 0.2) -> None:
        if context is None or getattr(context, "type", None) != "globus":
            raise ValueError("GlobusStaging needs context=rp.Context('globus', {...}) with "
                             f"the credentials; got {context!r}")
        self.endpoint_uuid = endpoint_uuid
        self.endpoint_path = endpoint_path
        self.local_path = local_path
        self.context = context
        self.deadline = deadline
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.window = window
        self._batcher: Any = None
        self._lock = threading.Lock()

    # Parsl's contract ---------------------------------------------------------------

    def can_stage_in(self, file: Any) -> bool:
        return file.scheme == "globus"

    def can_stage_out(self, file: Any) -> bool:
        return file.scheme == "globus"

    def stage_in(self, dm: Any, executor: str, file: Any, parent_fut: Any) -> Any:
        working_dir = _working_dir(dm, executor)
        file.local_path = os.path.join(working_dir, file.filename)
        app = python_app(executors=["_parsl_internal"], data_flow_kernel=dm.dfk)(
            functools.partial(_stage_in, self))
        app_fut = app(outputs=[file], _parsl_staging_inhibit=True, parent_fut=parent_fut)
        return app_fut._outputs[0]

    def stage_out(self, dm: Any, executor: str, file: Any, app_fu: Any) -> Any:
        working_dir = _working_dir(dm, executor)
        file.local_path = os.path.join(working_dir, file.filename)
        app = python_app(executors=["_parsl_internal"], data_flow_kernel=dm.dfk)(
            functools.partial(_stage_out, self))
        return app(app_fu, _parsl_staging_inhibit=True, inputs=[file])

    # the transfers ------------------------------------------------------------------

    def collection_path(self, local: str) -> GlobusPath:
        """The collection path of a local path on the executor's side."""
        local = os.path.abspath(local)
        if self.endpoint_uuid is None:
            from .globus import collection_path
            return collection_path(local, self.context.collections)
        base_local = os.path.abspath(self.local_path or os.path.dirname(local))
        base_remote = self.endpoint_path or base_local
        rel = os.path.relpath(local, base_local)
        if rel.startswith(".."):
            raise StagingError(f"{local} is not below local_path {base_local}")
        return GlobusPath(self.endpoint_uuid, os.path.normpath(os.path.join(base_remote, rel)))

    def transfer(self, source: GlobusPath, target: GlobusPath) -> None:
        """Transfer one file (batched with others submitted meanwhile) and wait.

        :raises StagingError: with the Globus error text.
        """
        from .globus import Batcher, GlobusTransfer, Item
        with self._lock:
            if self._batcher is None:
                self._batcher = Batcher(GlobusTransfer.from_context(
                    self.context, deadline=self.deadline, timeout=self.timeout,
                    poll_interval=self.poll_interval), window=self.window)
            batcher = self._batcher
        future = batcher.submit(Item(source, target, None,
                                     create_parents=bool(CREATE_PARENTS)))
        future.result(timeout=batcher.transfer.timeout + 120)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_batcher"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def _working_dir(dm: Any, executor: str) -> str:
    ex = dm.dfk.executors[executor]
    working_dir = getattr(ex, "working_dir", None) or os.getcwd()
    os.makedirs(working_dir, exist_ok=True)
    return os.path.abspath(working_dir)


# module-level functions, so that functools.partial works on them (as in Parsl)

def _stage_in(provider: GlobusStaging, parent_fut: Any = None, outputs: list = (),
              _parsl_staging_inhibit: bool = True) -> None:
    file = outputs[0]
    source = parse_globus(file.url)
    provider.transfer(source, provider.collection_path(file.local_path))


def _stage_out(provider: GlobusStaging, app_fu: Any, inputs: list = (),
               _parsl_staging_inhibit: bool = True) -> None:
    # app_fu is only a dependency: the app's output exists once it is done
    file = inputs[0]
    provider.transfer(provider.collection_path(file.local_path), parse_globus(file.url))


__all__ = ["GlobusStaging"]
