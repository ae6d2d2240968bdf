"""Globus deletes: :class:`GlobusDeleteOperator` (the files of a pattern in some folders) and
:class:`PruneManifestsOperator` (plan with include.pruning, compare content in side folders, delete in batches).

The planner (verdicts, loop guard, held copies, batches, summary) is include/pruning.py; this module reads the
due entries, runs the content comparison and the delete batches as Globus tasks on the resumable-remote core
(every submission id stored before submitting, every wait deferred) and updates the manifest. Nothing here
writes into a check copy, a long-term copy or a target: the comparison only writes side folders on the
target's own collection and deletes them afterwards. See docs/pruning.md for the design and the safety rules.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from als_provider.hooks.globus_transfer import GlobusTransferHook, describe_globus_error
from als_provider.operators.base import LIVE
from als_provider.operators.globus_transfer import GlobusTaskOperator, GlobusTransferError, delete_work
from als_provider.triggers.globus_transfer import GlobusTaskTrigger
from als_provider.triggers.inline import first_event
from include import catalogue_backlog, manifests, pruning
from include.paths import EndpointPath

#: task_state_store keys: the plan, each comparison group, and one key per Globus task of a round
#: (``copy``/``sync`` per group, ``cleanup`` per side folder, ``delete`` per batch).
PLAN_KEY = "prune_plan"
GROUP_KEY = "prune/{}/group/{}"
TASK_KEY = "prune/{}/{}/{}"
#: Conf keys the prune DAG accepts (Airflow has no DAG-level additionalProperties: checked here).
CONF_KEYS = frozenset({"dry_run", "as_of"})


# -- the comparison's Globus tasks (one way, shared by the operator and the in-process comparison) --------
def submit_step(
    hook: GlobusTransferHook, group: dict[str, Any], kind: str, *, submission_id: str, label: str
) -> dict[str, Any]:
    """Submit one comparison task of ``group`` (include.pruning.verify_groups): ``copy`` (check copy → side
    folder, checksum-verified) or ``sync`` (target → side folder, ``sync_level="checksum"``). Either only
    reads the copies; the destination is always a side folder on the target's collection."""
    target_endpoint, check_endpoint = group["target_endpoint"], group["check_endpoint"]
    if kind == "copy":
        moves = [(EndpointPath(check_endpoint, check), EndpointPath(target_endpoint, side))
                 for _, _, check, side in group["items"]]  # fmt: skip
    elif kind == "sync":
        moves = [(EndpointPath(target_endpoint, target), EndpointPath(target_endpoint, side))
                 for _, target, _, side in group["items"]]  # fmt: skip
    else:
        raise ValueError(f"unknown comparison step {kind!r}")
    for _, destination in moves:
        if destination.path.parts[:2] != tuple(group["side_root"].split("/")):
            raise pruning.PruneError(f"refusing to write {destination}: not in the side folder {group['side_root']}")
    return hook.submit_transfer(
        moves[0][0],
        moves[0][1],
        submission_id=submission_id,
        recursive=group["folder"],
        label=label,
        sync_level=None if kind == "copy" else "checksum",
        verify_checksum=True,
        more=moves[1:],
    )


def submit_cleanup(
    hook: GlobusTransferHook, endpoint: str, side_root: str, *, submission_id: str, label: str
) -> dict[str, Any]:
    """Delete one round's side folder (``.als-verify/<tag>``) on ``endpoint``; nothing else is ever named."""
    parts = side_root.split("/")
    if len(parts) != 2 or parts[0] != pruning.SIDE_FOLDER:
        raise pruning.PruneError(f"refusing to delete {endpoint}:{side_root}: not a side folder")
    return hook.submit_delete(
        endpoint, [side_root], submission_id=submission_id, label=label, recursive=True, ignore_missing=True
    )


