"""Globus Transfer API v0.10 stand-in over the local profile's collection folders.

A collection UUID is served from ``state.collection_dir(uuid)``; a Globus path is absolute inside it
(``/~/`` is the collection root); a path that leaves the collection (``..``, a symlink out) is refused.
Tasks live in memory and run in one background thread each: transfers really copy (to a temporary name,
renamed when complete and verified), honour ``sync_level`` and ``verify_checksum``; deletes really delete.
A ``submission_id`` seen before answers the same task with ``code: "Duplicate"`` and creates nothing.

Counters: ``transfer.submit`` / ``delete.submit`` (every POST), ``transfer.task_created`` /
``delete.task_created``, ``transfer.duplicate`` / ``delete.duplicate``, ``transfer.bytes`` (bytes copied),
``transfer.succeeded`` / ``transfer.failed`` / ``delete.succeeded`` / ``delete.failed``, ``transfer.limit_refused``
/ ``delete.limit_refused`` and ``task.active_peak`` (the most tasks one user had ACTIVE at once).

A user may have at most :data:`ACTIVE_TASK_LIMIT` unfinished (ACTIVE or INACTIVE) tasks, transfers and deletes
together, as the service allows ("Are there any limits on using the file transfer service?",
docs.globus.org/faq/transfer-sharing: 100 pending tasks per user; 3 of them worked on at a time,
docs.globus.org/api/transfer/task_behavior); a new submission over it is refused with 409
``Conflict.LimitExceeded`` (:data:`LIMIT_CODE`) and creates nothing, while a known ``submission_id`` still
answers ``Duplicate``. ``PUT /_facility/transfer/limit`` ``{"active_tasks": n}`` (admin) sets another cap,
``null`` the service's; ``GET`` reads it with each user's ACTIVE count.

Errors as Globus handles them (docs.globus.org/api/transfer/task_behavior, task_events): a task either
fails at once (FAILED, ``fatal_error``) or stays ACTIVE and retries the fault, with ``nice_status`` naming it
(``is_ok`` false, ``nice_status_details`` Globus's message) and an error event per attempt, until the fault
clears, the task is cancelled or its deadline passes. A missing source path is terminal (``FILE_NOT_FOUND``);
a full destination is retried (``NO_SPACE_LEFT``/``QUOTA_EXCEEDED``) unless the submission set
``fail_on_quota_errors``; a checksum that fails verification is retried (``VERIFY_CHECKSUM``); source
``PERMISSION_DENIED``/``FILE_NOT_FOUND`` faults are skipped with ``skip_source_errors``. Event codes are
Globus's, event times ``YYYY-MM-DD HH:MM:SS+00:00``, and ``event_list`` honours ``filter=is_error:1``.

Faults (``service="transfer"``, ``match`` on an item's source path, then its destination path; for deletes
the path): ``task_failed`` (FAILED, fatal_error code ``params["code"]`` or ``ENDPOINT_ERROR``, event carrying
``message``), ``permission_denied`` (FAILED, ``PERMISSION_DENIED``; with ``params={"retrying": true}`` the
task instead stalls on it as ``stall`` does), ``stall`` (the task stays ACTIVE retrying ``params["code"]``,
default ``NO_SPACE_LEFT``, with ``message`` as Globus's details, for ``params["seconds"]`` if given, else until
cancelled or past its deadline; a quota code fails at once with ``fail_on_quota_errors``; a source
``PERMISSION_DENIED``/``FILE_NOT_FOUND`` is skipped with ``skip_source_errors``), ``slow`` (the task stays
ACTIVE for ``params["seconds"]`` before its work), ``checksum_mismatch`` (per file, per attempt: verification
fails, a ``VERIFY_CHECKSUM`` error event, the file is transferred again; the destination is not written
until a copy verifies); ``page_size`` (not a fault: the next ``times`` pages of
``successful_transfers`` hold ``params["size"]`` records, to test paging).
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import logging
import os
import shutil
import stat as stat_module
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from facility.globus_auth import (
    ServiceError,
    install_service,
    request_id,
    require_token,
    transfer_error_body,
)
from facility.state import FacilityState, Fault
from include.errors import ConfigError

log = logging.getLogger(__name__)

RESOURCE_SERVER = "transfer.api.globus.org"
CHUNK_SIZE = 1 << 20
PARTIAL_SUFFIX = ".facility-partial"
DEFAULT_DEADLINE = timedelta(days=1)
SYNC_LEVELS = {"exists": 0, "size": 1, "mtime": 2, "checksum": 3}
#: Errors Globus retries (the task stays ACTIVE) unless ``fail_on_quota_errors`` is set.
QUOTA_CODES = frozenset({"NO_SPACE_LEFT", "QUOTA_EXCEEDED"})
#: Source errors ``skip_source_errors`` skips.
SKIPPABLE_CODES = frozenset({"PERMISSION_DENIED", "FILE_NOT_FOUND", "AMBIGUOUS_PATH"})
#: Seconds between two attempts of a task retrying a fault (each one an error event).
RETRY_SECONDS = 1.0
CHECKSUM_ALGORITHMS = frozenset({"md5", "sha1", "sha256", "sha512"})
#: Unfinished tasks one user may have (Globus FAQ "Are there any limits on using the file transfer service?").
ACTIVE_TASK_LIMIT = 100
#: How Transfer refuses a submission over the limit: 409 and Globus's code for a limit (as Globus Search's
#: ``Conflict.LimitExceeded``); the message names the limit.
LIMIT_STATUS, LIMIT_CODE = 409, "Conflict.LimitExceeded"
#: Records per page of ``successful_transfers`` (a ``page_size`` fault sets another for tests).
SUCCESSFUL_PAGE = 1000
_ERRNO_CODES = {
    errno.ENOENT: ("FILE_NOT_FOUND", "file not found"),
    errno.EACCES: ("PERMISSION_DENIED", "permission denied"),
    errno.EPERM: ("PERMISSION_DENIED", "permission denied"),
    errno.ENOSPC: ("NO_SPACE_LEFT", "no space left on device"),
    errno.EDQUOT: ("QUOTA_EXCEEDED", "quota exceeded"),
    errno.EISDIR: ("IS_A_DIRECTORY", "is a directory"),
    errno.ENOTDIR: ("NOT_A_DIRECTORY", "not a directory"),
}


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _event_time(moment: datetime) -> str:
    """An event's ``time`` as Transfer writes it: ``2014-07-08 18:50:18+00:00``."""
    return moment.strftime("%Y-%m-%d %H:%M:%S+00:00")


