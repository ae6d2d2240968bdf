"""Triggers for Globus waits: a transfer/delete task reaching a final state, a path appearing."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from als_provider.hooks.globus_transfer import GlobusTransferHook, describe_globus_error, is_transient
from als_provider.triggers.base import PollingTrigger
from include.paths import EndpointPath

#: ``nice_status`` values of a task that is working normally; anything else names the fault Globus is retrying
#: (``NO_SPACE_LEFT``, ``PERMISSION_DENIED``, ``FILE_NOT_FOUND``, ``VERIFY_CHECKSUM``, ...).
HEALTHY_NICE_STATUS = frozenset({None, "OK", "Queued"})
SUMMARY_FIELDS = (
    "task_id",
    "type",
    "status",
    "label",
    "files",
    "directories",
    "files_transferred",
    "files_skipped",
    "bytes_transferred",
    "bytes_checksummed",
    "effective_bytes_per_second",
    "request_time",
    "completion_time",
)


def task_summary(task: dict[str, Any]) -> dict[str, Any]:
    """The fields of a Globus task document worth keeping in XCom and the run's note."""
    summary = {field: task.get(field) for field in SUMMARY_FIELDS}
    try:
        start = datetime.fromisoformat(str(task["request_time"]))
        end = datetime.fromisoformat(str(task["completion_time"]))
        summary["duration_seconds"] = round((end - start).total_seconds(), 3)
    except (KeyError, TypeError, ValueError):
        summary["duration_seconds"] = None
    return summary


def progress_line(task: dict[str, Any]) -> str:
    rate = (task.get("effective_bytes_per_second") or 0) / 2**20
    return (
        f"Globus task {task.get('task_id')} {task.get('status')}: "
        f"{task.get('files_transferred') or 0}/{task.get('files') or 0} files "
        f"({task.get('files_skipped') or 0} skipped), {(task.get('bytes_transferred') or 0) / 2**20:.1f} MiB, "
        f"{rate:.1f} MiB/s"
    )


def healthy(task: dict[str, Any]) -> bool:
    """Whether Globus reports no fault on the task right now."""
    return task.get("nice_status") in HEALTHY_NICE_STATUS and task.get("is_ok") is not False


def stall_reason(task: dict[str, Any], errors: list[dict[str, Any]]) -> str | None:
    """Why an ACTIVE task is not progressing, in Globus's code and words, or None when it is healthy.

    Only ``nice_status``/``is_ok`` say whether the fault is current: error events stay in the list after
    Globus got past them, so they only supply the words when ``nice_status_details`` has none.
    """
    if healthy(task):
        return None
    nice = task.get("nice_status")
    details = task.get("nice_status_details") or (
        errors[0].get("details") or errors[0].get("description") if errors else None
    )
    return f"{nice}: {details}" if details else str(nice)


def failure_message(task: dict[str, Any], errors: list[dict[str, Any]]) -> str:
    """Globus's own words for why a task failed: its fatal error, else its latest error event."""
    head = f"Globus task {task.get('task_id')} {task.get('status')}"
    reason = task.get("fatal_error") or (errors[0] if errors else None)
    if reason:
        return f"{head}: {reason.get('code')}: {reason.get('description')}"
    return f"{head}: {task.get('nice_status') or 'no reason given'}"


class _GlobusTrigger(PollingTrigger):
    """A wait on Globus Transfer: its hook, its transient errors, its error messages."""

    hook_class = GlobusTransferHook

    def is_transient(self, exc: BaseException) -> bool:
        return is_transient(exc)

    def describe_error(self, exc: BaseException) -> str:
        return describe_globus_error(exc)


class GlobusTaskTrigger(_GlobusTrigger):
    """Wait for a Globus transfer or delete task to end.

    Fires ``{"status": "success", "task": summary}`` when it SUCCEEDED, and
    ``{"status": "error", "message": ...}`` when it FAILED, stayed ACTIVE but stalled on a fault (Globus
    retries NO_SPACE_LEFT, PERMISSION_DENIED, FILE_NOT_FOUND... until the task's deadline, days away) for
    ``stall_timeout`` seconds in a row (default: ``transfer_stall_seconds`` of include/config/runtime.yaml;
    the task is then cancelled and the message is Globus's), or outlived ``deadline`` (epoch seconds; the
    task is cancelled too). Transient API errors are retried until the deadline. ``cancel_on_fatal=False``
    waits out a stall instead.

    The Globus task id is kept as ``globus_task_id``: the triggerer sets ``task_id`` to the Airflow task's id.
    """

    fields = ("task_id", "cancel_on_fatal", "stall_timeout")
    renamed = {"task_id": "globus_task_id"}

    def __init__(
        self, task_id: str, *, cancel_on_fatal: bool = True, stall_timeout: float | None = None, **settings: Any
    ) -> None:
        super().__init__(task_id=task_id, cancel_on_fatal=cancel_on_fatal, stall_timeout=stall_timeout, **settings)
        self._stalled_since: float | None = None

    @property
    def what(self) -> str:
        return f"Globus task {self.globus_task_id}"

    @property
    def stall_limit(self) -> float:
        if self.stall_timeout is not None:
            return float(self.stall_timeout)
        from include.runtime import load_runtime

        return load_runtime().transfer_stall_seconds

    def poll(self) -> dict[str, Any] | None:
        hook, task_id = self.hook, self.globus_task_id
        task = hook.get_task(task_id)
        self.progress(progress_line(task))
        status = task.get("status")
        if status == "SUCCEEDED":
            return {"status": "success", "task": task_summary(task)}
        if status == "FAILED":
            return self.failure(failure_message(task, hook.error_events(task_id)))
        errors = [] if healthy(task) else hook.error_events(task_id)
        reason = stall_reason(task, errors)
        if reason is None or not self.cancel_on_fatal:
            self._stalled_since = None
            return None
        now = time.monotonic()
        self._stalled_since = self._stalled_since or now
        stalled_for = now - self._stalled_since
        if stalled_for < self.stall_limit:
            self.progress(f"{self.what} ACTIVE but stalled on {reason} for {stalled_for:.0f} s (Globus retries it)")
            return None
        hook.cancel(task_id)
        return self.failure(
            f"Globus task {task_id} stalled on {reason} for {stalled_for:.0f} s "
            f"(limit {self.stall_limit:.0f} s; cancelled)"
        )

    def on_deadline(self) -> dict[str, Any]:
        try:
            self.hook.cancel(self.globus_task_id)
        except Exception as exc:
            self.log.warning("could not cancel %s: %s", self.what, describe_globus_error(exc))
        return self.failure(f"{self.what} did not finish by its deadline (cancelled)")


class GlobusPathTrigger(_GlobusTrigger):
    """Wait until a path exists at a Globus endpoint; fires ``{"status": "success", "stat": {...}}``."""

    fields = ("endpoint", "path")

    def __init__(self, endpoint: str, path: str, *, poll_interval: float = 30.0, **settings: Any) -> None:
        super().__init__(endpoint=endpoint, path=path, poll_interval=poll_interval, **settings)

    @property
    def what(self) -> str:
        return str(EndpointPath(self.endpoint, self.path))

    def poll(self) -> dict[str, Any] | None:
        found = self.hook.stat(EndpointPath(self.endpoint, self.path))
        if found is not None:
            return {"status": "success", "stat": found}
        self.progress(f"{self.what} does not exist yet")
        return None
