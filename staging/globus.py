"""Globus transfers with globus-sdk v4: batched, bounded, and honest about failure.

:class:`GlobusTransfer` moves :class:`Item` s between Globus collections. Items that
share a source collection, a destination collection and their SKIP_FAILED setting go
in one transfer task, however many units they come from. A task succeeded only when
its status is ``SUCCEEDED`` (``task_wait`` returning True does not mean that); every
task has a Globus ``deadline``, and every wait an overall ``timeout`` after which the
task is canceled. A failed item carries the Globus error: the task's fatal error and
its error events, or the API error (``ConsentRequired`` names the scopes to consent to).

Authentication never prompts: a service account (``client_id`` + ``client_secret``)
gets tokens by the client-credentials grant; otherwise tokens come from the context's
token file (written on the submit host), refreshed with the refresh token when there
is one and written back (mode 0600). Without tokens, :class:`GlobusTransfer` raises
:class:`GlobusAuthError` at once, which is what a batch job needs.

globus-sdk is imported here only: importing ``rp_executor.staging`` does not load it.
The service URLs follow the SDK's ``GLOBUS_SDK_SERVICE_URL_TRANSFER`` /
``GLOBUS_SDK_SERVICE_URL_AUTH`` (or ``base_url`` / ``auth_url``).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Mapping

import globus_sdk
from globus_sdk.scopes import TransferScopes

from .directives import GlobusPath
from .local import StagingError

log = logging.getLogger(__name__)

RESOURCE_SERVER = "transfer.api.globus.org"
DEFAULT_DEADLINE = 3600.0
"""Seconds Globus may spend on a task before it expires it (FAILED)."""
DEFAULT_POLL_INTERVAL = 2.0
"""Seconds between two looks at a task's status."""


class GlobusAuthError(StagingError):
    """No usable Globus credentials; the message says what to do."""


@dataclass(frozen=True)
class Item:
    """One file or directory to transfer; ``key`` tells the caller's items apart."""

    source: GlobusPath
    target: GlobusPath
    key: Hashable
    recursive: bool = False
    create_parents: bool = True
    skip_failed: bool = False


def collection_path(local_path: str, collections: Mapping[str, str]) -> GlobusPath:
    """The collection path of a local path, from ``{collection uuid: local root}``.

    :raises StagingError: no collection's root holds the path.
    """
    local_path = os.path.abspath(local_path)
    best = None
    for uuid, root in collections.items():
        root = os.path.abspath(os.path.expanduser(root))
        if local_path == root or local_path.startswith(root.rstrip("/") + "/"):
            if best is None or len(root) > len(best[1]):
                best = (uuid, root)
    if best is None:
        raise StagingError(f"no Globus collection maps the local path {local_path}: add "
                           "{'<collection uuid>': '<local directory>'} to the globus "
                           f"context's collections (known: {dict(collections)})")
    rel = os.path.relpath(local_path, best[1])
    return GlobusPath(best[0].lower(), "/" if rel == "." else "/" + rel)


def describe_error(exc: BaseException) -> str:
    """The Globus error text of an SDK exception, for a unit's error."""
    if isinstance(exc, globus_sdk.GlobusAPIError):
        if exc.code == "ConsentRequired":
            scopes = []
            try:
                scopes = list(exc.info.consent_required.required_scopes or [])
            except AttributeError:
                pass
            shown = " ".join(scopes) or "(the error named none)"
            return (f"Globus needs your consent (403 ConsentRequired: {exc.message}): log in "
                    f"again on the submit host requesting the scope(s) {shown} and write "
                    "the new tokens to the context's token_file "
                    f"(for example: globus session consent '{scopes[0] if scopes else ''}')")
        text = f"Globus {exc.http_status} {exc.code or exc.http_reason}: {exc.message}"
        if exc.request_id:
            text += f" (request {exc.request_id})"
        return text
    if isinstance(exc, globus_sdk.NetworkError):
        return f"cannot reach Globus: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _task_error(tc: Any, task: Mapping[str, Any], why: str) -> str:
    """The task's status, fatal error and error events as one line."""
    parts = [f"Globus task {task.get('task_id')} {why}"]
    fatal = task.get("fatal_error") or {}
    if fatal:
        parts.append(f"{fatal.get('code')}: {fatal.get('description')}")
    try:
        events = tc.task_event_list(task["task_id"], limit=20)
        seen = set()
        for ev in events:
            if not ev.get("is_error"):
                continue
            text = f"{ev.get('code')}: {ev.get('description')}"
            if ev.get("details"):
                text += f" ({str(ev.get('details')).strip()[:300]})"
            if text not in seen:
                seen.add(text)
                parts.append(f"event {text}")
    except (globus_sdk.GlobusError, KeyError) as exc:
        parts.append(f"(its events could not be read: {describe_error(exc)})")
    return "; ".join(parts)