def _file_time(timestamp: float) -> str:
    """``last_modified`` as Transfer writes it: ``2023-12-18 16:52:50+00:00``."""
    return datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")


def _error(status: int, code: str, message: str, resource: str) -> ServiceError:
    return ServiceError(status, transfer_error_body(code, message, resource))


class PathRefused(Exception):
    """A Globus path that is not inside its collection."""


class TaskError(Exception):
    """What went wrong in a task: a Globus error ``code``, its ``description`` and ``details``."""

    def __init__(self, code: str, description: str, details: str = "") -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details or description


class Retrying(TaskError):
    """An error Globus retries: the task stays ACTIVE with ``nice_status`` = ``code`` while it lasts."""


class TaskFailure(TaskError):
    """A fatal task error: ends the task FAILED with ``fatal_error`` and an error event."""


@dataclass(frozen=True)
class Collection:
    """A collection of the local profile and the folder serving it."""

    uuid: str
    name: str
    root: Path

    def posix(self, globus_path: str) -> Path:
        """The local path of a Globus path; PathRefused if it is not absolute or leaves the collection."""
        path = globus_path
        if path == "~" or path.startswith(("~/", "/~/")) or path == "/~":
            path = "/" + path.split("~", 1)[1].lstrip("/")
        if not path.startswith("/"):
            raise PathRefused(f"path {globus_path!r} is not absolute")
        parts = PurePosixPath(path).parts[1:]
        if ".." in parts:
            raise PathRefused(f"path {globus_path!r} contains '..'")
        candidate = self.root.joinpath(*parts)
        real = candidate.resolve()
        if real != self.root and self.root not in real.parents:
            raise PathRefused(f"path {globus_path!r} leads outside collection {self.name}")
        return candidate

    def globus_path(self, posix: Path) -> str:
        relative = posix.relative_to(self.root).as_posix()
        return "/" if relative == "." else "/" + relative

    def describe(self) -> str:
        return f"{self.name} ({self.uuid})"


@dataclass
class Task:
    """One transfer or delete task; its fields are guarded by the service lock."""

    task_id: str
    type: str
    submission_id: str
    label: str | None
    request_time: datetime
    deadline: datetime
    source: Collection
    destination: Collection | None
    items: list[dict]
    options: dict
    status: str = "ACTIVE"
    nice_status: str | None = "Queued"
    nice_status_details: str | None = None
    completion_time: datetime | None = None
    fatal_error: dict | None = None
    files: int = 0
    directories: int = 0
    files_transferred: int = 0
    files_skipped: int = 0
    bytes_transferred: int = 0
    bytes_checksummed: int = 0
    faults: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    events: list[dict] = field(default_factory=list)
    successful: list[dict] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def document(self) -> dict:
        """The task document of ``GET /task/{id}``."""
        active = self.status == "ACTIVE"
        elapsed = ((self.finished_at or time.time()) - self.started_at) if self.started_at else 0.0
        finished = self.files_transferred + self.files_skipped
        return {
            "DATA_TYPE": "task",
            "task_id": self.task_id,
            "type": self.type,
            "status": self.status,
            "label": self.label,
            "submission_id": self.submission_id,
            "nice_status": self.nice_status if active else None,
            "nice_status_short_description": self.nice_status if active else None,
            "nice_status_details": self.nice_status_details if active else None,
            "nice_status_expires_in": (-1 if self.nice_status_details else None) if active else None,
            "is_ok": (self.nice_status in ("OK", "Queued")) if active else None,
            "is_paused": False,
            "request_time": _iso(self.request_time),
            "completion_time": _iso(self.completion_time),
            "deadline": _iso(self.deadline),
            "source_endpoint": self.source.name,
            "source_endpoint_id": self.source.uuid,
            "source_endpoint_display_name": self.source.name,
            "destination_endpoint": self.destination.name if self.destination else None,
            "destination_endpoint_id": self.destination.uuid if self.destination else None,
            "destination_endpoint_display_name": self.destination.name if self.destination else None,
            "files": self.files,
            "directories": self.directories,
            "symlinks": 0,
            "files_transferred": self.files_transferred,
            "files_skipped": self.files_skipped,
            "bytes_transferred": self.bytes_transferred,
            "bytes_checksummed": self.bytes_checksummed,
            "effective_bytes_per_second": int(self.bytes_transferred / elapsed) if elapsed > 0 else 0,
            "faults": self.faults,
            "fatal_error": self.fatal_error,
            "subtasks_total": self.files + self.directories,
            "subtasks_succeeded": finished + (self.directories if self.status == "SUCCEEDED" else 0),
            "subtasks_pending": max(self.files - finished, 0) if active else 0,
            "subtasks_retrying": 1 if active and self.nice_status_details else 0,
            "subtasks_failed": 1 if self.status == "FAILED" and self.fatal_error else 0,
            "subtasks_canceled": 1 if (self.fatal_error or {}).get("code") == "CANCELED" else 0,
            "subtasks_expired": 1 if (self.fatal_error or {}).get("code") == "EXPIRED" else 0,
            "subtasks_skipped_errors": 0,
            "sync_level": self.options.get("sync_level"),
            "verify_checksum": self.options.get("verify_checksum", False),
            "checksum_algorithm": self.options.get("checksum_algorithm"),
            "preserve_timestamp": self.options.get("preserve_timestamp", False),
            "encrypt_data": self.options.get("encrypt_data", False),
            "delete_destination_extra": False,
            "skip_source_errors": self.options.get("skip_source_errors", False),
            "fail_on_quota_errors": self.options.get("fail_on_quota_errors", False),
            "recursive_symlinks": "ignore",
            "filter_rules": None,
            "canceled_by_admin": None,
            "canceled_by_admin_message": None,
            "history_deleted": False,
            "command": "API 0.10",
            "owner_id": self.options.get("owner_id"),
            "username": self.options.get("username"),
        }