def results_of(
    hook: GlobusTransferHook, group: dict[str, Any], copy: dict[str, Any], sync: dict[str, Any]
) -> dict[str, str]:
    """``{pair key: "" | "content differs: ..." | "could not check: ..."}`` for every pair of ``group`` once its
    two tasks ended (``copy``/``sync``: ``status``, ``task_id``, ``message``). Fails closed: a task that did not
    succeed, or a page of the sync's transferred files that cannot be read, leaves its pairs unchecked."""
    keys = [item[0] for item in group["items"]]
    if sync.get("status") != "succeeded":
        failed = copy if copy.get("status") != "succeeded" else sync
        why = f"{failed['kind']} task {failed.get('task_id')} {failed.get('status')}: {failed.get('message')}"
        return dict.fromkeys(keys, f"could not check: content: {why}")
    try:
        transferred = hook.transferred(sync["task_id"], group["target_endpoint"])
    except Exception as exc:
        why = f"the files task {sync['task_id']} transferred could not be read: {describe_globus_error(exc)}"
        return dict.fromkeys(keys, f"could not check: content: {why}")
    return pruning.group_results(group, transferred, sync["task_id"])


class GlobusDeleteOperator(GlobusTaskOperator):
    """Delete the files named like ``pattern`` (fnmatch) in each of ``folders`` (endpoint → folder): one Globus
    delete task per endpoint, waited for deferred, then the folder is listed again and none may remain.

    Returns ``{endpoint: [names deleted]}`` (endpoints with nothing to delete are left out). A retry re-attaches
    to a delete task still running and skips the endpoints already verified. ``delete_timeout`` bounds each wait.
    """

    template_fields: Sequence[str] = ("folders", "pattern")
    ui_color = "#d9534f"
    state_key = "globus_delete"
    error_class = GlobusTransferError

    def __init__(
        self,
        *,
        folders: dict[str, str],
        pattern: str,
        globus_conn_id: str = GlobusTransferHook.default_conn_name,
        delete_timeout: timedelta = timedelta(minutes=10),
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=globus_conn_id, wait_timeout=delete_timeout, **kwargs)
        self.folders, self.pattern = folders, pattern

    def begin(self, context: Context) -> dict[str, list[str]]:
        removed: dict[str, list[str]] = {}
        for endpoint, folder in self.folders.items():
            key = f"{self.state_key}/{endpoint}"
            if (done := self._load_state(context, key)).get("verified"):
                removed[endpoint] = done["names"]
                continue
            names = self._matching(endpoint, folder)
            if names:
                label = f"{context['ti'].dag_id} {context['ti'].task_id} {endpoint}"
                work = delete_work(endpoint, [f"{folder}/{name}" for name in names], label, recursive=False)
                return self.run_step(context, key, {**work, "folder": folder, "names": names})
        return removed

    def resume(self, context: Context, key: str | None, event: dict[str, Any]) -> dict[str, list[str]]:
        work = self._load_state(context, key)
        where = f"{work['endpoint']}:{work['folder']}"
        if event.get("status") != "success":
            raise GlobusTransferError(f"deleting {len(work['names'])} file(s) in {where}: {event.get('message')}")
        left = sorted(set(self._matching(work["endpoint"], work["folder"])) & set(work["names"]))
        if left:
            raise GlobusTransferError(f"{where}: {', '.join(left)} remain after delete task {work['task_id']}")
        self.log.info("%s: removed %d file(s) (%s), verified gone", where, len(work["names"]), work["task_id"])
        self._save_state(context, {**work, "verified": True}, key)
        return self.begin(context)

    def _matching(self, endpoint: str, folder: str) -> list[str]:
        """The names in ``endpoint:folder`` that match the pattern (none if the folder is missing)."""
        try:
            entries = self.hook.listdir(EndpointPath(endpoint, folder))
        except FileNotFoundError:
            return []
        return [entry["name"] for entry in entries if fnmatch.fnmatchcase(entry["name"], self.pattern)]


