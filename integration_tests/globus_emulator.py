"""A Globus Transfer emulator: a real HTTP service on 127.0.0.1 for the real globus-sdk.

It serves the subset of the Transfer API that staging uses (``/transfer/v0.10/...``:
submission_id, transfer, task, event_list, successful_transfers, cancel, operation
ls and mkdir, endpoint) and Auth's token endpoint (``/auth/v2/oauth2/token``: refresh
and client-credentials grants). Collections are UUIDs mapped to local directories;
transfers really copy bytes in a background thread, and tasks go ACTIVE ->
SUCCEEDED or FAILED.

Faults are injected on request:

* :meth:`GlobusEmulator.fail_next`: the next matching request(s) get a canned error
  (401, 403, 404, 429 / 503 with ``Retry-After``, 502, ...);
* ``expire_token()``: the current access token becomes invalid (401), so a client
  must refresh it at Auth;
* ``consent_required``: collections whose operations answer 403 ConsentRequired;
* ``task_delay``: seconds a task stays ACTIVE before it copies (slow tasks);
* a missing source (or a missing target directory) makes the task record error
  events while it keeps "retrying" until its deadline, then FAIL with EXPIRED, as
  Globus does.

Point the SDK at it with ``GLOBUS_SDK_SERVICE_URL_TRANSFER`` /
``GLOBUS_SDK_SERVICE_URL_AUTH`` (see :meth:`GlobusEmulator.env`).
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import shutil
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TRANSFER_SCOPE = "urn:globus:auth:scope:transfer.api.globus.org:all"


def _stamp(t: float | None = None) -> str:
    return dt.datetime.fromtimestamp(t or time.time(), dt.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S+00:00")


def _parse_deadline(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace(" ", "T")).timestamp()
    except ValueError:
        return None


class GlobusEmulator:
    """The emulator; use as a context manager (starts and stops the HTTP server)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.collections: dict[str, Path] = {}
        self.tasks: dict[str, dict] = {}
        self.submissions: dict[str, str] = {}
        self.requests: list[dict] = []
        self.valid_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.clients: dict[str, str] = {}          # confidential client id -> secret
        self.faults: list[dict] = []
        self.consent_required: set[str] = set()
        self.task_delay = 0.05
        self.fault_interval = 0.1                  # seconds between retries of a bad item
        self.default_deadline = 30.0               # seconds, for tasks that set none
        self._tokens = itertools.count(1)
        self.server: ThreadingHTTPServer | None = None

    # set-up -------------------------------------------------------------------------

    def __enter__(self) -> "GlobusEmulator":
        emulator = self

        class Handler(_Handler):
            emu = emulator
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True,
                         name="globus-emulator").start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def transfer_url(self) -> str:
        """The Transfer service's base URL."""
        return f"{self.url}/transfer/"

    @property
    def auth_url(self) -> str:
        """The Auth service's base URL."""
        return f"{self.url}/auth/"

    def env(self) -> dict[str, str]:
        """The environment that points globus-sdk here."""
        return {"GLOBUS_SDK_SERVICE_URL_TRANSFER": self.transfer_url,
                "GLOBUS_SDK_SERVICE_URL_AUTH": self.auth_url}

    def add_collection(self, root: Path | str, collection: str | None = None) -> str:
        """Map a (new) collection UUID to a local directory; returns the UUID."""
        collection = collection or str(uuid.uuid4())
        Path(root).mkdir(parents=True, exist_ok=True)
        self.collections[collection] = Path(root).resolve()
        return collection

    def issue_tokens(self) -> dict:
        """A fresh access and refresh token pair that the emulator accepts."""
        n = next(self._tokens)
        access, refresh = f"AT-{n}", f"RT-{n}"
        with self.lock:
            self.valid_tokens.add(access)
            self.refresh_tokens.add(refresh)
        return {"access_token": access, "refresh_token": refresh,
                "expires_at_seconds": int(time.time()) + 7200}

    def expire_token(self, token: str) -> None:
        """Make an access token invalid: requests with it get 401."""
        with self.lock:
            self.valid_tokens.discard(token)

    def fail_next(self, route: str, status: int, code: str, message: str = "injected",
                  times: int = 1, headers: dict | None = None, **extra: Any) -> None:
        """Answer the next ``times`` requests whose ``'METHOD /route'`` starts with
        ``route`` (e.g. ``'POST /v0.10/transfer'``) with an error document."""
        with self.lock:
            self.faults.append({"route": route, "status": status, "times": times,
                                "headers": headers or {},
                                "body": {"code": code, "message": message, **extra}})

    def count(self, route: str) -> int:
        """How many requests matched ``'METHOD /route'`` by prefix."""
        with self.lock:
            return sum(1 for r in self.requests if r.startswith(route))

    # internals ----------------------------------------------------------------------

    def _pop_fault(self, key: str) -> dict | None:
        with self.lock:
            for f in self.faults:
                if key.startswith(f["route"]) and f["times"] > 0:
                    f["times"] -= 1
                    return f
        return None

    def resolve(self, collection: str, path: str) -> Path:
        root = self.collections[collection]
        rel = path.lstrip("/")
        if rel.startswith("~/") or rel == "~":
            rel = rel[2:]
        p = (root / rel).resolve()
        if p != root and root not in p.parents:
            raise PermissionError(path)
        return p

    def _event(self, task: dict, code: str, description: str, details: str = "",
               error: bool = False) -> None:
        task["events"].append({"DATA_TYPE": "event", "code": code,
                               "description": description, "details": details,
                               "is_error": error, "time": _stamp()})

    def _run(self, task: dict) -> None:
        time.sleep(task["delay"])
        with self.lock:
            if task["status"] != "ACTIVE":
                return
            self._event(task, "STARTED", "started")
        src, dst = task["source_endpoint"], task["destination_endpoint"]
        pending = list(task["DATA"])
        while pending:
            item = pending[0]
            with self.lock:
                if task["status"] != "ACTIVE":
                    return
            problem = self._copy(task, src, dst, item)
            if problem is None:
                pending.pop(0)
                continue
            code, details = problem
            with self.lock:
                if task["skip_source_errors"] and code == "FILE_NOT_FOUND":
                    task["files_skipped"] += 1
                    self._event(task, "SKIPPED_ERRORS", "skipped a source error", details)
                    pending.pop(0)
                    continue
                # Globus retries until the deadline, recording each fault
                task["faults"] += 1
                self._event(task, code, code.lower().replace("_", " "), details, True)
                if time.time() >= task["deadline_at"]:
                    task["status"] = "FAILED"
                    task["fatal_error"] = {"code": "EXPIRED",
                                           "description": "the task deadline was reached"}
                    task["completion_time"] = _stamp()
                    self._event(task, "EXPIRED", "deadline reached", details, True)
                    return
            time.sleep(self.fault_interval)
        with self.lock:
            if task["status"] == "ACTIVE":
                task["status"] = "SUCCEEDED"
                task["completion_time"] = _stamp()
                self._event(task, "SUCCEEDED", "succeeded")

    def _copy(self, task: dict, src: str, dst: str, item: dict) -> tuple[str, str] | None:
        try:
            s = self.resolve(src, item["source_path"])
            d = self.resolve(dst, item["destination_path"])
        except PermissionError as exc:
            return "PERMISSION_DENIED", f"Error (transfer) path {exc} is outside the collection"
        if not s.exists():
            return "FILE_NOT_FOUND", (f"Error (transfer) Endpoint: {src} Server: emulator "
                                      f"File: {item['source_path']} Command: RETR "
                                      "Message: No such file or directory")
        if not d.parent.exists():
            return "FILE_NOT_FOUND", (f"Error (transfer) Endpoint: {dst} Server: emulator "
                                      f"File: {item['destination_path']} Command: STOR "
                                      "Message: No such file or directory (target directory)")
        if s.is_dir():
            if not item.get("recursive"):
                return "IS_A_DIRECTORY", f"{item['source_path']} is a directory"
            shutil.copytree(s, d, dirs_exist_ok=True)
            files = [f for f in sorted(s.rglob("*")) if f.is_file()]
            pairs = [(item["source_path"].rstrip("/") + "/" + str(f.relative_to(s)),
                      item["destination_path"].rstrip("/") + "/" + str(f.relative_to(s)),
                      f.stat().st_size) for f in files]
        else:
            shutil.copyfile(s, d)
            pairs = [(item["source_path"], item["destination_path"], s.stat().st_size)]
        with self.lock:
            task["directories"] += 1 if s.is_dir() else 0
            for sp, dp, size in pairs:
                task["files"] += 1
                task["files_transferred"] += 1
                task["bytes_transferred"] += size
                task["successful"].append({"DATA_TYPE": "successful_transfer",
                                           "source_path": sp, "destination_path": dp})
        return None