class TransferService:
    """The tasks, their submissions and the worker threads."""

    def __init__(self, state: FacilityState) -> None:
        self.state = state
        self.lock = threading.RLock()
        self.tasks: dict[str, Task] = {}
        self.submissions: dict[str, str] = {}
        self.active_limit = ACTIVE_TASK_LIMIT

    def active_of(self, owner: str) -> int:
        """How many unfinished tasks ``owner`` has (call with the lock held)."""
        return sum(1 for task in self.tasks.values() if task.status == "ACTIVE" and task.options["owner_id"] == owner)

    # ---- lookups
    def collection(self, collection_uuid: str, resource: str) -> Collection:
        try:
            found = self.state.endpoints.collection_by_uuid(str(collection_uuid))
            root = self.state.collection_dir(found.uuid).resolve()
        except ConfigError:
            raise _error(404, "EndpointNotFound", f"No such endpoint with id '{collection_uuid}'", resource) from None
        return Collection(found.uuid, found.name, root)

    def task(self, task_id: str, resource: str) -> Task:
        with self.lock:
            found = self.tasks.get(task_id)
        if found is None:
            raise _error(404, "TaskNotFound", f"Task '{task_id}' not found", resource)
        return found

    # ---- submission
    def submit(self, kind: str, body: dict, token_client: str, resource: str) -> tuple[int, dict]:
        """Create (or find, for a known submission id) a task from a transfer or delete document."""
        prefix = kind.lower()
        self.state.count(f"{prefix}.submit")
        submission_id = body.get("submission_id")
        if not isinstance(submission_id, str) or not _is_uuid(submission_id):
            raise _error(400, "ClientError.BadRequest", "A valid submission_id is required", resource)
        with self.lock:
            existing = self.submissions.get(submission_id)
            if existing is not None:
                self.state.count(f"{prefix}.duplicate")
                return 200, self._result(kind, self.tasks[existing], "Duplicate", resource)
            task = self._build(kind, body, submission_id, token_client, resource)
            active = self.active_of(token_client)
            if active >= self.active_limit:
                self.state.count(f"{prefix}.limit_refused")
                raise _error(
                    LIMIT_STATUS,
                    LIMIT_CODE,
                    f"Too many pending tasks: {active} of at most {self.active_limit} per user are not finished; "
                    "submit again when some have completed",
                    resource,
                )
            self.tasks[task.task_id] = task
            self.submissions[submission_id] = task.task_id
            with self.state.lock:
                peak = self.state.counters["task.active_peak"]
                self.state.counters["task.active_peak"] = max(peak, active + 1)
        self.state.count(f"{prefix}.task_created")
        threading.Thread(target=self._run, args=(task,), name=f"task-{task.task_id[:8]}", daemon=True).start()
        return 202, self._result(kind, task, "Accepted", resource)

    def _build(self, kind: str, body: dict, submission_id: str, client: str, resource: str) -> Task:
        expected = "transfer" if kind == "TRANSFER" else "delete"
        if body.get("DATA_TYPE", expected) != expected:
            raise _error(400, "ClientError.BadRequest", f"DATA_TYPE must be '{expected}'", resource)
        items = body.get("DATA")
        if not isinstance(items, list) or not items:
            noun = "transfer" if kind == "TRANSFER" else "delete"
            raise _error(
                400, f"ClientError.BadRequest.No{noun.title()}Items", f"A {noun} requires at least one item", resource
            )
        label = body.get("label")
        if label is not None and (not isinstance(label, str) or len(label) > 128):
            raise _error(400, "ClientError.BadRequest", "label must be a string of at most 128 characters", resource)
        deadline = _now() + DEFAULT_DEADLINE
        if body.get("deadline") is not None:
            try:
                deadline = datetime.fromisoformat(str(body["deadline"]))
            except ValueError:
                raise _error(
                    400, "ClientError.BadRequest", f"Invalid deadline {body['deadline']!r}", resource
                ) from None
            deadline = deadline.replace(tzinfo=deadline.tzinfo or UTC)
        options: dict = {"owner_id": client, "username": client}
        if kind == "TRANSFER":
            source = self.collection(_field(body, "source_endpoint", resource), resource)
            destination: Collection | None = self.collection(_field(body, "destination_endpoint", resource), resource)
            options |= _transfer_options(body, resource)
            checked = [_transfer_item(item, source, destination, resource) for item in items]
            algorithms = {item["checksum_algorithm"] for item in checked}
            options["checksum_algorithm"] = algorithms.pop().upper() if len(algorithms) == 1 else "MIXED"
        else:
            source = self.collection(_field(body, "endpoint", resource), resource)
            destination = None
            for name in ("recursive", "ignore_missing"):
                options[name] = _bool(body, name, resource)
            checked = [_delete_item(item, source, resource) for item in items]
        return Task(
            task_id=str(uuid.uuid4()),
            type=kind,
            submission_id=submission_id,
            label=label,
            request_time=_now(),
            deadline=deadline,
            source=source,
            destination=destination,
            items=checked,
            options=options,
        )

    @staticmethod
    def _result(kind: str, task: Task, code: str, resource: str) -> dict:
        noun = kind.lower()
        message = (
            f"The {noun} has been accepted and a task has been created and queued for execution"
            if code == "Accepted"
            else f"A {noun} with id '{task.task_id}' was already submitted"
        )
        return {
            "DATA_TYPE": f"{noun}_result",
            "code": code,
            "message": message,
            "request_id": request_id(),
            "resource": resource,
            "submission_id": task.submission_id,
            "task_id": task.task_id,
            "task_link": {
                "DATA_TYPE": "link",
                "href": f"/v0.10/task/{task.task_id}?format=json",
                "rel": "related",
                "resource": "task",
                "title": "related task",
            },
        }

    def cancel(self, task: Task, resource: str) -> dict:
        """Cancel an ACTIVE task and wait (briefly) for its worker to stop."""
        with self.lock:
            active = task.status == "ACTIVE"
            if active:
                task.cancel.set()
        if active:
            task.done.wait(timeout=10)
        with self.lock:
            canceled = active and (task.fatal_error or {}).get("code") == "CANCELED"
        if canceled:
            return {
                "DATA_TYPE": "result",
                "code": "Canceled",
                "message": "The task has been cancelled successfully.",
                "resource": resource,
                "request_id": request_id(),
            }
        return {
            "DATA_TYPE": "result",
            "code": "TaskComplete",
            "message": "The task completed before the cancel request was processed.",
            "resource": resource,
            "request_id": request_id(),
        }

    # ---- execution
    def _event(self, task: Task, code: str, description: str, details: str = "", *, error: bool = False) -> None:
        with self.lock:
            task.events.append(
                {
                    "DATA_TYPE": "event",
                    "code": code,
                    "is_error": error,
                    "description": description,
                    "details": details,
                    "time": _event_time(_now()),
                }
            )

    def _checkpoint(self, task: Task) -> None:
        """Stop a task that was canceled or passed its deadline."""
        if task.cancel.is_set():
            raise TaskFailure("CANCELED", "The task was canceled", "canceled by user request")
        if _now() > task.deadline:
            raise TaskFailure("EXPIRED", "The task reached its deadline", f"deadline {_iso(task.deadline)} passed")

    def _fault(self, kind: str, subjects: Iterator[str] | list[str]) -> Fault | None:
        for subject in subjects:
            fault = self.state.take_fault("transfer", kind, subject)
            if fault is not None:
                self.state.count(f"fault.transfer.{kind}")
                return fault
        return None

    def _run(self, task: Task) -> None:
        prefix = task.type.lower()
        try:
            with self.lock:
                task.nice_status = "OK"
                task.started_at = time.time()
            self._event(task, "STARTED", "started", f"{prefix} task started")
            self._maybe_slow(task)
            if task.type == "TRANSFER":
                for item in task.items:
                    self._transfer_item(task, item)
            else:
                for item in task.items:
                    self._delete_item(task, item)
        except TaskFailure as failure:
            self._finish(task, failure)
        except OSError as exc:
            code, description = _ERRNO_CODES.get(exc.errno, ("ENDPOINT_ERROR", "endpoint error"))
            self._finish(task, TaskFailure(code, description, f"{exc.strerror}: {exc.filename}"))
        except Exception as exc:  # a bug in the stand-in must still end the task
            log.exception("task %s crashed", task.task_id)
            self._finish(task, TaskFailure("UNKNOWN", "unexpected error", repr(exc)))
        else:
            self._finish(task, None)
        self.state.count(f"{prefix}.{'failed' if task.status == 'FAILED' else 'succeeded'}")

    def _finish(self, task: Task, failure: TaskFailure | None) -> None:
        if failure is None:
            self._event(task, "SUCCEEDED", "succeeded", f"{task.type.lower()} task succeeded")
        else:
            self._event(task, failure.code, failure.description.lower(), failure.details, error=True)
        with self.lock:
            task.status = "SUCCEEDED" if failure is None else "FAILED"
            task.nice_status = None
            task.completion_time = _now()
            task.finished_at = time.time()
            if failure is not None:
                task.faults += 1
                task.fatal_error = {"code": failure.code, "description": failure.description}
            task.done.set()

    def _subjects(self, task: Task, item: dict) -> list[str]:
        return [item["source_path"], item["destination_path"]] if task.type == "TRANSFER" else [item["path"]]

    def _maybe_slow(self, task: Task) -> None:
        for item in task.items:
            fault = self._fault("slow", self._subjects(task, item))
            if fault is not None:
                end = time.monotonic() + float(fault.params.get("seconds", 5))
                while (left := end - time.monotonic()) > 0:
                    self._checkpoint(task)
                    task.cancel.wait(min(left, 0.2))
                self._checkpoint(task)
                return

    def _attempt(self, task: Task, work: Callable[[], None]) -> None:
        """Run ``work`` as Globus does: a :class:`Retrying` error is an error event and, after a pause,
        another attempt (the task ACTIVE, ``nice_status`` naming the error) until it succeeds or the task is
        cancelled or expires; a quota error with ``fail_on_quota_errors`` fails the task instead."""
        while True:
            try:
                work()
            except Retrying as error:
                if error.code in QUOTA_CODES and task.options.get("fail_on_quota_errors"):
                    raise TaskFailure(error.code, error.description, error.details) from None
                with self.lock:
                    task.faults += 1
                    task.nice_status, task.nice_status_details = error.code, error.details
                self._event(task, error.code, error.description, error.details, error=True)
                self._checkpoint(task)
                task.cancel.wait(RETRY_SECONDS)
                self._checkpoint(task)
                continue
            with self.lock:
                task.nice_status, task.nice_status_details = "OK", None
            return

    def _item_faults(self, task: Task, item: dict) -> bool:
        """Apply the item's injected faults; False when ``skip_source_errors`` skips the item."""
        subjects = self._subjects(task, item)
        fault = self._fault("permission_denied", subjects)
        if fault is not None and not fault.params.get("retrying"):
            raise TaskFailure("PERMISSION_DENIED", "permission denied", fault.message)
        stall = fault or self._fault("stall", subjects)
        if stall is not None:
            code = "PERMISSION_DENIED" if stall is fault else str(stall.params.get("code", "NO_SPACE_LEFT"))
            if code in SKIPPABLE_CODES and task.options.get("skip_source_errors") and task.type == "TRANSFER":
                self._event(task, code, code.lower().replace("_", " "), stall.message, error=True)
                self._event(task, "SKIPPED_ERRORS", "skipped errors", f"skipped {item['source_path']}")
                return False
            until = time.monotonic() + float(stall.params["seconds"]) if "seconds" in stall.params else None

            def stalled() -> None:
                if until is None or time.monotonic() < until:
                    raise Retrying(code, code.lower().replace("_", " "), stall.message)

            self._attempt(task, stalled)
        fault = self._fault("task_failed", subjects)
        if fault is not None:
            raise TaskFailure(str(fault.params.get("code", "ENDPOINT_ERROR")), fault.message, fault.message)
        return True

    def _resolve(self, collection: Collection, path: str) -> Path:
        try:
            return collection.posix(path)
        except PathRefused as exc:
            raise TaskFailure("PERMISSION_DENIED", "permission denied", f"{exc} on {collection.describe()}") from None

    def _transfer_item(self, task: Task, item: dict) -> None:
        self._checkpoint(task)
        if not self._item_faults(task, item):
            return
        assert task.destination is not None
        source = self._resolve(task.source, item["source_path"])
        destination = self._resolve(task.destination, item["destination_path"])
        if not source.exists():
            raise TaskFailure(
                "FILE_NOT_FOUND",
                "file not found",
                f"Error (transfer)\nEndpoint: {task.source.describe()}\nFile: {item['source_path']}\n"
                f"Message: No such file or directory",
            )
        is_dir = source.is_dir()
        if item["recursive"] is True and not is_dir:
            raise TaskFailure("NOT_A_DIRECTORY", "not a directory", f"{item['source_path']} is a file, recursive=True")
        if item["recursive"] is False and is_dir:
            raise TaskFailure("IS_A_DIRECTORY", "is a directory", f"{item['source_path']} is a directory")
        if is_dir:
            directories, files = _walk(source, destination)
        else:
            directories, files = [], [(source, destination)]
        with self.lock:
            task.directories += len(directories)
            task.files += len(files)
        for directory in directories:
            directory.mkdir(parents=True, exist_ok=True)
        for src, dst in files:
            self._checkpoint(task)
            self._attempt(task, lambda src=src, dst=dst: self._copy_file(task, item, src, dst))

    def _copy_file(self, task: Task, item: dict, src: Path, dst: Path) -> None:
        assert task.destination is not None
        algorithm = item["checksum_algorithm"]
        src_path, dst_path = task.source.globus_path(src), task.destination.globus_path(dst)
        if self._in_sync(task, src, dst, algorithm):
            with self.lock:
                task.files_skipped += 1
            return
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_dir():
            raise TaskFailure("IS_A_DIRECTORY", "is a directory", f"destination {dst_path} is a directory")
        partial = dst.with_name(f".{dst.name}.{task.task_id[:8]}{PARTIAL_SUFFIX}")
        try:
            source_sum = hashlib.new(algorithm)
            size = 0
            with open(src, "rb") as reader, open(partial, "wb") as writer:
                while chunk := reader.read(CHUNK_SIZE):
                    source_sum.update(chunk)
                    writer.write(chunk)
                    size += len(chunk)
                    if task.cancel.is_set():
                        self._checkpoint(task)
            with self.lock:
                task.bytes_transferred += size
            self.state.count("transfer.bytes", size)
            expected = item["external_checksum"] or source_sum.hexdigest()
            if item["external_checksum"] and item["external_checksum"].lower() != source_sum.hexdigest():
                raise TaskFailure(
                    "EXTERNAL_CHECKSUM_MISMATCH",
                    "external checksum mismatch",
                    f"{src_path}: source {algorithm} {source_sum.hexdigest()} != external checksum {expected}",
                )
            if task.options["verify_checksum"] or item["external_checksum"]:
                actual = _checksum(partial, algorithm)
                with self.lock:
                    task.bytes_checksummed += size
                if self._fault("checksum_mismatch", [src_path, dst_path]) is not None:
                    actual = "0" * len(actual)
                if actual != expected.lower():
                    raise Retrying(
                        "VERIFY_CHECKSUM",
                        "checksum verification failed",
                        f"{src_path} -> {dst_path}: source {algorithm} {expected}, destination {algorithm} {actual}",
                    )
            if task.options["preserve_timestamp"]:
                info = src.stat()
                os.utime(partial, (info.st_atime, info.st_mtime))
            os.replace(partial, dst)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                code, description = _ERRNO_CODES[exc.errno]
                raise Retrying(
                    code, description, f"{exc.strerror}: {dst_path} on {task.destination.describe()}"
                ) from None
            raise
        finally:
            partial.unlink(missing_ok=True)
        with self.lock:
            task.files_transferred += 1
            task.successful.append(
                {"DATA_TYPE": "successful_transfer", "source_path": src_path, "destination_path": dst_path}
            )

    def _in_sync(self, task: Task, src: Path, dst: Path, algorithm: str) -> bool:
        """Whether ``sync_level`` says the destination already matches the source."""
        level = task.options["sync_level"]
        if level is None or not dst.is_file():
            return False
        if level == 0:
            return True
        src_info, dst_info = src.stat(), dst.stat()
        if level == 2:
            return int(dst_info.st_mtime) >= int(src_info.st_mtime)
        if src_info.st_size != dst_info.st_size:
            return False
        if level == 1:
            return True
        same = _checksum(src, algorithm) == _checksum(dst, algorithm)
        with self.lock:
            task.bytes_checksummed += src_info.st_size
        return same

    def _delete_item(self, task: Task, item: dict) -> None:
        self._checkpoint(task)
        if not self._item_faults(task, item):
            return
        target = self._resolve(task.source, item["path"])
        if target == task.source.root:
            raise TaskFailure("PERMISSION_DENIED", "permission denied", "refusing to delete the collection root")
        if not target.exists() and not target.is_symlink():
            if task.options["ignore_missing"]:
                return
            raise TaskFailure(
                "FILE_NOT_FOUND",
                "file not found",
                f"Error (delete)\nEndpoint: {task.source.describe()}\nFile: {item['path']}\n"
                f"Message: No such file or directory",
            )
        if target.is_dir() and not target.is_symlink():
            if not task.options["recursive"]:
                raise TaskFailure("IS_A_DIRECTORY", "is a directory", f"{item['path']} is a directory, recursive=False")
            directories = files = 0
            for _, dirnames, filenames in os.walk(target):
                directories += len(dirnames)
                files += len(filenames)
            shutil.rmtree(target)
            with self.lock:
                task.directories += directories + 1
                task.files += files
        else:
            target.unlink()
            with self.lock:
                task.files += 1

    # ---- file operations
    def file_document(self, collection: Collection, path: Path) -> dict:
        """A ``file`` document (ls entry, stat answer); a symlink shows its target, if inside the collection."""
        info = path.lstat()
        link_target = None
        if stat_module.S_ISLNK(info.st_mode):
            resolved = path.resolve()
            inside = resolved == collection.root or collection.root in resolved.parents
            if inside and resolved.exists():
                link_target = collection.globus_path(resolved)
                info = resolved.stat()
        if stat_module.S_ISLNK(info.st_mode):
            kind = "invalid_symlink"
        else:
            kind = "dir" if stat_module.S_ISDIR(info.st_mode) else "file"
        return {
            "DATA_TYPE": "file",
            "name": path.name or "/",
            "type": kind,
            "size": info.st_size,
            "last_modified": _file_time(info.st_mtime),
            "permissions": f"{stat_module.S_IMODE(info.st_mode):04o}",
            "user": _owner(info.st_uid),
            "group": _group(info.st_gid),
            "link_target": link_target,
            "link_group": None,
            "link_last_modified": None,
            "link_size": None,
            "link_user": None,
        }