class SideFolderComparison:
    """An :class:`include.pruning.ContentVerifier` that runs the whole comparison in this process (each wait
    through :class:`GlobusTaskTrigger`, inline): for the months simulation, the benchmarks and direct checks.
    The prune operator runs the same tasks (:func:`submit_step`, :func:`submit_cleanup`, :func:`results_of`)
    with every wait deferred. ``tasks``: the Globus tasks it ran; ``cleanup_failures``: side folders left."""

    def __init__(
        self,
        hook: GlobusTransferHook,
        *,
        label: str,
        timeout: timedelta = timedelta(hours=6),
        poll_interval: float = 0.2,
    ) -> None:
        self.hook, self.label, self.timeout, self.poll_interval = hook, label, timeout, poll_interval
        self.tasks: list[str] = []
        self.cleanup_failures: list[str] = []

    def differing(self, pairs: Sequence[pruning.Pair]) -> dict[int, str]:
        tag = pruning.side_tag(self.label, time.time_ns())
        groups, results = pruning.verify_groups(pairs, tag, self.hook.endpoints)
        try:
            steps: dict[str, list[dict[str, Any]]] = {}
            for kind in ("copy", "sync"):  # every group's task runs side by side; waited for in turn
                steps[kind] = [
                    self._submit(kind, lambda sid, kind=kind, group=group: submit_step(
                        self.hook, group, kind, submission_id=sid, label=f"{self.label} {kind}"))
                    if kind == "copy" or steps["copy"][i]["status"] == "succeeded"
                    else {"kind": kind, "status": "not run", "task_id": None}
                    for i, group in enumerate(groups)
                ]  # fmt: skip
                for step in steps[kind]:
                    self._wait(step)
            for i, group in enumerate(groups):
                results.update(results_of(self.hook, group, steps["copy"][i], steps["sync"][i]))
        finally:
            cleanups = [
                (f"{endpoint}:{side_root}", self._submit("cleanup", lambda sid, endpoint=endpoint, side_root=side_root:
                    submit_cleanup(self.hook, endpoint, side_root, submission_id=sid, label=f"{self.label} cleanup")))
                for endpoint, side_root in sorted({(g["target_endpoint"], g["side_root"]) for g in groups})
            ]  # fmt: skip
            for where, step in cleanups:
                if self._wait(step)["status"] != "succeeded":
                    self.cleanup_failures.append(f"{where}: {step['message']}")
        return pruning.StoredContent(results).differing(pairs)

    def _submit(self, kind: str, submit: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
        try:
            task_id = submit(self.hook.new_submission_id())["task_id"]
        except Exception as exc:
            return {"kind": kind, "status": "failed", "task_id": None, "message": describe_globus_error(exc)}
        self.tasks.append(task_id)
        return {"kind": kind, "status": "pending", "task_id": task_id}

    def _wait(self, step: dict[str, Any]) -> dict[str, Any]:
        if step["status"] == "pending":
            trigger = GlobusTaskTrigger(
                step["task_id"],
                globus_conn_id=self.hook.globus_conn_id,
                poll_interval=self.poll_interval,
                deadline=time.time() + self.timeout.total_seconds(),
            )
            event = first_event(trigger)
            ok = event.get("status") == "success"
            step.update(status="succeeded" if ok else "failed", message=None if ok else event.get("message"))
        return step


class PruneManifestsOperator(GlobusTaskOperator):
    """Delete every due manifest entry whose check copy is verified, one Globus delete task per batch.

    Reads ``dry_run`` and ``as_of`` (refused beyond now) from the run's Params. A round:

    1. every due entry is re-validated and compared with its record and its check copy by one listing per
       folder (include.pruning.check_entries);
    2. pairs on checksum-capable storage are compared by content in side folders on the target's collection
       (:func:`submit_step`: check copy → side folder, then target → side folder by checksum; a file the sync
       transferred differs), then the side folders are deleted (:func:`submit_cleanup`);
    3. the entries are checked again with those results: a pair whose content differs keeps **both** copies
       (the run fails naming them); verified paths are deleted in batches of ``batch_size`` per endpoint
       (``ignore_missing``), and an entry leaves the manifest only after its batch's task SUCCEEDED.

    Every Globus task's submission id is kept in the task state store before submitting, and every wait is
    deferred (:class:`GlobusTaskTrigger`): a retry re-attaches to the tasks already submitted. A round that
    ended with checks that could not be made (a service error) fails the run; its retry checks those entries
    again in a new round (the rest of the plan is not redone). A dry run lists and reports only: it starts no
    Globus task (its would-delete list says ``content not verified (dry run)``) and changes no entry.
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
        group_items: int = pruning.GROUP_ITEMS,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=globus_conn_id, wait_timeout=delete_timeout, **kwargs)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size, self.max_tree_entries, self.group_items = batch_size, max_tree_entries, group_items

    # -- rounds ----------------------------------------------------------------------------------------
    def begin(self, context: Context) -> dict[str, Any]:
        plan = self._load_state(context, PLAN_KEY)
        if not plan:
            as_of, dry_run = self._params(context)
            plan = {"as_of": as_of.isoformat(), "dry_run": dry_run, "round": 0, "only": None,
                    "created": time.time_ns()}  # fmt: skip
            return self._check(context, plan)
        if plan.get("stage") != "done":
            self.log.info("Resuming round %s of an earlier try (%s)", plan["round"], plan.get("stage"))
            return self._next(context, plan)
        if plan.get("recheck"):
            self.log.info(
                "An earlier try could not check %d entr(y/ies): checking them again (round %d)",
                len(plan["recheck"]),
                plan["round"] + 1,
            )
            fresh = {k: plan[k] for k in ("as_of", "dry_run", "created")}
            fresh.update(round=plan["round"] + 1, only=plan["recheck"], earlier=plan["report"])
            return self._check(context, fresh)
        return self._finish(plan["report"])  # the earlier try's failure stands (nothing to check again)

    def _params(self, context: Context) -> tuple[datetime, bool]:
        """``as_of`` and ``dry_run`` of this run; bad input fails at once (retrying cannot help)."""
        unknown = set(getattr(context.get("dag_run"), "conf", None) or {}) - CONF_KEYS
        if unknown:
            raise AirflowFailException(
                f"unknown conf key(s) {', '.join(sorted(unknown))}; accepted: {', '.join(sorted(CONF_KEYS))}"
            )
        params = context["params"]
        try:
            as_of = pruning.parse_as_of(params.get("as_of"))
            as_of = datetime.now(UTC) if as_of is None else pruning.refuse_future_as_of(as_of)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
        return as_of, bool(params.get("dry_run", False))

    def _items(self, plan: dict[str, Any]) -> list[manifests.ManifestEntry | manifests.BadEntry]:
        if plan.get("only") is not None:
            return list(manifests.load_entries(plan["only"]))
        return list(manifests.due_entries(datetime.fromisoformat(plan["as_of"])))

    def _check_entries(self, items: list, content: pruning.ContentVerifier) -> pruning.Plan:
        return pruning.check_entries(
            self.hook,
            items,
            self.hook.endpoints,
            content=content,
            log=self.log,
            describe_error=describe_globus_error,
            max_tree_entries=self.max_tree_entries,
            held=catalogue_backlog.held_copies(),  # a copy an owed SciCat registration still reads stays
        )

    def _check(self, context: Context, plan: dict[str, Any]) -> dict[str, Any]:
        """List and compare by listing; then compare content (deferred), or go straight to the deletes."""
        started = time.monotonic()
        items = self._items(plan)
        self.log.info("%d due manifest entr(y/ies) as of %s (round %d)", len(items), plan["as_of"], plan["round"])
        if plan["dry_run"]:  # nothing is compared: a comparison writes side folders
            checked = self._check_entries(items, pruning.NotCompared())
            batches = pruning.make_batches(checked, self.batch_size)
            return self._finish(pruning.plan_report(self._as_of(plan), True, len(items), checked, batches))
        pairs = pruning.CollectPairs()
        checked = self._check_entries(items, pairs)
        self.log.info(
            "Listed %d folder(s) in %.1fs: %d pair(s) to compare by content",
            checked.listings,
            time.monotonic() - started,
            len(pairs.pairs),
        )
        if not pairs.pairs:
            return self._to_delete(context, plan, checked, len(items))
        ti = context["ti"]
        tag = pruning.side_tag(ti.dag_id, ti.run_id, plan["created"], plan["round"])
        groups, refused = pruning.verify_groups(pairs.pairs, tag, self.hook.endpoints, max_items=self.group_items)
        round_ = plan["round"]
        for group in groups:
            index = group["index"]
            self._save_state(context, group, GROUP_KEY.format(round_, index))
            for kind, after in (("copy", None), ("sync", TASK_KEY.format(round_, "copy", index))):
                task = {"kind": kind, "group": index, "status": "pending", "after": after}
                self._save_state(context, task, TASK_KEY.format(round_, kind, index))
        plan.update(stage="verify", groups=len(groups), refused=refused, due=len(items), tag=tag)
        self._save_state(context, plan, PLAN_KEY)
        return self._next(context, plan)

    def _to_delete(
        self, context: Context, plan: dict[str, Any], checked: pruning.Plan, due: int, cleanup: Sequence[str] = ()
    ) -> dict[str, Any]:
        batches = pruning.make_batches(checked, self.batch_size)
        report = pruning.plan_report(self._as_of(plan), False, due, checked, batches)
        report.update(cleanup_failures=list(cleanup), content_tasks=2 * plan.get("groups", 0),
                      cleanup_tasks=plan.get("cleanups", 0))  # fmt: skip
        if checked.absent:  # deleted by an earlier run that crashed before updating the manifest
            manifests.remove_entries(checked.absent)
        for batch in batches:
            batch.update(kind="delete")
            self._save_state(context, batch, TASK_KEY.format(plan["round"], "delete", batch["index"]))
        plan.update(stage="delete", batches=len(batches), report=report, recheck=pruning.recheck_keys(checked))
        self._save_state(context, plan, PLAN_KEY)
        return self._next(context, plan)

    @staticmethod
    def _as_of(plan: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(plan["as_of"])

    # -- the round's Globus tasks: start what can start, wait for one after another ----------------------
    def _task_keys(self, plan: dict[str, Any]) -> list[str]:
        round_, stage = plan["round"], plan["stage"]
        if stage == "verify":
            return [TASK_KEY.format(round_, kind, i) for i in range(plan["groups"]) for kind in ("copy", "sync")]
        count = plan["cleanups"] if stage == "cleanup" else plan["batches"]
        return [TASK_KEY.format(round_, stage, i) for i in range(count)]

    def _next(self, context: Context, plan: dict[str, Any]) -> dict[str, Any]:
        """Start every task of the stage that can start, then take the ended ones in order; defer on the first
        one still running (its trigger resumes :meth:`resume`). No wait happens in the worker."""
        keys = self._task_keys(plan)
        while True:
            for key in keys:
                task = self._load_state(context, key)
                if task["status"] != "pending" or task.get("task_id"):
                    continue
                if task.get("after"):
                    before = self._load_state(context, task["after"])
                    if before["status"] == "pending":
                        continue
                    if before["status"] != "succeeded":
                        task.update(status="skipped", message=f"not started: {before['kind']} {before['status']}")
                        self._save_state(context, task, key)
                        continue
                self.start(context, key)  # submission id stored first; a retry's submit is deduplicated
            running = next(
                ((key, task) for key in keys
                 if (task := self._load_state(context, key))["status"] == "pending" and task.get("task_id")),
                None,
            )  # fmt: skip
            if running is None:
                return self._stage_done(context, plan)
            key, task = running
            if self.status_of(task) == LIVE:
                return self.wait(context, task, key)
            self._record(context, key, task, first_event(self.make_trigger(task)))  # ended: its first poll says how

    def resume(self, context: Context, key: str | None, event: dict[str, Any]) -> dict[str, Any]:
        """Record how the waited-for task ended, then go on with the stage."""
        plan = self._load_state(context, PLAN_KEY)
        self._record(context, key, self._load_state(context, key), event)
        return self._next(context, plan)

    def _record(self, context: Context, key: str, task: dict[str, Any], event: dict[str, Any]) -> None:
        """Keep how a task ended; a delete batch's entries leave the manifest only when it SUCCEEDED."""
        ok = event.get("status") == "success"
        task.update(status="succeeded" if ok else "failed", message=None if ok else event.get("message") or str(event))
        if task["kind"] == "delete" and ok:
            manifests.remove_entries(task["keys"])
            self.log.info(
                "Delete task %s SUCCEEDED: %d manifest entr(y/ies) removed", task["task_id"], len(task["keys"])
            )
        elif not ok:
            self.log.error("%s task %s failed: %s", task["kind"], task["task_id"], task["message"])
        self._save_state(context, task, key)

    def _stage_done(self, context: Context, plan: dict[str, Any]) -> dict[str, Any]:
        round_ = plan["round"]
        if plan["stage"] == "verify":
            endpoints: set[str] = set()
            for index in range(plan["groups"]):
                group = self._load_state(context, GROUP_KEY.format(round_, index))
                copy, sync = (self._load_state(context, TASK_KEY.format(round_, k, index)) for k in ("copy", "sync"))
                group["results"] = results_of(self.hook, group, copy, sync)
                self._save_state(context, group, GROUP_KEY.format(round_, index))
                endpoints.add(group["target_endpoint"])
            for index, endpoint in enumerate(sorted(endpoints)):
                side_root = f"{pruning.SIDE_FOLDER}/{plan['tag']}"
                task = {"kind": "cleanup", "endpoint": endpoint, "path": side_root, "status": "pending"}
                self._save_state(context, task, TASK_KEY.format(round_, "cleanup", index))
            plan.update(stage="cleanup", cleanups=len(endpoints))
            self._save_state(context, plan, PLAN_KEY)
            return self._next(context, plan)
        if plan["stage"] == "cleanup":
            failures = []
            for key in self._task_keys(plan):
                task = self._load_state(context, key)
                if task["status"] != "succeeded":
                    failures.append(
                        f"{task['endpoint']}:{task['path']} (task {task.get('task_id')}): {task['message']}"
                    )
            results = dict(plan["refused"])
            for index in range(plan["groups"]):
                results.update(self._load_state(context, GROUP_KEY.format(round_, index))["results"])
            items = self._items(plan)
            checked = self._check_entries(items, pruning.StoredContent(results))
            return self._to_delete(context, plan, checked, len(items), failures)
        batches = [self._load_state(context, key) for key in self._task_keys(plan)]
        report = pruning.close_report(plan["report"], batches)
        if plan.get("earlier"):
            report = pruning.merge_reports(plan["earlier"], report, rechecked=len(plan["only"] or ()))
        plan.update(stage="done", report=report)
        self._save_state(context, plan, PLAN_KEY)
        return self._finish(report)

    # -- the core's service call -----------------------------------------------------------------
    def submit_task(self, context: Context, state: dict[str, Any], submission_id: str) -> dict[str, Any]:
        ti = context["ti"]
        label = f"{ti.dag_id} {ti.run_id}"
        kind = state.get("kind", "delete")
        if kind in ("copy", "sync"):
            plan = self._load_state(context, PLAN_KEY)
            group = self._load_state(context, GROUP_KEY.format(plan["round"], state["group"]))
            self.log.info("Comparing %d pair(s) (%s, group %d)", len(group["items"]), kind, state["group"])
            return submit_step(self.hook, group, kind, submission_id=submission_id, label=f"{label} {kind}")
        if kind == "cleanup":
            self.log.info("Deleting the side folder %s:%s", state["endpoint"], state["path"])
            return submit_cleanup(
                self.hook, state["endpoint"], state["path"], submission_id=submission_id, label=f"{label} cleanup"
            )
        self.log.info("%d bytes in batch %s", state["bytes"], state.get("index"))
        return super().submit_task(
            context, {**state, "kind": "delete", "label": f"{label} batch {state.get('index')}"}, submission_id
        )

    def _finish(self, report: dict[str, Any]) -> dict[str, Any]:
        for line in pruning.summary_text(report).splitlines():
            self.log.info("%s", line)
        problem = pruning.failure_text(report, [])
        if problem:
            raise pruning.PruneError(problem)
        return report
