"""GlobusTransferOperator: copy a file or folder between two named endpoints with Globus Transfer.

:class:`GlobusTaskOperator` is the Globus Transfer part of the resumable-remote core, shared with the prune's
delete batches: a client-chosen submission id kept before submitting, re-attaching by task status, waiting
with :class:`~als_provider.triggers.globus_transfer.GlobusTaskTrigger`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from als_provider.export_control import refuse_export_controlled
from als_provider.hooks.globus_transfer import GlobusTransferHook, is_task_limit
from als_provider.operators.base import GONE, LIVE, SUCCEEDED, RemoteWorkOperator
from als_provider.triggers.globus_transfer import GlobusTaskTrigger
from als_provider.triggers.inline import first_event
from include.paths import EndpointPath, endpoint_relative
from include.results import completeness
from include.transfer_metrics import record_transfer

#: task_state_store key holding {"submission_id", "task_id"} across tries.
STATE_KEY = "globus_transfer"
#: task_state_store keys of a replaced destination's delete tasks: leftovers before the copy, old results in the swap.
CLEAR_KEY, SWAP_KEY = "globus_transfer/clear", "globus_transfer/swap"
LIVE_STATUSES = frozenset({"ACTIVE", "INACTIVE"})
#: The Airflow pool of every Globus task operator (airflow_settings.yaml, docs/operations.md): it counts deferred
#: tasks, so its slots bound the Globus tasks we have unfinished, below the service's per-user cap.
GLOBUS_POOL = "globus_transfers"
#: Siblings of a replaced destination: the new copy until it is verified, the old results until it is in place.
STAGING, REPLACED = ".{}.incoming", ".{}.replaced"


class GlobusTransferError(RuntimeError):
    """A Globus transfer failed, timed out or could not be submitted."""


def delete_work(endpoint: str, paths: list[str], label: str, *, recursive: bool = True) -> dict[str, Any]:
    """The state of one Globus delete task (``ignore_missing``) for :meth:`GlobusTaskOperator.run_step`."""
    return {"kind": "delete", "endpoint": endpoint, "paths": paths, "label": label, "recursive": recursive}


class GlobusTaskOperator(RemoteWorkOperator):
    """Remote work that is one Globus Transfer task (a transfer or a delete).

    The submission id is stored before submitting: Globus answers a reused submission id with the task it
    already started, so a try that died mid-submit is resubmitted safely. A task that is ACTIVE, INACTIVE or
    SUCCEEDED is re-attached to; one that FAILED is submitted afresh with a new submission id. Subclasses
    implement :meth:`submit_task` (the one Globus call) and :meth:`result`.

    Each runs in the pool :data:`GLOBUS_POOL` (deferred waits counted), which keeps our unfinished Globus tasks
    below the service's per-user cap; a submission Globus still refuses for that cap (another client of the same
    user) waits :attr:`limit_wait`, deferred, and is sent again with its submission id (docs/operations.md).
    """

    hook_class = GlobusTransferHook
    #: How long a submission Globus refused for the per-user cap on unfinished tasks waits before it is sent again.
    limit_wait: timedelta = timedelta(seconds=30)

    def __init__(self, *, pool: str = GLOBUS_POOL, **kwargs: Any) -> None:
        super().__init__(pool=pool, **kwargs)

    def submit_task(self, context: Context, state: dict[str, Any], submission_id: str) -> dict[str, Any]:
        """Submit the task with ``submission_id``; Globus's answer (``task_id``, ``code``, ...). Here: the
        delete of :func:`delete_work` (``kind="delete"``); subclasses submit their own work and call this for it."""
        if state.get("kind") != "delete":
            raise NotImplementedError(f"{type(self).__name__} submits no {state.get('kind')!r} work")
        self.log.info("Deleting %d path(s) on %s (%s)", len(state["paths"]), state["endpoint"], state["label"])
        return self.hook.submit_delete(
            state["endpoint"],
            state["paths"],
            submission_id=submission_id,
            label=state["label"],
            recursive=state.get("recursive", True),
            ignore_missing=True,
        )

    def submit(self, context: Context, state: dict[str, Any]) -> dict[str, Any]:
        submission_id = state.get("submission_id")
        if submission_id:
            self.log.info("Resubmitting with the earlier try's submission id %s (Globus deduplicates)", submission_id)
        else:
            submission_id = self.hook.new_submission_id()
            self._save_state(context, {**state, "submission_id": submission_id})
        while True:
            try:
                result = self.submit_task(context, state, submission_id)
                break
            except Exception as exc:
                if not is_task_limit(exc):
                    raise
                self._wait_for_room(exc, submission_id)
        self.log.info("Globus task %s: %s", result["task_id"], result.get("code"))
        return {**state, "submission_id": submission_id, "task_id": result["task_id"]}

    def _wait_for_room(self, exc: Exception, submission_id: str) -> None:
        """Globus refused the submission for the per-user cap on unfinished tasks (it created nothing): wait
        :attr:`limit_wait` and send it again with the same submission id, which can start one task only. Deferred,
        the wait holds no worker slot and the try starts over in :meth:`resubmit` (the id is in the state)."""
        self.log.warning(
            "Globus refused the submission (%s): waiting %ss to submit again with submission id %s; if this "
            "repeats, give the %s pool fewer slots than the cap",
            getattr(exc, "message", exc),
            self.limit_wait.total_seconds(),
            submission_id,
            self.pool,
        )
        if self.deferrable:
            from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

            self.defer(trigger=TimeDeltaTrigger(self.limit_wait), method_name="resubmit")
        time.sleep(self.limit_wait.total_seconds())

    def resubmit(self, context: Context, event: Any = None) -> Any:
        """Back from a wait for room under the cap: the try starts over, as a retry would (re-attaching to what
        it started, sending the stored submission id again)."""
        return self.execute(context)

    def status_of(self, state: dict[str, Any]) -> str:
        status = self.hook.get_task(state["task_id"]).get("status")
        return LIVE if status in LIVE_STATUSES else SUCCEEDED if status == "SUCCEEDED" else GONE

    def forget(self, state: dict[str, Any]) -> dict[str, Any]:
        return {**state, "submission_id": None, "task_id": None}  # a failed task's submission id is spent

    def describe(self, state: dict[str, Any]) -> str:
        return f"Globus task {state.get('task_id')}"

    def make_trigger(self, state: dict[str, Any]) -> GlobusTaskTrigger:
        timeout = self.wait_timeout
        return GlobusTaskTrigger(
            state["task_id"],
            globus_conn_id=self.conn_id,
            poll_interval=self.poll_interval,
            deadline=None if timeout is None else time.time() + timeout.total_seconds(),
        )


class GlobusTransferOperator(GlobusTaskOperator):
    """Copy ``source_endpoint:source_path`` to ``destination_endpoint:destination_path``.

    Endpoint names come from include/config/endpoints.yaml; paths are relative to each endpoint's root
    (validated before anything moves). Whether the copy is recursive is decided from the source listing
    unless ``recursive`` is given. Checksums are synced and verified. The Globus submission id is kept in
    the task state store before submitting, so a retry or a restarted worker re-attaches to the task it
    already started (Globus answers a reused submission id with the same task); only a task that ended
    FAILED is submitted afresh. Deferrable by default: the wait holds no worker slot.

    ``source_path`` and ``destination_path`` may be lists of the same length (templated, or an XComArg that
    resolves to a list): the pairs go as the items of one Globus task (one submission id, so a retry still
    re-attaches to the one task); the task succeeds only when every item arrived.

    ``skip_if_present`` (single files): when the destination already holds a file of the source's size and
    modification time (Globus preserves it), nothing is submitted; for immutable raw scans this makes a
    second run of the same scan copy nothing.

    ``replace_destination`` (results folders with a results manifest, include/results.py): the source must be
    complete by its manifest, else the task fails without touching the destination (a source pruned after its
    retention, a partial result); a destination that already holds the same complete results is left as it is.
    The copy goes into a staging sibling (``.<name>.incoming``), is checked against the source's listing and
    manifest, and only then swapped in by renames (old → ``.<name>.replaced``, staging → final, old deleted):
    every step leaves the old results or the new, never neither, and a later try finishes an interrupted swap.

    ``transfer_timeout`` bounds each try's wait. Returns a summary (task id, files, bytes, rate, duration,
    source and destination).
    """

    template_fields: Sequence[str] = (
        "source_endpoint",
        "source_path",
        "destination_endpoint",
        "destination_path",
        "transfer_label",
    )
    ui_color = "#4a90d9"
    state_key = STATE_KEY
    error_class = GlobusTransferError

    def __init__(
        self,
        *,
        source_endpoint: str,
        source_path: str | list[str],
        destination_endpoint: str,
        destination_path: str | list[str],
        recursive: bool | None = None,
        skip_if_present: bool = False,
        replace_destination: bool = False,
        transfer_label: str | None = None,
        sync_level: str = "checksum",
        verify_checksum: bool = True,
        globus_conn_id: str = GlobusTransferHook.default_conn_name,
        transfer_timeout: timedelta = timedelta(hours=12),
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=globus_conn_id, wait_timeout=transfer_timeout, **kwargs)
        self.source_endpoint, self.source_path = source_endpoint, source_path
        self.destination_endpoint, self.destination_path = destination_endpoint, destination_path
        self.recursive, self.skip_if_present, self.transfer_label = recursive, skip_if_present, transfer_label
        self.sync_level, self.verify_checksum = sync_level, verify_checksum
        self.replace_destination = replace_destination

    def prepare(self, context: Context) -> None:
        sources, destinations = _paths(self.source_path), _paths(self.destination_path)
        if not sources or len(sources) != len(destinations):
            raise GlobusTransferError(
                f"{len(sources)} source path(s) for {len(destinations)} destination path(s); nothing was transferred"
            )
        if len(sources) > 1 and self.replace_destination:
            raise GlobusTransferError("replace_destination takes one source and one destination")
        self._pairs = [
            (EndpointPath(self.source_endpoint, source), EndpointPath(self.destination_endpoint, destination))
            for source, destination in zip(sources, destinations, strict=True)
        ]
        self._source, self._destination = self._pairs[0]
        ends = (self.source_endpoint, self.destination_endpoint)  # an export-controlled scan stays on site
        refuse_export_controlled(context, self.task_id, [self.source_path, self.destination_path], endpoints=ends)
        for pair in self._pairs:  # unknown endpoints and bad paths fail here, before anything moves
            for where in pair:
                self.hook.locate(where)
        self._siblings()

    def _siblings(self) -> None:
        """The staging and replaced siblings of a replaced destination (no network)."""
        if self.replace_destination:
            destination = EndpointPath(self.destination_endpoint, _paths(self.destination_path)[0])
            self._destination = destination
            self._source = EndpointPath(self.source_endpoint, _paths(self.source_path)[0])
            self._staging, self._replaced = (_sibling(destination, name) for name in (STAGING, REPLACED))

    def already_done(self, context: Context) -> dict[str, Any] | None:
        """A SKIPPED summary if the destination already holds the same file (``skip_if_present``) or the same
        complete results (``replace_destination``, which also refuses a source that is not complete)."""
        if self.replace_destination:
            return self._results_already_there()
        if not self.skip_if_present:
            return None
        for source, destination in self._pairs:
            there = self.hook.stat(destination)
            if not there or there.get("type") != "file":
                return None
            here = self._source_stat(source)
            if here.get("size") != there.get("size") or here.get("last_modified") != there.get("last_modified"):
                return None
            self.log.info(
                "%s already holds %s (%s bytes, same mtime): nothing to transfer",
                destination,
                source,
                there.get("size"),
            )
        return _skipped(len(self._pairs))

    def _results_already_there(self) -> dict[str, Any] | None:
        """Refuse a source that is not complete results (nothing touched); SKIPPED if the destination holds them."""
        self._finish_interrupted_swap()
        source, there = completeness(self.hook, self._source), completeness(self.hook, self._destination)
        if not source.complete:
            raise AirflowFailException(
                f"source {self._source} is not complete results ({source.reason}; pruned after its retention, or "
                f"a partial result): nothing was copied and {self._destination} is left as it is ({there.reason})"
            )
        if there.same_as(source):
            self.log.info(
                "%s already holds the results of %s (%s): nothing to copy", there.where, source.where, there.reason
            )
            return _skipped(source.count)
        return None

    def _finish_interrupted_swap(self) -> None:
        """A destination left absent by an interrupted swap gets the verified new copy, else the old one back."""
        if self.hook.stat(self._destination) is not None or self.hook.stat(self._replaced) is None:
            return
        staged = completeness(self.hook, self._staging)
        back = self._staging if staged.complete else self._replaced
        self.log.warning("An earlier swap was interrupted: renaming %s to %s", back, self._destination)
        self.hook.rename(back, self._destination)

    def begin(self, context: Context) -> Any:
        """A replaced destination's leftovers (a staging copy never swapped in, old results already replaced)
        are deleted first (after :meth:`already_done` found a complete source), then the copy starts."""
        self.prepare(context)
        if not self.replace_destination or not self._clear_first(context):
            return super().begin(context)
        if (done := self.already_done(context)) is not None:
            return self.resume(context, None, done)
        leftovers = [self._staging] + ([self._replaced] if self.hook.stat(self._destination) else [])
        there = [where for where in leftovers if self.hook.stat(where) is not None]
        if not there:
            return super().begin(context)
        return self.run_step(context, CLEAR_KEY, self._delete_work(context, there, "leftover"))

    def resume(self, context: Context, key: str | None, event: dict[str, Any]) -> Any:
        if key is None:
            return super().resume(context, key, event)
        work = self._load_state(context, key)
        if event.get("status") != "success":
            raise GlobusTransferError(f"deleting the {work['why']} {', '.join(work['names'])}: {event.get('message')}")
        self.log.info("Deleted the %s %s", work["why"], ", ".join(work["names"]))
        if key == CLEAR_KEY:
            return super().begin(context)
        self.prepare(context)  # after a deferral this is a fresh operator
        return self.result(context, self._copied(context))

    def _clear_first(self, context: Context) -> bool:
        """Whether the copy is yet to be submitted (none was, or the last one FAILED): leftovers go first.
        An interrupted submission (its id stored, no task id) is sent again as it was."""
        state = self._load_state(context, self.state_key)
        if not state.get("submission_id"):
            return True
        return bool(state.get("task_id")) and self.status_of(state) == GONE

    def _delete_work(self, context: Context, paths: list[EndpointPath], why: str) -> dict[str, Any]:
        """One Globus delete task for ``paths`` of the destination endpoint."""
        ti = context["ti"]
        label = f"{ti.dag_id} {ti.task_id} {why} {self._destination.path.name}"
        work = delete_work(self._destination.endpoint, [str(where.path) for where in paths], label)
        return {**work, "why": why, "names": [str(where) for where in paths]}

    def _copied(self, context: Context) -> dict[str, Any]:
        """The final event of the copy, read again (one poll) once a delete of the swap ended."""
        return first_event(self.make_trigger(self._load_state(context, self.state_key)))

    def _swap_in(self) -> tuple[EndpointPath, str] | None:
        """Put the verified staging copy in place of the destination: old → replaced, staging → final; then the
        old results to delete (with why), if any: the caller deletes them and calls again.

        Idempotent: a try after an interrupted swap finishes it; a staging copy that is not the source's complete
        results fails the task and leaves the destination as it is."""
        staged = completeness(self.hook, self._staging)
        if staged.reason != "absent":
            source = completeness(self.hook, self._source)
            if not staged.same_as(source):
                raise GlobusTransferError(
                    f"the copy {self._staging} is not the complete results of {self._source} ({staged.reason}; "
                    f"source: {source.reason}): {self._destination} is left as it is"
                )
            if self.hook.stat(self._destination) is not None:
                if self.hook.stat(self._replaced) is not None:
                    return self._replaced, "leftover"
                self.hook.rename(self._destination, self._replaced)
            self.hook.rename(self._staging, self._destination)
            self.log.info("Swapped in %s (%s)", self._destination, staged.reason)
        there = completeness(self.hook, self._destination)
        if not there.complete:
            raise GlobusTransferError(f"{self._destination} is not complete after the copy: {there.reason}")
        if self.hook.stat(self._replaced) is not None:
            return self._replaced, "replaced"
        return None

    def submit_task(self, context: Context, state: dict[str, Any], submission_id: str) -> dict[str, Any]:
        if state.get("kind") == "delete":  # a replaced destination's leftovers or old results
            return super().submit_task(context, state, submission_id)
        recursive = self.recursive
        if recursive is None:
            recursive = self._source_stat(self._source).get("type") == "dir"
        ti = context["ti"]
        for source, destination in self._pairs:
            self.log.info("Copying %s -> %s, recursive=%s", source, destination, recursive)
        more = f" +{len(self._pairs) - 1}" if len(self._pairs) > 1 else ""
        return self.hook.submit_transfer(
            self._source,
            self._staging if self.replace_destination else self._destination,
            submission_id=submission_id,
            recursive=recursive,
            label=self.transfer_label or f"{ti.dag_id} {ti.task_id} {self._source.path.name}{more}",
            sync_level=self.sync_level,
            verify_checksum=self.verify_checksum,
            more=self._pairs[1:],
        )

    def _source_stat(self, source: EndpointPath) -> dict[str, Any]:
        found = self.hook.stat(source)
        if found is None:
            raise GlobusTransferError(f"source {source} does not exist; nothing was transferred")
        return found

    def result(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if self.replace_destination and event["task"].get("status") != "SKIPPED":
            self._siblings()  # after a deferral this is a fresh operator: the paths again
            if (old := self._swap_in()) is not None:
                return self.run_step(context, SWAP_KEY, self._delete_work(context, [old[0]], old[1]))
        summary = dict(event["task"])
        sources, destinations = _paths(self.source_path), _paths(self.destination_path)
        single = isinstance(self.source_path, str)
        summary["source"] = {"endpoint": self.source_endpoint, "path": sources[0] if single else sources}
        summary["destination"] = {
            "endpoint": self.destination_endpoint,
            "path": destinations[0] if single else destinations,
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


def _paths(value: str | Sequence[str]) -> list[str]:
    """Endpoint-relative paths of a path argument (one path, or a list of them)."""
    values = [value] if isinstance(value, str) else list(value)
    return [str(endpoint_relative(v)) for v in values]


def _sibling(where: EndpointPath, pattern: str) -> EndpointPath:
    """``where``'s hidden sibling named by ``pattern`` (``.{}.incoming``)."""
    return EndpointPath(where.endpoint, str(where.path.parent / pattern.format(where.path.name)))


def _skipped(count: int) -> dict[str, Any]:
    """The final event of a copy that had nothing to do."""
    skipped = {"task_id": None, "status": "SKIPPED", "files": count, "files_transferred": 0, "files_skipped": count}
    return {"status": "success", "task": {**skipped, "bytes_transferred": 0, "duration_seconds": 0.0}}