# ---- request validation helpers


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _field(body: dict, name: str, resource: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise _error(400, "ClientError.BadRequest", f"'{name}' is required", resource)
    return value


def _bool(body: dict, name: str, resource: str, default: bool = False) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _error(400, "ClientError.BadRequest", f"'{name}' must be a boolean", resource)
    return value


def _transfer_options(body: dict, resource: str) -> dict:
    level = body.get("sync_level")
    if isinstance(level, str):
        level = SYNC_LEVELS.get(level, level)
    if level is not None and (isinstance(level, bool) or level not in SYNC_LEVELS.values()):
        raise _error(400, "ClientError.BadRequest", f"Invalid sync_level {body.get('sync_level')!r}", resource)
    return {
        "sync_level": level,
        "verify_checksum": _bool(body, "verify_checksum", resource),
        "preserve_timestamp": _bool(body, "preserve_timestamp", resource),
        "encrypt_data": _bool(body, "encrypt_data", resource),
        "skip_source_errors": _bool(body, "skip_source_errors", resource),
        "fail_on_quota_errors": _bool(body, "fail_on_quota_errors", resource),
    }


def _checked_path(collection: Collection, value: object, name: str, resource: str) -> str:
    if not isinstance(value, str) or not value:
        raise _error(400, "ClientError.BadRequest", f"'{name}' is required on every item", resource)
    try:
        collection.posix(value)
    except PathRefused as exc:
        raise _error(400, "ClientError.BadRequest.InvalidPath", f"{exc}", resource) from None
    return value


def _transfer_item(item: object, source: Collection, destination: Collection, resource: str) -> dict:
    if not isinstance(item, dict) or item.get("DATA_TYPE", "transfer_item") != "transfer_item":
        raise _error(400, "ClientError.BadRequest", "DATA must hold transfer_item documents", resource)
    algorithm = str(item.get("checksum_algorithm") or "md5").lower().replace("-", "")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise _error(400, "ClientError.BadRequest", f"Unsupported checksum_algorithm {algorithm!r}", resource)
    external = item.get("external_checksum")
    if external is not None and not isinstance(external, str):
        raise _error(400, "ClientError.BadRequest", "external_checksum must be a string", resource)
    recursive = item.get("recursive")
    if recursive is not None and not isinstance(recursive, bool):
        raise _error(400, "ClientError.BadRequest", "recursive must be a boolean", resource)
    return {
        "source_path": _checked_path(source, item.get("source_path"), "source_path", resource),
        "destination_path": _checked_path(destination, item.get("destination_path"), "destination_path", resource),
        "recursive": recursive,
        "checksum_algorithm": algorithm,
        "external_checksum": external,
    }


def _delete_item(item: object, collection: Collection, resource: str) -> dict:
    if not isinstance(item, dict) or item.get("DATA_TYPE", "delete_item") != "delete_item":
        raise _error(400, "ClientError.BadRequest", "DATA must hold delete_item documents", resource)
    return {"path": _checked_path(collection, item.get("path"), "path", resource)}


def _walk(source: Path, destination: Path) -> tuple[list[Path], list[tuple[Path, Path]]]:
    """Directories to create and (source, destination) files of a recursive item; symlinks are ignored."""
    directories = [destination]
    files: list[tuple[Path, Path]] = []
    for current, dirnames, filenames in os.walk(source):
        here = Path(current)
        target = destination / here.relative_to(source)
        dirnames[:] = sorted(d for d in dirnames if not (here / d).is_symlink())
        directories.extend(target / d for d in dirnames)
        for name in sorted(filenames):
            if name.endswith(PARTIAL_SUFFIX) or (here / name).is_symlink():
                continue
            files.append((here / name, target / name))
    return directories, files


def _checksum(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as reader:
        while chunk := reader.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def _owner(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def _group(gid: int) -> str:
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        return str(gid)


def _ls_filter(spec: str | None, resource: str) -> Callable[[dict], bool]:
    """Transfer's ``filter`` for ls: ``name:~*.h5/type:file`` (name ``=``, ``!=``, ``~``, ``!~``, lists; type)."""
    if not spec:
        return lambda _entry: True
    checks: list[Callable[[dict], bool]] = []
    for clause in spec.split("/"):
        key, sep, value = clause.partition(":")
        if not sep or key not in ("name", "type"):
            raise _error(400, "ClientError.BadRequest", f"Unsupported filter clause {clause!r}", resource)
        negate = value.startswith("!")
        value = value.removeprefix("!")
        if value.startswith("~"):
            pattern = value[1:]
            test: Callable[[str], bool] = lambda v, p=pattern: fnmatch.fnmatchcase(v, p)  # noqa: E731
        else:
            choices = set(value.removeprefix("=").split(","))
            test = lambda v, c=choices: v in c  # noqa: E731
        checks.append(lambda entry, k=key, t=test, n=negate: t(entry[k]) != n)
    return lambda entry: all(check(entry) for check in checks)


def _offset_page(data_type: str, items: list, limit: int, offset: int) -> dict:
    """A page of ``items`` as Transfer pages a list by ``limit`` (1 to 1000) and ``offset`` (from 0)."""
    limit, offset = max(1, min(limit, 1000)), max(0, offset)
    page = items[offset : offset + limit]
    return {
        "DATA_TYPE": data_type,
        "DATA": page,
        "length": len(page),
        "limit": limit,
        "offset": offset,
        "total": len(items),
    }


def register(app: FastAPI, state: FacilityState) -> None:
    """Add the Transfer routes under ``/v0.10``."""
    install_service(app, state)
    service = TransferService(state)
    state.transfer = service

    def authorized(request: Request) -> str:
        return require_token(request, state, resource_server=RESOURCE_SERVER).client_id

    async def json_body(request: Request) -> dict:
        try:
            body = await request.json()
        except ValueError:
            raise _error(400, "ClientError.BadRequest", "Request body is not valid JSON", request.url.path) from None
        if not isinstance(body, dict):
            raise _error(400, "ClientError.BadRequest", "Request body must be a JSON object", request.url.path)
        return body

    def local_path(collection: Collection, path: str, resource: str) -> Path:
        try:
            return collection.posix(path)
        except PathRefused as exc:
            raise _error(403, "EndpointPermissionDenied", f"Denied by endpoint: {exc}", resource) from None

    @app.get("/_facility/transfer/limit")
    def get_limit() -> dict:
        with service.lock:
            owners = {task.options["owner_id"] for task in service.tasks.values()}
            return {"active_tasks": service.active_limit, "active": {o: service.active_of(o) for o in owners}}

    @app.put("/_facility/transfer/limit")
    def set_limit(body: dict) -> dict:
        value = body.get("active_tasks", ACTIVE_TASK_LIMIT)
        value = ACTIVE_TASK_LIMIT if value is None else value
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return JSONResponse({"message": "active_tasks must be a positive integer or null"}, status_code=400)
        with service.lock:
            service.active_limit = value
        return get_limit()

    @app.get("/v0.10/submission_id")
    def submission_id(request: Request) -> dict:
        authorized(request)
        return {"value": str(uuid.uuid4())}

    @app.post("/v0.10/transfer", status_code=202)
    async def submit_transfer(request: Request):
        client = authorized(request)
        status, result = service.submit("TRANSFER", await json_body(request), client, request.url.path)
        return JSONResponse(result, status_code=status)

    @app.post("/v0.10/delete", status_code=202)
    async def submit_delete(request: Request):
        client = authorized(request)
        status, result = service.submit("DELETE", await json_body(request), client, request.url.path)
        return JSONResponse(result, status_code=status)

    @app.get("/v0.10/task/{task_id}")
    def get_task(task_id: str, request: Request) -> dict:
        authorized(request)
        task = service.task(task_id, request.url.path)
        with service.lock:
            return task.document()

    @app.get("/v0.10/task/{task_id}/event_list")
    def event_list(task_id: str, request: Request, limit: int = 10, offset: int = 0, filter: str | None = None) -> dict:
        authorized(request)
        task = service.task(task_id, request.url.path)
        wanted = None
        if filter:
            key, _, value = filter.partition(":")
            if key != "is_error" or value not in ("0", "1"):
                raise _error(400, "ClientError.BadRequest", f"Invalid filter {filter!r}", request.url.path)
            wanted = value == "1"
        with service.lock:
            events = [e for e in reversed(task.events) if wanted is None or e["is_error"] is wanted]
        return _offset_page("event_list", events, limit, offset)

    @app.get("/v0.10/task/{task_id}/successful_transfers")
    def successful_transfers(task_id: str, request: Request, marker: int | None = None) -> dict:
        """Marker paging as the service pages it (globus-sdk's ``NullableMarkerPaginator``): ``marker`` and
        ``next_marker`` are opaque integers (not offsets: they start at a per-task value), ``next_marker`` is
        null on the last page. A ``page_size`` fault (``params={"size": n}``) makes pages of ``n`` records."""
        authorized(request)
        resource = request.url.path
        task = service.task(task_id, resource)
        with service.lock:
            done = list(task.successful)
        base = int(task.task_id.replace("-", "")[:6], 16) + 1
        start = 0 if marker is None else marker - base
        if not 0 <= start <= len(done):
            raise _error(400, "ClientError.BadRequest", f"Invalid marker {marker}", resource)
        sized = state.take_fault("transfer", "page_size", "successful_transfers")
        size = int(sized.params.get("size", SUCCESSFUL_PAGE)) if sized else SUCCESSFUL_PAGE
        page = done[start : start + size]
        after = start + len(page)
        return {
            "DATA_TYPE": "successful_transfers",
            "DATA": page,
            "marker": 0 if marker is None else marker,
            "next_marker": base + after if after < len(done) else None,
        }

    @app.post("/v0.10/task/{task_id}/cancel")
    def cancel_task(task_id: str, request: Request) -> dict:
        authorized(request)
        return service.cancel(service.task(task_id, request.url.path), request.url.path)

    @app.get("/v0.10/task_list")
    def task_list(request: Request, limit: int = 10, offset: int = 0, filter: str | None = None) -> dict:
        authorized(request)
        wanted: dict[str, set[str]] = {}
        for clause in (filter or "").split("/"):
            key, sep, value = clause.partition(":")
            if sep:
                wanted[key] = set(value.split(","))
        with service.lock:
            documents = [task.document() for task in service.tasks.values()]
        documents = [d for d in documents if all(str(d.get(k)) in v for k, v in wanted.items())]
        documents.sort(key=lambda d: d["request_time"], reverse=True)
        return _offset_page("task_list", documents, limit, offset)

    @app.get("/v0.10/endpoint/{endpoint_id}")
    def get_endpoint(endpoint_id: str, request: Request) -> dict:
        authorized(request)
        collection = service.collection(endpoint_id, request.url.path)
        return {
            "DATA_TYPE": "endpoint",
            "id": collection.uuid,
            "display_name": collection.name,
            "canonical_name": f"local#{collection.name}",
            "name": collection.name,
            "description": f"local facility folder for collection {collection.name}",
            "organization": "ALS local facility",
            "owner_string": "local-facility",
            "entity_type": "GCSv5_mapped_collection",
            "gcs_version": "5.4.0",
            "is_globus_connect": False,
            "activated": True,
            "expires_in": -1,
            "default_directory": "/",
            "force_encryption": False,
            "disable_verify": False,
            "force_verify": False,
            "high_assurance": False,
            "acl_available": False,
            "public": False,
            "network_use": "normal",
            "subscription_id": None,
            "host_endpoint_id": None,
            "non_functional": False,
            "keywords": None,
            "https_server": None,
            "local_user_info_available": False,
            "username": "local-facility",
            "shareable": False,
            "acl_editable": False,
            "in_use": False,
            "mfa_required": False,
            "expire_time": None,
            "host_path": None,
            "disable_anonymous_writes": False,
            "french_english_bilingual": False,
            "globus_connect_setup_key": None,
            "gcp_connected": None,
            "gcp_paused": None,
            "non_functional_endpoint_display_name": None,
            "non_functional_endpoint_id": None,
        }

    @app.get("/v0.10/operation/endpoint/{endpoint_id}/ls")
    def operation_ls(
        endpoint_id: str,
        request: Request,
        path: str = "/~/",
        limit: int = 100000,
        offset: int = 0,
        show_hidden: int = 1,
        orderby: str = "name ASC",
        filter: str | None = None,
    ) -> dict:
        authorized(request)
        resource = request.url.path
        collection = service.collection(endpoint_id, resource)
        directory = local_path(collection, path, resource)
        if not directory.exists():
            raise _error(
                404,
                "ClientError.NotFound",
                f"Directory '{path}' not found on endpoint {collection.describe()}",
                resource,
            )
        if not directory.is_dir():
            raise _error(502, "ExternalError.DirListingFailed.NotDirectory", f"'{path}' is not a directory", resource)
        keep = _ls_filter(filter, resource)
        entries = []
        for child in directory.iterdir():
            if child.name.endswith(PARTIAL_SUFFIX) or (not show_hidden and child.name.startswith(".")):
                continue
            document = service.file_document(collection, child)
            if keep(document):
                entries.append(document)
        for clause in reversed([c.strip() for c in orderby.split(",") if c.strip()]):
            key, _, direction = clause.partition(" ")
            if key not in ("name", "type", "size", "last_modified", "permissions", "user", "group"):
                raise _error(400, "ClientError.BadRequest", f"Invalid orderby {clause!r}", resource)
            entries.sort(key=lambda e, k=key: e[k], reverse=direction.strip().upper() == "DESC")
        page = entries[max(0, offset) : max(0, offset) + max(0, limit)]
        absolute = collection.globus_path(directory)
        return {
            "DATA_TYPE": "file_list",
            "DATA": page,
            "path": absolute if absolute.endswith("/") else absolute + "/",
            "absolute_path": absolute,
            "endpoint": collection.uuid,
            "length": len(page),
            "total": len(entries),
            "rename_supported": True,
            "symlink_supported": False,
        }

    @app.get("/v0.10/operation/endpoint/{endpoint_id}/stat")
    def operation_stat(endpoint_id: str, request: Request, path: str = "/~/") -> dict:
        authorized(request)
        resource = request.url.path
        collection = service.collection(endpoint_id, resource)
        target = local_path(collection, path, resource)
        if not target.exists() and not target.is_symlink():
            raise _error(
                404,
                "NotFound",
                f"Path not found, Error (list)\nEndpoint: {collection.describe()}\n"
                f"Message: No such file or directory\n---\nDetails: Error: '{path}' not found",
                resource,
            )
        return service.file_document(collection, target)

    @app.post("/v0.10/operation/endpoint/{endpoint_id}/mkdir")
    async def operation_mkdir(endpoint_id: str, request: Request) -> dict:
        authorized(request)
        resource = request.url.path
        body = await json_body(request)
        collection = service.collection(endpoint_id, resource)
        path = _field(body, "path", resource)
        target = local_path(collection, path, resource)
        if target.exists() or target.is_symlink():
            raise _error(
                502, "ExternalError.MkdirFailed.Exists", f"Path already exists, Error: '{path}' exists", resource
            )
        if not target.parent.is_dir():
            raise _error(
                404,
                "ClientError.NotFound",
                f"Parent directory of '{path}' not found on endpoint {collection.describe()}",
                resource,
            )
        target.mkdir()
        return {
            "DATA_TYPE": "mkdir_result",
            "code": "DirectoryCreated",
            "message": "The directory was created successfully",
            "request_id": request_id(),
            "resource": resource,
        }

    @app.post("/v0.10/operation/endpoint/{endpoint_id}/rename")
    async def operation_rename(endpoint_id: str, request: Request) -> dict:
        """Rename a file or folder within one collection (``TransferClient.operation_rename``); as the service,
        it never replaces: an existing new path is refused."""
        authorized(request)
        resource = request.url.path
        body = await json_body(request)
        collection = service.collection(endpoint_id, resource)
        old = local_path(collection, _field(body, "old_path", resource), resource)
        new = local_path(collection, _field(body, "new_path", resource), resource)
        if not old.exists() and not old.is_symlink():
            raise _error(404, "ClientError.NotFound", f"'{body['old_path']}' not found", resource)
        if new.exists() or new.is_symlink():
            raise _error(502, "ExternalError.RenameFailed.Exists", f"'{body['new_path']}' already exists", resource)
        if not new.parent.is_dir():
            raise _error(404, "ClientError.NotFound", f"Parent directory of '{body['new_path']}' not found", resource)
        old.rename(new)
        return {
            "DATA_TYPE": "result",
            "code": "FileRenamed",
            "message": "File or directory renamed successfully",
            "request_id": request_id(),
            "resource": resource,
        }
