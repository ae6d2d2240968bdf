"""PruneManifestsOperator: plan with include.pruning, delete in Globus batches, drop the entries that went.

The planner (verdicts, verification, loop guard, batches, summary) is include/pruning.py; this module reads
the due entries, submits one Globus delete task per batch through the resumable-remote core and updates the
manifest. See docs/pruning.md for the design and the safety rules.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from als_provider.hooks.globus_transfer import GlobusTransferHook, describe_globus_error
from als_provider.operators.globus_transfer import GlobusTaskOperator
from include import manifests, pruning

# Moved to include.pruning; still importable from here for code outside the provider that has not moved yet.

#: task_state_store keys: the plan (report + batch count), then one key per delete batch.
PLAN_KEY = "prune_plan"
BATCH_KEY = "prune_batch/{}"
#: Conf keys the prune DAG accepts (Airflow has no DAG-level additionalProperties: checked here).
CONF_KEYS = frozenset({"dry_run", "as_of"})


class PruneManifestsOperator(GlobusTaskOperator):
    """Delete every due manifest entry whose check copy is verified, one Globus delete task per batch.

    Reads ``dry_run`` and ``as_of`` from the run's Params. For each due entry: the path is re-validated
    (inside its endpoint, not a protected long-term copy, check copy elsewhere); the target and check copy
    are compared through Globus; a mismatch keeps the entry and is reported. Verified paths are deleted in
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
            checked = pruning.check_entries(
                self.hook,
                items,
                self.hook.endpoints,
                log=self.log,
                describe_error=describe_globus_error,
                max_tree_entries=self.max_tree_entries,
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