def _task_doc(t: dict) -> dict:
    return {
        "DATA_TYPE": "task", "task_id": t["task_id"], "type": "TRANSFER",
        "status": t["status"], "label": t["label"],
        "source_endpoint_id": t["source_endpoint"],
        "destination_endpoint_id": t["destination_endpoint"],
        "request_time": t["request_time"], "completion_time": t["completion_time"],
        "deadline": _stamp(t["deadline_at"]), "files": t["files"],
        "files_transferred": t["files_transferred"], "files_skipped": t["files_skipped"],
        "directories": t["directories"], "bytes_transferred": t["bytes_transferred"],
        "faults": t["faults"], "fatal_error": t["fatal_error"],
        "is_ok": t["status"] != "FAILED" and t["faults"] == 0,
        "nice_status": ("OK" if t["faults"] == 0 else "Queued") if t["status"] == "ACTIVE"
        else None,
        "subtasks_total": len(t["DATA"]), "subtasks_succeeded": t["files_transferred"],
        "subtasks_failed": 1 if t["status"] == "FAILED" else 0,
        "verify_checksum": t["verify_checksum"], "sync_level": t["sync_level"],
        "history_deleted": False,
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    emu: GlobusEmulator

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _send(self, status: int, body: Any, headers: dict | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.write(raw)

    def _err(self, status: int, code: str, message: str, **extra: Any) -> None:
        self._send(status, {"code": code, "message": message,
                            "request_id": uuid.uuid4().hex[:9], **extra})

    def _handle(self, method: str) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype and raw:
            body = json.loads(raw)
        elif raw:
            body = dict(urllib.parse.parse_qsl(raw.decode()))
        else:
            body = {}
        query = dict(urllib.parse.parse_qsl(parsed.query))
        path = parsed.path
        emu = self.emu
        if path.startswith("/auth/"):
            key = f"{method} {path[len('/auth'):]}"
            with emu.lock:
                emu.requests.append(f"AUTH {key}")
            return self._auth(key, body)
        if not path.startswith("/transfer/"):
            return self._err(404, "NotFound", f"no service at {path}")
        route = path[len("/transfer"):]
        key = f"{method} {route}"
        with emu.lock:
            emu.requests.append(key)
        fault = emu._pop_fault(key)
        if fault is not None:
            return self._send(fault["status"], {**fault["body"],
                                                "request_id": uuid.uuid4().hex[:9]},
                              fault["headers"])
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        with emu.lock:
            valid = token in emu.valid_tokens
        if not valid:
            return self._err(401, "AuthenticationFailed", "Token is not active")
        try:
            return self._transfer(method, route.strip("/").split("/"), query, body)
        except KeyError as exc:
            return self._err(404, "EndpointNotFound", f"No such endpoint or collection {exc}")

    # auth ---------------------------------------------------------------------------

    def _auth(self, key: str, body: dict) -> None:
        emu = self.emu
        if key != "POST /v2/oauth2/token":
            return self._send(404, {"errors": [{"code": "NOT_FOUND", "detail": key}]})
        grant = body.get("grant_type")
        if grant == "refresh_token":
            with emu.lock:
                known = body.get("refresh_token") in emu.refresh_tokens
            if not known:
                return self._send(400, {"error": "invalid_grant"})
        elif grant == "client_credentials":
            auth = self.headers.get("Authorization") or ""
            try:
                cid, _, secret = base64.b64decode(auth.removeprefix("Basic ")).decode() \
                    .partition(":")
            except ValueError:
                cid = secret = ""
            if emu.clients.get(cid) != secret:
                return self._send(401, {"error": "invalid_client"})
        else:
            return self._send(400, {"error": "unsupported_grant_type"})
        n = next(emu._tokens)
        access = f"AT-{n}"
        with emu.lock:
            emu.valid_tokens.add(access)
        doc = {"access_token": access, "expires_in": 7200, "token_type": "Bearer",
               "resource_server": "transfer.api.globus.org", "scope": TRANSFER_SCOPE,
               "other_tokens": []}
        if grant == "refresh_token":
            doc["refresh_token"] = body["refresh_token"]
        self._send(200, doc)

    # transfer -----------------------------------------------------------------------

    def _transfer(self, method: str, parts: list, query: dict, body: dict) -> None:
        emu = self.emu
        if not parts or parts[0] != "v0.10":
            return self._err(404, "ClientError.NotFound", "unknown API version")
        p = parts[1:]
        if method == "GET" and p == ["submission_id"]:
            return self._send(200, {"DATA_TYPE": "submission_id", "value": str(uuid.uuid4())})
        if method == "GET" and len(p) == 2 and p[0] == "endpoint":
            emu.collections[p[1]]
            return self._send(200, {"DATA_TYPE": "endpoint", "id": p[1],
                                    "display_name": f"emulated {p[1][:8]}",
                                    "entity_type": "GCSv5_mapped_collection",
                                    "high_assurance": False})
        if len(p) == 4 and p[:2] == ["operation", "endpoint"]:
            return self._operation(method, p[2], p[3], query, body)
        if method == "POST" and p == ["transfer"]:
            return self._submit(body)
        if len(p) >= 2 and p[0] == "task":
            return self._task(method, p, query)
        return self._err(404, "ClientError.NotFound", f"no route {method} /{'/'.join(parts)}")

    def _consent(self, collection: str) -> bool:
        if collection in self.emu.consent_required:
            self._err(403, "ConsentRequired", "Missing required data_access consent",
                      required_scopes=[f"{TRANSFER_SCOPE}[*https://auth.globus.org/scopes/"
                                       f"{collection}/data_access]"])
            return True
        return False

    def _operation(self, method: str, collection: str, op: str, query: dict,
                   body: dict) -> None:
        emu = self.emu
        emu.collections[collection]
        if self._consent(collection):
            return
        try:
            target = emu.resolve(collection, query.get("path", "/") if method == "GET"
                                 else body.get("path", "/"))
        except PermissionError:
            return self._err(403, "EndpointPermissionDenied", "Denied by endpoint")
        if method == "GET" and op == "ls":
            if not target.is_dir():
                return self._err(404, "ClientError.NotFound",
                                 f"Directory '{query.get('path')}' not found")
            entries = []
            for c in sorted(target.iterdir()):
                if c.name.startswith(".") and query.get("show_hidden") in ("0", "false"):
                    continue
                st = c.stat()
                entries.append({"DATA_TYPE": "file", "name": c.name,
                                "type": "dir" if c.is_dir() else "file", "size": st.st_size,
                                "last_modified": _stamp(st.st_mtime),
                                "permissions": oct(st.st_mode & 0o777)[2:].zfill(4),
                                "user": "emu", "group": "emu", "link_target": None})
            return self._send(200, {"DATA_TYPE": "file_list", "endpoint": collection,
                                    "path": query.get("path", "/"), "DATA": entries,
                                    "length": len(entries), "total": len(entries)})
        if method == "POST" and op == "mkdir":
            if target.exists():
                return self._err(502, "ExternalError.MkdirFailed.Exists",
                                 f"Path already exists: {body.get('path')}")
            if not target.parent.exists():
                return self._err(404, "ClientError.NotFound",
                                 f"Parent of {body.get('path')} does not exist")
            target.mkdir()
            return self._send(202, {"DATA_TYPE": "mkdir_result", "code": "DirectoryCreated",
                                    "message": "The directory was created successfully",
                                    "request_id": uuid.uuid4().hex[:9]})
        return self._err(404, "ClientError.NotFound", f"no operation {method} {op}")

    def _submit(self, body: dict) -> None:
        emu = self.emu
        if body.get("DATA_TYPE") != "transfer":
            return self._err(400, "ClientError.BadRequest", "DATA_TYPE must be 'transfer'")
        if not body.get("DATA"):
            return self._err(400, "ClientError.BadRequest.NoTransferItems",
                             "A transfer requires at least one item")
        src, dst = body.get("source_endpoint"), body.get("destination_endpoint")
        emu.collections[src]
        emu.collections[dst]
        for c in (src, dst):
            if self._consent(c):
                return
        sid = body.get("submission_id")
        if not sid:
            return self._err(400, "ClientError.BadRequest", "submission_id is required")
        with emu.lock:
            tid = emu.submissions.get(sid)
            if tid is None:   # a submission id is accepted once
                tid = str(uuid.uuid4())
                emu.submissions[sid] = tid
                deadline = _parse_deadline(body.get("deadline")) or \
                    time.time() + emu.default_deadline
                task = {"task_id": tid, "status": "ACTIVE", "label": body.get("label"),
                        "request_time": _stamp(), "completion_time": None,
                        "deadline_at": deadline, "source_endpoint": src,
                        "destination_endpoint": dst, "DATA": body["DATA"], "files": 0,
                        "files_transferred": 0, "files_skipped": 0, "directories": 0,
                        "bytes_transferred": 0, "faults": 0, "fatal_error": None,
                        "events": [], "successful": [],
                        "skip_source_errors": bool(body.get("skip_source_errors")),
                        "verify_checksum": bool(body.get("verify_checksum")),
                        "sync_level": body.get("sync_level"), "delay": emu.task_delay}
                emu.tasks[tid] = task
                threading.Thread(target=emu._run, args=(task,), daemon=True).start()
        self._send(202, {"DATA_TYPE": "transfer_result", "code": "Accepted",
                         "message": "The transfer has been accepted and a task has been "
                                    "created and queued for execution",
                         "request_id": uuid.uuid4().hex[:9], "resource": "/v0.10/transfer",
                         "submission_id": sid, "task_id": tid,
                         "task_link": {"DATA_TYPE": "link", "rel": "related",
                                       "resource": "task", "title": "related task",
                                       "href": f"/v0.10/task/{tid}?format=json"}})

    def _task(self, method: str, p: list, query: dict) -> None:
        emu = self.emu
        t = emu.tasks.get(p[1])
        if t is None:
            return self._err(404, "TaskNotFound", f"Task {p[1]} not found")
        with emu.lock:
            if method == "GET" and len(p) == 2:
                return self._send(200, _task_doc(t))
            if method == "GET" and p[2] == "event_list":
                events = list(reversed(t["events"]))   # newest first
                limit = int(query.get("limit", 10))
                offset = int(query.get("offset", 0))
                page = events[offset:offset + limit]
                return self._send(200, {"DATA_TYPE": "event_list", "DATA": page,
                                        "limit": limit, "offset": offset,
                                        "total": len(events)})
            if method == "GET" and p[2] == "successful_transfers":
                return self._send(200, {"DATA_TYPE": "successful_transfers", "marker": 0,
                                        "next_marker": None, "DATA": list(t["successful"])})
            if method == "POST" and p[2] == "cancel":
                if t["status"] == "ACTIVE":
                    t["status"] = "FAILED"
                    t["fatal_error"] = {"code": "CANCELED",
                                        "description": "The task was canceled by the user"}
                    t["completion_time"] = _stamp()
                    emu._event(t, "CANCELED", "canceled", "", True)
                return self._send(200, {"DATA_TYPE": "result", "code": "Canceled",
                                        "message": "The task has been cancelled successfully.",
                                        "request_id": uuid.uuid4().hex[:9]})
        return self._err(404, "ClientError.NotFound", f"no task route {method} {p}")


__all__ = ["GlobusEmulator", "TRANSFER_SCOPE"]