class GlobusTransfer:
    """Runs batches of :class:`Item` s as Globus transfer tasks.

    :param client_id: the Globus Auth client (a native app, or a service account with
        ``client_secret``).
    :param token_file: JSON tokens, ``{"transfer.api.globus.org": {"access_token",
        "refresh_token", "expires_at_seconds"}}`` (or those keys at the top level).
    :param deadline: seconds until Globus expires a task.
    :param timeout: seconds to wait for a batch at most (default: ``deadline`` + 60);
        a task still active then is canceled and its items fail.
    :param poll_interval: seconds between status polls.
    :raises GlobusAuthError: no credentials to use (never prompts).
    """

    def __init__(self, client_id: str | None = None, client_secret: str | None = None,
                 token_file: str | os.PathLike | None = None, *,
                 context: Any = None, deadline: float = DEFAULT_DEADLINE,
                 timeout: float | None = None, poll_interval: float = DEFAULT_POLL_INTERVAL,
                 base_url: str | None = None, auth_url: str | None = None,
                 label: str = "rp_executor staging") -> None:
        self._context = context
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_file = token_file
        self.deadline = float(deadline)
        self.timeout = float(timeout) if timeout is not None else self.deadline + 60.0
        self.poll_interval = max(0.01, float(poll_interval))
        self.label = label
        self._auth_url = auth_url
        self._lock = threading.Lock()
        self.client = globus_sdk.TransferClient(authorizer=self._authorizer(),
                                                base_url=base_url)

    @classmethod
    def from_context(cls, context: Any, **options: Any) -> "GlobusTransfer":
        """A transfer client configured by a ``Context('globus')``."""
        return cls(context.client_id, context.client_secret, context.token_file,
                   context=context, **options)

    # auth ---------------------------------------------------------------------------

    def _read_tokens(self) -> dict:
        if self._context is not None and self.token_file:
            tokens = self._context.read_tokens()
        elif self.token_file and os.path.exists(os.path.expanduser(str(self.token_file))):
            import json
            with open(os.path.expanduser(str(self.token_file))) as f:
                tokens = json.load(f)
        else:
            tokens = {}
        if isinstance(tokens.get(RESOURCE_SERVER), Mapping):
            return dict(tokens[RESOURCE_SERVER])
        return dict(tokens)

    def _save_tokens(self, response: Any) -> None:
        if not self.token_file:
            return
        try:
            data = response.by_resource_server.get(RESOURCE_SERVER)
        except AttributeError:
            return
        if not data:
            return
        old = self._read_tokens()
        new = {"access_token": data.get("access_token"),
               "refresh_token": data.get("refresh_token") or old.get("refresh_token"),
               "expires_at_seconds": data.get("expires_at_seconds")}
        from rp_executor.context import Context
        ctx = self._context or Context("globus", {"token_file": str(self.token_file)})
        try:
            current = ctx.read_tokens()
        except Exception:  # an unreadable file is replaced by the fresh tokens
            log.warning("globus token file %s unreadable; rewriting it", self.token_file)
            current = {}
        current[RESOURCE_SERVER] = new
        current.pop("access_token", None)
        current.pop("refresh_token", None)
        current.pop("expires_at_seconds", None)
        ctx.write_tokens(current)
        log.debug("refreshed globus tokens written to %s", self.token_file)

    def _authorizer(self) -> Any:
        tokens = self._read_tokens()
        access = tokens.get("access_token")
        expires = tokens.get("expires_at_seconds")
        kwargs = {"base_url": self._auth_url} if self._auth_url else {}
        if self.client_secret:
            if not self.client_id:
                raise GlobusAuthError("a globus context with a client_secret needs its "
                                      "client_id (the service account's client)")
            client = globus_sdk.ConfidentialAppAuthClient(self.client_id, self.client_secret,
                                                          **kwargs)
            return globus_sdk.ClientCredentialsAuthorizer(
                client, TransferScopes.all, access_token=access, expires_at=expires,
                on_refresh=self._save_tokens)
        refresh = tokens.get("refresh_token")
        if refresh:
            if not self.client_id:
                raise GlobusAuthError("refreshing Globus tokens needs the context's client_id "
                                      "(the native app the tokens were issued to)")
            client = globus_sdk.NativeAppAuthClient(self.client_id, **kwargs)
            return globus_sdk.RefreshTokenAuthorizer(
                refresh, client, access_token=access, expires_at=expires,
                on_refresh=self._save_tokens)
        if access:
            return globus_sdk.AccessTokenAuthorizer(access)
        where = f"in {self.token_file}" if self.token_file else "(the context has no token_file)"
        raise GlobusAuthError(
            f"no Globus tokens for {RESOURCE_SERVER} {where}, and no client_secret for a "
            "service account; staging does not log in interactively (it may run in a batch "
            "job): log in on the submit host and save the tokens with "
            "Context.write_tokens({'transfer.api.globus.org': {'access_token': ..., "
            "'refresh_token': ...}}), or use a service account (client_id + client_secret)")

    # transfers ----------------------------------------------------------------------

    def transfer(self, items: Iterable[Item]) -> dict[Hashable, str | None]:
        """Transfer the items in as few tasks as possible and wait (bounded).

        :returns: for each item's ``key``: None if it arrived, else the error text
            (a key with several items gets the first error).
        """
        items = list(items)
        outcome: dict[Hashable, str | None] = {it.key: None for it in items}
        groups: dict[tuple, list[Item]] = {}
        for it in items:
            groups.setdefault((it.source.collection, it.target.collection, it.skip_failed),
                              []).append(it)
        with self._lock:   # the SDK's authorizers are not thread safe
            tasks = []
            for (src, dst, skip), group in groups.items():
                try:
                    group = self._make_parents(dst, group, outcome)
                    if not group:
                        continue
                    tasks.append((self._submit(src, dst, skip, group), group))
                except Exception as exc:  # the API's error goes to every item of the group
                    text = describe_error(exc)
                    log.warning("globus transfer %s -> %s failed: %s", src, dst, text)
                    for it in group:
                        _fail(outcome, it, text)
            if tasks:
                self._wait(tasks, outcome)
        return outcome

    def _make_parents(self, collection: str, group: list[Item], outcome: dict) -> list[Item]:
        """mkdir the targets' parents (one level at a time: Globus has no mkdir -p);
        return the items whose parents are there."""
        made: dict[str, str | None] = {}
        kept = []
        for it in group:
            parent = os.path.dirname(it.target.path.rstrip("/")) or "/"
            if it.create_parents and parent not in made:
                made[parent] = self._mkdirs(collection, parent)
            error = made.get(parent)
            if error:
                _fail(outcome, it, f"cannot create {parent} on collection {collection}: "
                                   f"{error}")
            else:
                kept.append(it)
        return kept

    def _mkdirs(self, collection: str, path: str, depth: int = 0) -> str | None:
        if path in ("/", "", "/~", "/~/") or depth > 64:
            return None
        try:
            self.client.operation_mkdir(collection, path)
        except globus_sdk.GlobusAPIError as exc:
            if exc.code and "Exists" in exc.code:
                return None
            if exc.http_status == 404:
                error = self._mkdirs(collection, os.path.dirname(path.rstrip("/")), depth + 1)
                if error:
                    return error
                try:
                    self.client.operation_mkdir(collection, path)
                except globus_sdk.GlobusAPIError as again:
                    if again.code and "Exists" in again.code:
                        return None
                    return describe_error(again)
                return None
            if exc.code == "ConsentRequired":
                raise
            return describe_error(exc)
        return None

    def _submit(self, src: str, dst: str, skip: bool, group: list[Item]) -> str:
        deadline = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=self.deadline)
        # the submission id is fetched first, so that a retried POST cannot make a
        # second task (Globus accepts a submission id once)
        submission_id = self.client.get_submission_id()["value"]
        data = globus_sdk.TransferData(
            source_endpoint=src, destination_endpoint=dst, label=self.label[:128],
            submission_id=submission_id, deadline=deadline.strftime("%Y-%m-%d %H:%M:%S+00:00"),
            skip_source_errors=skip, fail_on_quota_errors=True, notify_on_succeeded=False,
            notify_on_failed=False)
        for it in group:
            source, target = it.source.path, it.target.path
            if it.recursive:
                source, target = source.rstrip("/") + "/", target.rstrip("/") + "/"
            data.add_item(source, target, recursive=it.recursive)
        task_id = self.client.submit_transfer(data)["task_id"]
        log.info("globus task %s: %d item(s) %s -> %s", task_id, len(group), src, dst)
        return task_id

    def _wait(self, tasks: list[tuple[str, list[Item]]], outcome: dict) -> None:
        end = time.monotonic() + self.timeout
        active = {task_id: group for task_id, group in tasks}
        while active:
            for task_id in list(active):
                try:
                    task = self.client.get_task(task_id)
                except globus_sdk.GlobusError as exc:
                    text = f"cannot follow Globus task {task_id}: {describe_error(exc)}"
                    for it in active.pop(task_id):
                        _fail(outcome, it, text)
                    continue
                status = task["status"]
                if status == "ACTIVE":
                    continue
                group = active.pop(task_id)
                if status == "SUCCEEDED":
                    continue
                self._failed(task, f"ended {status}", group, outcome)
            if not active:
                return
            if time.monotonic() >= end:
                break
            time.sleep(min(self.poll_interval, max(0.0, end - time.monotonic())))
        for task_id, group in active.items():
            try:
                self.client.cancel_task(task_id)
            except globus_sdk.GlobusError as exc:
                log.warning("canceling globus task %s failed: %s", task_id, describe_error(exc))
            try:
                task = self.client.get_task(task_id)
            except globus_sdk.GlobusError:
                task = {"task_id": task_id}
            self._failed(task, f"did not finish within the timeout of {self.timeout:g} s "
                               "(canceled)", group, outcome)

    def _failed(self, task: Any, why: str, group: list[Item], outcome: dict) -> None:
        text = _task_error(self.client, task, why)
        log.warning("%s", text)
        arrived: set[str] = set()
        try:
            for page in self.client.paginated.task_successful_transfers(task["task_id"]):
                arrived.update(t.get("destination_path") for t in page)
        except (globus_sdk.GlobusError, KeyError) as exc:
            log.debug("successful transfers of %s unknown: %s", task.get("task_id"), exc)
        for it in group:
            # a file that arrived is fine even if its task failed for another item
            if not it.recursive and it.target.path in arrived:
                continue
            _fail(outcome, it, text)


