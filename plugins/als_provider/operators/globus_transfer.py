"""GlobusTransferOperator: copy a file or folder between two named endpoints with Globus Transfer."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context

from als_provider.hooks.globus_transfer import GlobusTransferHook
from als_provider.triggers.globus_transfer import GlobusTaskTrigger
from als_provider.triggers.inline import first_event
from include.paths import EndpointPath, endpoint_relative
from include.transfer_metrics import record_transfer

#: task_state_store key holding {"submission_id", "task_id"} across tries.
STATE_KEY = "globus_transfer"
LIVE_STATUSES = frozenset({"ACTIVE", "INACTIVE"})


class GlobusTransferError(RuntimeError):
    """A Globus transfer failed, timed out or could not be submitted."""


class GlobusTransferOperator(BaseOperator):
    """Copy ``source_endpoint:source_path`` to ``destination_endpoint:destination_path``.

    Endpoint names come from include/config/endpoints.yaml; paths are relative to each endpoint's root
    (validated before anything moves). Whether the copy is recursive is decided from the source listing
    unless ``recursive`` is given. Checksums are synced and verified. The Globus submission id is kept in
    the task state store before submitting, so a retry or a restarted worker re-attaches to the task it
    already started (Globus answers a reused submission id with the same task); only a task that ended
    FAILED is submitted afresh. Deferrable by default: the wait holds no worker slot.

    ``skip_if_present`` (single files): when the destination already holds a file of the source's size and
    modification time (Globus preserves it), nothing is submitted; for immutable raw scans this makes a
    second run of the same scan copy nothing.

    Returns a summary (task id, files, bytes, rate, duration, source and destination).
    """

    template_fields: Sequence[str] = (
        "source_endpoint",
        "source_path",
        "destination_endpoint",
        "destination_path",
        "transfer_label",
    )
    ui_color = "#4a90d9"

    def __init__(
        self,
        *,
        source_endpoint: str,
        source_path: str,
        destination_endpoint: str,
        destination_path: str,
        recursive: bool | None = None,
        skip_if_present: bool = False,
        transfer_label: str | None = None,
        sync_level: str = "checksum",
        verify_checksum: bool = True,
        globus_conn_id: str = GlobusTransferHook.default_conn_name,
        deferrable: bool = True,
        poll_interval: float = 10.0,
        transfer_timeout: timedelta = timedelta(hours=12),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_endpoint = source_endpoint
        self.source_path = source_path
        self.destination_endpoint = destination_endpoint
        self.destination_path = destination_path
        self.recursive = recursive
        self.skip_if_present = skip_if_present
        self.transfer_label = transfer_label
        self.sync_level = sync_level
        self.verify_checksum = verify_checksum
        self.globus_conn_id = globus_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.transfer_timeout = transfer_timeout

    @property
    def hook(self) -> GlobusTransferHook:
        return GlobusTransferHook(self.globus_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        source = EndpointPath(self.source_endpoint, endpoint_relative(self.source_path))
        destination = EndpointPath(self.destination_endpoint, endpoint_relative(self.destination_path))
        hook = self.hook
        hook.locate(source), hook.locate(destination)  # unknown endpoints fail here, before anything moves
        store = context.get("task_state_store")
        state = (store.get(STATE_KEY) if store is not None else None) or {}

        task_id = state.get("task_id")
        if task_id:
            status = hook.get_task(task_id).get("status")
            if status in LIVE_STATUSES or status == "SUCCEEDED":
                self.log.info("Re-attaching to Globus task %s (%s) from an earlier try", task_id, status)
            else:
                self.log.warning("Globus task %s of an earlier try ended %s; submitting a new one", task_id, status)
                task_id, state = None, {}
        if not task_id and self.skip_if_present and (present := self._already_there(hook, source, destination)):
            return self._result(present)
        if not task_id:
            task_id = self._submit(hook, source, destination, state, store, context)

        deadline = time.time() + self.transfer_timeout.total_seconds()
        trigger = GlobusTaskTrigger(
            task_id, globus_conn_id=self.globus_conn_id, poll_interval=self.poll_interval, deadline=deadline
        )
        if self.deferrable:
            self.defer(
                trigger=trigger,
                method_name="execute_complete",
                timeout=self.transfer_timeout + timedelta(minutes=10),
            )
        return self.execute_complete(context, first_event(trigger))

    def _submit(self, hook, source, destination, state, store, context) -> str:
        recursive = self.recursive
        if recursive is None:
            found = hook.stat(source)
            if found is None:
                raise GlobusTransferError(f"source {source} does not exist; nothing was transferred")
            recursive = found.get("type") == "dir"
        submission_id = state.get("submission_id")
        if submission_id:
            self.log.info("Resubmitting with the earlier try's submission id %s (Globus deduplicates)", submission_id)
        else:
            submission_id = hook.new_submission_id()
            if store is not None:
                store.set(STATE_KEY, {"submission_id": submission_id})
        ti = context["ti"]
        label = self.transfer_label or f"{ti.dag_id} {ti.task_id} {source.path.name}"
        result = hook.submit_transfer(
            source,
            destination,
            submission_id=submission_id,
            recursive=recursive,
            label=label,
            sync_level=self.sync_level,
            verify_checksum=self.verify_checksum,
        )
        task_id = result["task_id"]
        if store is not None:
            store.set(STATE_KEY, {"submission_id": submission_id, "task_id": task_id})
        self.log.info(
            "Globus task %s (%s): %s -> %s, recursive=%s", task_id, result.get("code"), source, destination, recursive
        )
        return task_id

    def _already_there(self, hook, source, destination) -> dict[str, Any] | None:
        """The destination's listing entry if it already holds the same file as the source."""
        there = hook.stat(destination)
        if not there or there.get("type") != "file":
            return None
        here = hook.stat(source)
        if here is None:
            raise GlobusTransferError(f"source {source} does not exist; nothing was transferred")
        same = here.get("size") == there.get("size") and here.get("last_modified") == there.get("last_modified")
        if not same:
            return None
        self.log.info(
            "%s already holds %s (%s bytes, same mtime): nothing to transfer", destination, source, there.get("size")
        )
        return {
            "task_id": None,
            "status": "SKIPPED",
            "files": 1,
            "files_transferred": 0,
            "files_skipped": 1,
            "bytes_transferred": 0,
            "duration_seconds": 0.0,
        }

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") != "success":
            raise GlobusTransferError(event.get("message") or f"Globus transfer failed: {event}")
        return self._result(dict(event["task"]))

    def _result(self, summary: dict[str, Any]) -> dict[str, Any]:
        summary["source"] = {"endpoint": self.source_endpoint, "path": str(endpoint_relative(self.source_path))}
        summary["destination"] = {
            "endpoint": self.destination_endpoint,
            "path": str(endpoint_relative(self.destination_path)),
        }
        self.log.info(
            "Globus task %s %s: %s files, %s bytes in %ss",
            summary["task_id"],
            summary.get("status"),
            summary.get("files_transferred"),
            summary.get("bytes_transferred"),
            summary.get("duration_seconds"),
        )
        summary["metrics"] = record_transfer(summary, self.log)
        return summary
