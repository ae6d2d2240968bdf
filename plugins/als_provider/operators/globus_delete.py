"""PruneManifestsOperator: plan with include.pruning, delete in Globus batches, drop the entries that went.

The planner (verdicts, verification, loop guard, batches, summary) is include/pruning.py; this module reads
the due entries, submits one Globus delete task per batch through the resumable-remote core and updates the
manifest. See docs/pruning.md for the design and the safety rules.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from als_provider.hooks.globus_transfer import GlobusTransferHook, describe_globus_error, globus_label
from als_provider.operators.globus_transfer import GlobusTaskOperator
from include import manifests, pruning
from include.paths import EndpointPath

#: task_state_store keys: the plan (report + batch count), then one key per delete batch.
PLAN_KEY = "prune_plan"
BATCH_KEY = "prune_batch/{}"
#: Most items in one checksum sync task.
SYNC_ITEMS = 10_000
#: Conf keys the prune DAG accepts (Airflow has no DAG-level additionalProperties: checked here).
CONF_KEYS = frozenset({"dry_run", "as_of"})


class GlobusChecksumSync:
    """Content verification through Globus (:class:`include.pruning.ContentVerifier`).

    One transfer task per pair of collections (and per ``SYNC_ITEMS`` items), target → check copy,
    ``sync_level="checksum"`` and ``verify_checksum``: Globus checksums both sides of every file and
    transfers only those that differ. A task that transferred nothing proves every check copy holds the
    target's content. A file it had to transfer means that check copy differed: the sync repaired it from
    the target (which the listing had just shown unchanged since its record); the entry is kept and
    verified again on the next run. A failed or timed-out task keeps its pairs' entries as "could not
    check" (the run fails with Globus's message).
    """

    def __init__(self, hook: GlobusTransferHook, *, label: str, timeout: timedelta, poll_seconds: float = 2.0) -> None:
        self.hook, self.label, self.timeout, self.poll_seconds = hook, label, timeout, poll_seconds
        self.tasks: list[str] = []

    def differing(self, pairs: Sequence[tuple[EndpointPath, EndpointPath, bool]]) -> dict[int, str]:
        import globus_sdk

        groups: dict[tuple[str, str], list[tuple[int, str, str]]] = defaultdict(list)
        for index, (target, check, _) in enumerate(pairs):
            (src, src_path), (dst, dst_path) = self.hook.locate(target), self.hook.locate(check)
            groups[(src, dst)].append((index, src_path, dst_path))
        submitted: list[tuple[list[tuple[int, str, str]], str | BaseException]] = []
        for (src, dst), items in groups.items():
            for start in range(0, len(items), SYNC_ITEMS):
                chunk = items[start : start + SYNC_ITEMS]
                data = globus_sdk.TransferData(
                    source_endpoint=src,
                    destination_endpoint=dst,
                    label=globus_label(f"{self.label} checksum sync"),
                    submission_id=self.hook.new_submission_id(),
                    sync_level="checksum",
                    verify_checksum=True,
                    preserve_timestamp=True,
                )
                for index, src_path, dst_path in chunk:
                    data.add_item(src_path, dst_path, recursive=pairs[index][2])
                try:
                    submitted.append((chunk, self.hook.client.submit_transfer(data)["task_id"]))
                except Exception as exc:
                    submitted.append((chunk, exc))
        found: dict[int, str] = {}
        deadline = time.monotonic() + self.timeout.total_seconds()
        for chunk, task_id in submitted:  # the tasks run side by side; wait for each in turn
            try:
                if isinstance(task_id, BaseException):
                    raise task_id
                task = self._wait(task_id, deadline)
            except Exception as exc:  # these pairs could not be compared; the others still are
                for index, _, _ in chunk:
                    found[index] = f"could not check: content: {describe_globus_error(exc)}"
                continue
            if task.get("files_transferred"):
                found.update(self._differing(pairs, chunk, task["task_id"]))
        return found

    def _differing(
        self, pairs: Sequence[tuple[EndpointPath, EndpointPath, bool]], chunk: list[tuple[int, str, str]], task_id: str
    ) -> dict[int, str]:
        """The pairs of ``chunk`` whose check copy the sync task had to write to."""
        copied = [t["destination_path"] for t in self.hook.client.task_successful_transfers(task_id)]
        exact = set(copied)
        found = {}
        for index, _, dst_path in chunk:
            target, check, folder = pairs[index]
            prefix = dst_path.rstrip("/") + "/"
            count = sum(1 for path in copied if path.startswith(prefix)) if folder else int(dst_path in exact)
            if count:
                found[index] = (
                    f"content differs: a Globus checksum sync had to copy {count} file(s) of {target} to "
                    f"{check} (task {task_id}); verified again on the next run"
                )
        return found

    def _wait(self, task_id: str, deadline: float) -> dict[str, Any]:
        self.tasks.append(task_id)
        while True:
            task = self.hook.get_task(task_id)
            if task["status"] == "SUCCEEDED":
                return task
            if task["status"] == "FAILED":
                fatal = task.get("fatal_error") or {}
                raise pruning.PruneError(
                    f"checksum sync task {task_id} FAILED: {fatal.get('code')} {fatal.get('description')}"
                )
            if time.monotonic() > deadline:
                self.hook.cancel(task_id)
                raise pruning.PruneError(f"checksum sync task {task_id} still {task['status']} after {self.timeout}")
            time.sleep(self.poll_seconds)


class PruneManifestsOperator(GlobusTaskOperator):
    """Delete every due manifest entry whose check copy is verified, one Globus delete task per batch.

    Reads ``dry_run`` and ``as_of`` from the run's Params. For each due entry: the path is re-validated
    (inside its endpoint, not a protected long-term copy, check copy elsewhere); the target is compared with
    its record and its check copy by one listing per folder, then by content (:class:`GlobusChecksumSync`);
    a mismatch keeps the entry and is reported (include.pruning.check_entries). Verified paths are deleted in
    batches of ``batch_size`` per endpoint (``ignore_missing``: a path deleted by an earlier, crashed run is
    done). Each batch's submission id is kept in the task state store before submitting and each batch's
    entries leave the manifest only after its task SUCCEEDED, so a retry re-attaches instead of deleting
    twice and a crash between delete and manifest update is harmless (the next run finds the path absent).
    Waits are deferred, one batch after another. Returns the summary; fails if a delete or check failed.
    """

    ui_color = "#d9534f"
    state_key = PLAN_KEY
    error_class = pruning.PruneError

    def __init__(
        self,
        *,
        batch_size: int = 500,
        globus_conn_id: str = GlobusTransferHook.default_conn_name,
        delete_timeout: timedelta = timedelta(hours=6),
        max_tree_entries: int = 200_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=globus_conn_id, wait_timeout=delete_timeout, **kwargs)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size, self.max_tree_entries = batch_size, max_tree_entries

    # -- plan, then start every batch ---------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        self.__dict__.pop("hook", None)
        plan = self._load_state(context, PLAN_KEY)
        if plan:
            self.log.info("Resuming the plan of an earlier try (%s delete batch(es))", plan["batches"])
        else:
            as_of, dry_run = self._params(context)
            started = time.monotonic()
            items = list(manifests.due_entries(as_of))
            self.log.info(
                "%d due manifest entr(y/ies) as of %s (read in %.1fs)", len(items), as_of, time.monotonic() - started
            )
            ti = context["ti"]
            content = GlobusChecksumSync(
                self.hook, label=f"{ti.dag_id} {ti.run_id}", timeout=self.wait_timeout or timedelta(hours=6)
            )
            checked = pruning.check_entries(
                self.hook,
                items,
                self.hook.endpoints,
                content=content,
                log=self.log,
                describe_error=describe_globus_error,
                max_tree_entries=self.max_tree_entries,
            )
            self.log.info(
                "Checked with %d folder listing(s) and %d checksum sync task(s) for %d path(s) in %.1fs",
                checked.listings,
                len(content.tasks),
                checked.content_checked,
                time.monotonic() - started,
            )
            batches = pruning.make_batches(checked, self.batch_size)
            report = pruning.plan_report(as_of, dry_run, len(items), checked, batches)
            if dry_run:
                return self._finish(report, batches)
            if checked.absent:  # deleted by an earlier run that crashed before updating the manifest
                manifests.remove_entries(checked.absent)
            for index, batch in enumerate(batches):
                self._save_state(context, batch, BATCH_KEY.format(index))
            plan = {"batches": len(batches), "report": report}
            self._save_state(context, plan, PLAN_KEY)
        for index, batch in enumerate(self._batches(context, plan)):
            if batch["status"] == "pending":
                self.start(context, BATCH_KEY.format(index))
        return self._wait_next(context, plan)

    def _params(self, context: Context) -> tuple[datetime, bool]:
        """``as_of`` and ``dry_run`` of this run; bad input fails at once (retrying cannot help)."""
        unknown = set(getattr(context.get("dag_run"), "conf", None) or {}) - CONF_KEYS
        if unknown:
            raise AirflowFailException(
                f"unknown conf key(s) {', '.join(sorted(unknown))}; accepted: {', '.join(sorted(CONF_KEYS))}"
            )
        params = context["params"]
        try:
            as_of = pruning.parse_as_of(params.get("as_of")) or datetime.now(UTC)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
        return as_of, bool(params.get("dry_run", False))

    def _batches(self, context: Context, plan: dict[str, Any]) -> list[dict[str, Any]]:
        return [self._load_state(context, BATCH_KEY.format(i)) for i in range(plan["batches"])]

    # -- the core's service call -----------------------------------------------------------------
    def submit_task(self, context: Context, state: dict[str, Any], submission_id: str) -> dict[str, Any]:
        ti = context["ti"]
        self.log.info("Deleting %d path(s), %d bytes on %s", len(state["paths"]), state["bytes"], state["endpoint"])
        return self.hook.submit_delete(
            state["endpoint"],
            state["paths"],
            submission_id=submission_id,
            label=f"{ti.dag_id} {ti.run_id} batch {state.get('index')}",
            recursive=True,
            ignore_missing=True,
        )

    # -- wait for one batch after another ---------------------------------------------------------
    def _wait_next(self, context: Context, plan: dict[str, Any]) -> dict[str, Any]:
        batches = self._batches(context, plan)
        for index, batch in enumerate(batches):
            if batch["status"] == "pending":
                # the batch being waited for is kept in the plan (defer kwargs do not survive every resume path)
                self._save_state(context, {**plan, "waiting": index}, PLAN_KEY)
                return self.wait(context, batch)
        return self._finish(pruning.close_report(plan["report"], batches), batches)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Record how the waited-for batch ended (its entries leave the manifest only now), wait for the next."""
        self.__dict__.pop("hook", None)
        plan = self._load_state(context, PLAN_KEY)
        key = BATCH_KEY.format(plan["waiting"])
        batch = self._load_state(context, key)
        if event.get("status") == "success":
            manifests.remove_entries(batch["keys"])
            batch["status"] = "succeeded"
            self.log.info(
                "Delete task %s SUCCEEDED: %d manifest entr(y/ies) removed", batch["task_id"], len(batch["keys"])
            )
        else:
            batch.update(status="failed", message=event.get("message") or str(event))
            self.log.error("Delete task %s failed, its entries stay: %s", batch["task_id"], batch["message"])
        self._save_state(context, batch, key)
        return self._wait_next(context, plan)

    def _finish(self, report: dict[str, Any], batches: list[dict[str, Any]]) -> dict[str, Any]:
        for line in pruning.summary_text(report).splitlines():
            self.log.info("%s", line)
        problem = pruning.failure_text(report, batches)
        if problem:
            raise pruning.PruneError(problem)
        return report