def _fail(outcome: dict, item: Item, text: str) -> None:
    if outcome.get(item.key) is None:
        outcome[item.key] = text


class Batcher:
    """Gathers items submitted from many threads into few transfer batches.

    Items submitted within ``window`` seconds of each other go in one
    :meth:`GlobusTransfer.transfer` call; each :meth:`submit` returns a future that
    resolves to None (arrived) or raises :class:`StagingError` with the Globus error.
    """

    def __init__(self, transfer: GlobusTransfer, window: float = 0.2) -> None:
        self.transfer = transfer
        self.window = window
        self._lock = threading.Lock()
        self._pending: list[tuple[Item, concurrent.futures.Future]] = []
        self._timer: threading.Timer | None = None

    def submit(self, item: Item) -> concurrent.futures.Future:
        """Queue one item; the future resolves when its batch is done."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._pending.append((item, fut))
            if self._timer is None:
                self._timer = threading.Timer(self.window, self._flush)
                self._timer.daemon = True
                self._timer.start()
        return fut

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending, self._timer = self._pending, [], None
        keyed = [Item(it.source, it.target, i, it.recursive, it.create_parents,
                      it.skip_failed) for i, (it, _) in enumerate(batch)]
        try:
            outcome = self.transfer.transfer(keyed)
        except Exception as exc:  # every waiter learns why
            for _, fut in batch:
                fut.set_exception(StagingError(describe_error(exc)))
            return
        for i, (item, fut) in enumerate(batch):
            error = outcome.get(i)
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(StagingError(f"{item.source} > {item.target}: {error}"))


__all__ = ["GlobusTransfer", "GlobusAuthError", "Item", "Batcher", "collection_path",
           "describe_error", "DEFAULT_DEADLINE", "DEFAULT_POLL_INTERVAL", "RESOURCE_SERVER"]
