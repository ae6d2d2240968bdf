"""Triggers for Globus waits: a transfer/delete task reaching a final state, a path appearing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from als_provider.hooks.globus_transfer import GlobusTransferHook, describe_globus_error
from include.paths import EndpointPath

#: Events after which Globus would only keep retrying a task that cannot succeed.
FATAL_EVENT_CODES = frozenset({"PERMISSION_DENIED", "FILE_NOT_FOUND", "ENDPOINT_ERROR", "NO_SPACE_LEFT"})
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


def failure_message(task: dict[str, Any], errors: list[dict[str, Any]]) -> str:
    """Globus's own words for why a task failed: its fatal error, else its latest error event."""
    head = f"Globus task {task.get('task_id')} {task.get('status')}"
    reason = task.get("fatal_error") or (errors[0] if errors else None)
    if reason:
        return f"{head}: {reason.get('code')}: {reason.get('description')}"
    return f"{head}: {task.get('nice_status') or 'no reason given'}"


class GlobusTaskTrigger(BaseTrigger):
    """Wait for a Globus transfer or delete task to end.

    Fires ``{"status": "success", "task": summary}`` when it SUCCEEDED, and
    ``{"status": "error", "message": ...}`` when it FAILED, showed a fatal error event (the task is
    then cancelled, since Globus would retry it for days), or outlived ``deadline`` (epoch seconds; the
    task is cancelled too). Transient API errors are retried until the deadline.

    The Globus task id is kept as ``globus_task_id``: the triggerer sets ``task_id`` to the Airflow task's id.
    """

    def __init__(
        self,
        task_id: str,
        *,
        globus_conn_id: str = GlobusTransferHook.default_conn_name,
        poll_interval: float = 10.0,
        deadline: float | None = None,
        cancel_on_fatal: bool = True,
    ) -> None:
        super().__init__()
        self.globus_task_id = task_id
        self.globus_conn_id = globus_conn_id
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.cancel_on_fatal = cancel_on_fatal

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "task_id": self.globus_task_id,
                "globus_conn_id": self.globus_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "cancel_on_fatal": self.cancel_on_fatal,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = GlobusTransferHook(self.globus_conn_id)
        last_line = None
        while True:
            try:
                task = await asyncio.to_thread(hook.get_task, self.globus_task_id)
                status = task.get("status")
                if status == "SUCCEEDED":
                    self.log.info(progress_line(task))
                    yield TriggerEvent({"status": "success", "task": task_summary(task)})
                    return
                if status == "FAILED":
                    errors = await asyncio.to_thread(hook.error_events, self.globus_task_id)
                    yield TriggerEvent({"status": "error", "message": failure_message(task, errors)})
                    return
                errors = await asyncio.to_thread(hook.error_events, self.globus_task_id) if task.get("faults") else []
                fatal = [event for event in errors if event.get("code") in FATAL_EVENT_CODES]
                if fatal and self.cancel_on_fatal:
                    await asyncio.to_thread(hook.cancel, self.globus_task_id)
                    yield TriggerEvent({"status": "error", "message": failure_message(task, fatal) + " (cancelled)"})
                    return
            except Exception as exc:
                if not _transient(exc):
                    yield TriggerEvent({"status": "error", "message": describe_globus_error(exc)})
                    return
                self.log.warning(
                    "Globus did not answer for task %s: %s", self.globus_task_id, describe_globus_error(exc)
                )
            else:
                line = progress_line(task)
                if line != last_line:
                    self.log.info(line)
                    last_line = line
            if self.deadline is not None and time.time() >= self.deadline:
                await _cancel_quietly(hook, self.globus_task_id, self.log)
                message = f"Globus task {self.globus_task_id} did not finish by its deadline (cancelled)"
                yield TriggerEvent({"status": "error", "message": message})
                return
            await asyncio.sleep(self.poll_interval)


class GlobusPathTrigger(BaseTrigger):
    """Wait until a path exists at a Globus endpoint; fires ``{"status": "success", "stat": {...}}``."""

    def __init__(
        self,
        endpoint: str,
        path: str,
        *,
        globus_conn_id: str = GlobusTransferHook.default_conn_name,
        poll_interval: float = 30.0,
    ) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.path = path
        self.globus_conn_id = globus_conn_id
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "endpoint": self.endpoint,
                "path": self.path,
                "globus_conn_id": self.globus_conn_id,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = GlobusTransferHook(self.globus_conn_id)
        where = EndpointPath(self.endpoint, self.path)
        while True:
            try:
                found = await asyncio.to_thread(hook.stat, where)
            except Exception as exc:
                if not _transient(exc):
                    yield TriggerEvent({"status": "error", "message": describe_globus_error(exc)})
                    return
                self.log.warning("Globus did not answer for %s: %s", where, describe_globus_error(exc))
            else:
                if found is not None:
                    yield TriggerEvent({"status": "success", "stat": found})
                    return
                self.log.info("%s does not exist yet", where)
            await asyncio.sleep(self.poll_interval)


def _transient(exc: BaseException) -> bool:
    """Worth another poll: the network, a 5xx or a 429 (after the SDK's own retries)."""
    import globus_sdk

    if isinstance(exc, globus_sdk.NetworkError):
        return True
    return isinstance(exc, globus_sdk.GlobusAPIError) and (exc.http_status >= 500 or exc.http_status == 429)


async def _cancel_quietly(hook: GlobusTransferHook, task_id: str, log) -> None:
    try:
        await asyncio.to_thread(hook.cancel, task_id)
    except Exception as exc:
        log.warning("could not cancel Globus task %s: %s", task_id, describe_globus_error(exc))
