"""Prune deletion manifests: verify each due entry's check copy, delete in batches, then drop the entry.

See docs/pruning.md for the manifest design (include/manifests.py) and the safety rules.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from als_provider.hooks.globus_transfer import GlobusTransferHook, describe_globus_error
from als_provider.triggers.globus_transfer import GlobusTaskTrigger
from als_provider.triggers.inline import first_event
from include import manifests
from include.manifests import BadEntry, ManifestEntry
from include.paths import EndpointPath

#: task_state_store keys: the plan (report + batch count), then one key per delete batch.
PLAN_KEY = "prune_plan"
BATCH_KEY = "prune_batch/{}"
LIVE_STATUSES = frozenset({"ACTIVE", "INACTIVE"})
#: Conf keys the prune DAG accepts (Airflow has no DAG-level additionalProperties: checked here).
CONF_KEYS = frozenset({"dry_run", "as_of"})
#: How many kept entries are listed by name in the summary (all are counted and logged).
EXAMPLES = 100


class PruneError(RuntimeError):
    """A prune run could not finish: a delete task failed or a check could not be made."""


@dataclass(frozen=True)
class Verdict:
    """What to do with one due path: ``delete`` (check copy verified), ``absent`` (nothing left) or ``keep``."""

    action: str
    reason: str = ""
    bytes: int = 0


@dataclass
class Plan:
    """Outcome of checking the due entries, before any delete."""

    deletable: dict[tuple[str, str], list[ManifestEntry]] = field(default_factory=dict)
    bytes: dict[tuple[str, str], int] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)
    kept: list[tuple[str, str, str]] = field(default_factory=list)  # (key, what, reason)
    errors: int = 0


def parse_as_of(value: Any) -> datetime | None:
    """``as_of`` Param: an ISO date or datetime (naive means UTC), or empty for now."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"as_of {value!r} is not an ISO 8601 date or datetime") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def reason_kind(reason: str) -> str:
    """The category of a keep reason (the text before the first colon) for counting."""
    return reason.split(":", 1)[0]


# -- checks ------------------------------------------------------------------------------------------
def _checksum(info: dict[str, Any]) -> str | None:
    value = info.get("checksum")
    return str(value).lower().split(":")[-1] if value else None


def _tree(hook: GlobusTransferHook, root: EndpointPath, limit: int) -> dict[str, dict[str, Any]]:
    """Every entry below a directory, keyed by its path relative to ``root``."""
    found: dict[str, dict[str, Any]] = {}
    pending = [PurePosixPath(".")]
    while pending:
        rel = pending.pop()
        where = root if str(rel) == "." else root.child(str(rel))
        for item in hook.ls(where):
            child = rel / item["name"] if str(rel) != "." else PurePosixPath(item["name"])
            found[str(child)] = item
            if len(found) > limit:
                raise PruneError(f"{root} holds more than {limit} entries; raise max_tree_entries to check it")
            if item.get("type") == "dir":
                pending.append(child)
    return found


def verify_copy(hook: GlobusTransferHook, entry: ManifestEntry, *, max_tree_entries: int = 200_000) -> Verdict:
    """Compare ``entry``'s target with its check copy through Globus (size; checksum where given).

    A directory matches when every file below it exists in the check copy with the same size (and checksum
    where both sides give one). The recorded size, when known, must still match the target (file size, or
    the total of a directory's files): a target that changed since it was scheduled is kept.
    """
    target = EndpointPath(entry.endpoint, entry.path)
    check = EndpointPath(entry.check_endpoint, entry.path)
    found = hook.stat(target)
    if found is None:
        return Verdict("absent", "already absent")
    kind = found.get("type")
    if kind not in ("file", "dir"):
        return Verdict("keep", f"unsupported type: {target} is {kind}")
    copy = hook.stat(check)
    if copy is None:
        return Verdict("keep", f"check copy missing: {check} does not exist")
    if copy.get("type") != kind:
        return Verdict("keep", f"check copy differs: {check} is a {copy.get('type')}, {target} a {kind}")
    if kind == "file":
        size = int(found.get("size") or 0)
        if entry.size is not None and size != entry.size:
            return Verdict("keep", f"target changed: {target} has {size} bytes, {entry.size} when scheduled")
        if int(copy.get("size") or 0) != size:
            return Verdict("keep", f"size differs: {check} has {copy.get('size')} bytes, {target} {size}")
        want = entry.checksum.lower().split(":")[-1] if entry.checksum else _checksum(found)
        have = _checksum(copy)
        if want and have and want != have:
            return Verdict("keep", f"checksum differs: {check} {have} != {want}")
        return Verdict("delete", bytes=size)
    mine, theirs = _tree(hook, target, max_tree_entries), _tree(hook, check, max_tree_entries)
    total = 0
    for rel, item in mine.items():
        other = theirs.get(rel)
        if other is None or other.get("type") != item.get("type"):
            return Verdict("keep", f"check copy incomplete: {check.child(rel)} missing")
        if item.get("type") == "file":
            if other.get("size") != item.get("size"):
                return Verdict(
                    "keep", f"size differs: {check.child(rel)} has {other.get('size')} bytes, not {item.get('size')}"
                )
            if _checksum(item) and _checksum(other) and _checksum(item) != _checksum(other):
                return Verdict("keep", f"checksum differs: {check.child(rel)}")
            total += int(item.get("size") or 0)
    if entry.size is not None and total != entry.size:
        return Verdict("keep", f"target changed: {target} holds {total} bytes, {entry.size} when scheduled")
    return Verdict("delete", bytes=total)


def check_entries(
    hook: GlobusTransferHook, items: Iterable[ManifestEntry | BadEntry], *, log, max_tree_entries: int = 200_000
) -> Plan:
    """Validate and verify every due entry; each distinct ``endpoint:path`` is checked once."""
    plan = Plan()
    seen: dict[tuple[str, str, str], Verdict] = {}
    for item in items:
        if isinstance(item, BadEntry):
            plan.kept.append((item.key, item.key, f"malformed: {item.reason}"))
            continue
        try:
            manifests.check_deletable(item.endpoint, item.path, item.check_endpoint, hook.endpoints)
        except ValueError as exc:  # edited by hand, or the endpoints changed since it was scheduled
            plan.kept.append((item.key, str(item), f"refused: {exc}"))
            continue
        ident = (item.endpoint, item.path, item.check_endpoint)
        verdict = seen.get(ident)
        if verdict is None:
            try:
                verdict = verify_copy(hook, item, max_tree_entries=max_tree_entries)
            except Exception as exc:  # a service error keeps the entry; the run then fails, visibly
                plan.errors += 1
                verdict = Verdict("keep", f"could not check: {describe_globus_error(exc)}")
            seen[ident] = verdict
        if verdict.action == "delete":
            plan.deletable.setdefault((item.endpoint, item.path), []).append(item)
            plan.bytes[(item.endpoint, item.path)] = verdict.bytes
        elif verdict.action == "absent":
            plan.absent.append(item.key)
        else:
            plan.kept.append((item.key, str(item), verdict.reason))
            if len(plan.kept) <= 1000:
                log.warning("Keeping %s (%s): %s", item, item.key, verdict.reason)
    keep_copies_that_check_each_other(plan, hook.endpoints, log=log)
    return plan


def keep_copies_that_check_each_other(plan: Plan, endpoints, *, log) -> None:
    """Never delete, in one run, every copy of a loop of checks (A checked against B and B against A).

    A due copy is safe to delete when one of its check copies survives this run, directly or through a
    chain of deletions that ends at a surviving copy; the copies of a loop with no way out are kept.
    Places are compared as (storage, collection path), since several endpoint names reach one file.
    """

    def place(endpoint: str, path: str) -> tuple[str, str]:
        found = endpoints[endpoint]
        return found.collection.storage, found.globus_path(path)

    doomed = {place(endpoint, path): (endpoint, path) for endpoint, path in plan.deletable}
    checks = {
        node: {place(entry.check_endpoint, entry.path) for entry in plan.deletable[doomed[node]]} for node in doomed
    }
    safe = {node for node, targets in checks.items() if any(target not in doomed for target in targets)}
    grew = True
    while grew:
        grew = False
        for node, targets in checks.items():
            if node not in safe and targets & safe:
                safe.add(node)
                grew = True
    for node in set(doomed) - safe:
        key = doomed[node]
        for entry in plan.deletable.pop(key):
            reason = "its check copy is due for deletion in this run too (a loop of checks): kept so a copy survives"
            plan.kept.append((entry.key, str(entry), reason))
            log.warning("Keeping %s (%s): %s", entry, entry.key, reason)
        plan.bytes.pop(key, None)


def make_batches(plan: Plan, batch_size: int) -> list[dict[str, Any]]:
    """One delete batch per endpoint per ``batch_size`` paths, paths sorted (parents before children)."""
    by_endpoint: dict[str, list[str]] = defaultdict(list)
    for endpoint, path in plan.deletable:
        by_endpoint[endpoint].append(path)
    batches = []
    for endpoint in sorted(by_endpoint):
        paths = sorted(by_endpoint[endpoint])
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            batches.append(
                {
                    "endpoint": endpoint,
                    "paths": chunk,
                    "keys": [e.key for p in chunk for e in plan.deletable[(endpoint, p)]],
                    "bytes": sum(plan.bytes[(endpoint, p)] for p in chunk),
                    "submission_id": None,
                    "task_id": None,
                    "status": "pending",
                    "message": None,
                }
            )
    return batches


# -- the operator ---------------------------------------------------------------------------------
class PruneManifestsOperator(BaseOperator):
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

    def __init__(
        self,
        *,
        batch_size: int = 500,
        globus_conn_id: str = GlobusTransferHook.default_conn_name,
        deferrable: bool = True,
        poll_interval: float = 10.0,
        delete_timeout: timedelta = timedelta(hours=6),
        max_tree_entries: int = 200_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = batch_size
        self.globus_conn_id = globus_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.delete_timeout = delete_timeout
        self.max_tree_entries = max_tree_entries

    @property
    def hook(self) -> GlobusTransferHook:
        return GlobusTransferHook(self.globus_conn_id)

    # -- entry ----------------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        store = context["task_state_store"]
        plan = store.get(PLAN_KEY)
        if plan:
            self.log.info("Resuming the plan of an earlier try (%s delete batch(es))", plan["batches"])
            return self._resume(context, plan)
        dag_run = context.get("dag_run")
        unknown = set(getattr(dag_run, "conf", None) or {}) - CONF_KEYS
        if unknown:  # bad input: retrying cannot help
            raise AirflowFailException(
                f"unknown conf key(s) {', '.join(sorted(unknown))}; accepted: {', '.join(sorted(CONF_KEYS))}"
            )
        params = context["params"]
        dry_run = bool(params.get("dry_run", False))
        try:
            as_of = parse_as_of(params.get("as_of")) or datetime.now(UTC)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
        hook = self.hook

        started = time.monotonic()
        items = list(manifests.due_entries(as_of))
        self.log.info(
            "%d due manifest entr(y/ies) as of %s (read in %.1fs)", len(items), as_of, time.monotonic() - started
        )
        checked = check_entries(hook, items, log=self.log, max_tree_entries=self.max_tree_entries)
        batches = make_batches(checked, self.batch_size)
        report = self._report(as_of, dry_run, len(items), checked, batches)
        if dry_run:
            report["would_delete"] = report.pop("to_delete")
            return self._finish(context, report, batches)
        if checked.absent:  # deleted by an earlier run that crashed before updating the manifest
            manifests.remove_entries(checked.absent)
        for index, batch in enumerate(batches):
            store.set(BATCH_KEY.format(index), batch)
        store.set(PLAN_KEY, {"batches": len(batches), "report": report})
        return self._resume(context, {"batches": len(batches), "report": report})

    def _resume(self, context: Context, plan: dict[str, Any]) -> dict[str, Any]:
        store, hook = context["task_state_store"], self.hook
        batches = [store.get(BATCH_KEY.format(i)) for i in range(plan["batches"])]
        for index, batch in enumerate(batches):
            if batch["status"] != "pending":
                continue
            if batch["task_id"]:
                status = hook.get_task(batch["task_id"]).get("status")
                if status in LIVE_STATUSES or status == "SUCCEEDED":
                    self.log.info("Re-attaching to delete task %s (%s)", batch["task_id"], status)
                    continue
                batch.update(task_id=None, submission_id=None)  # FAILED earlier: checked again by a new submission
            self._submit(hook, context, index, batch)
        return self._wait_next(context, plan, batches)

    def _submit(self, hook: GlobusTransferHook, context: Context, index: int, batch: dict[str, Any]) -> None:
        store = context["task_state_store"]
        if not batch["submission_id"]:
            batch["submission_id"] = hook.new_submission_id()
            store.set(BATCH_KEY.format(index), batch)
        ti = context["ti"]
        result = hook.submit_delete(
            batch["endpoint"],
            batch["paths"],
            submission_id=batch["submission_id"],
            label=f"{ti.dag_id} {ti.run_id} batch {index}",
            recursive=True,
            ignore_missing=True,
        )
        batch["task_id"] = result["task_id"]
        store.set(BATCH_KEY.format(index), batch)
        self.log.info(
            "Delete task %s (%s) on %s: %d path(s), %d bytes",
            batch["task_id"],
            result.get("code"),
            batch["endpoint"],
            len(batch["paths"]),
            batch["bytes"],
        )

    def _wait_next(self, context: Context, plan: dict[str, Any], batches: list[dict[str, Any]]) -> dict[str, Any]:
        for index, batch in enumerate(batches):
            if batch["status"] != "pending":
                continue
            trigger = GlobusTaskTrigger(
                batch["task_id"],
                globus_conn_id=self.globus_conn_id,
                poll_interval=self.poll_interval,
                deadline=time.time() + self.delete_timeout.total_seconds(),
            )
            # the batch being waited for is kept in the plan (defer kwargs do not survive every resume path)
            context["task_state_store"].set(PLAN_KEY, {**plan, "waiting": index})
            if self.deferrable:
                self.defer(
                    trigger=trigger,
                    method_name="execute_complete",
                    timeout=self.delete_timeout + timedelta(minutes=10),
                )
            return self.execute_complete(context, first_event(trigger))
        report = plan["report"]
        done = [b for b in batches if b["status"] == "succeeded"]
        failed = [b for b in batches if b["status"] == "failed"]
        report["deleted"] = sum(len(b["keys"]) for b in done)
        report["deleted_paths"] = sum(len(b["paths"]) for b in done)
        report["bytes_freed"] = sum(b["bytes"] for b in done)
        report["deleted_list"] = [f"{b['endpoint']}:{p}" for b in done for p in b["paths"]][:EXAMPLES]
        report["delete_tasks"] = [
            {k: b[k] for k in ("endpoint", "task_id", "status", "message")} | {"paths": len(b["paths"])}
            for b in batches
        ]
        for b in failed:
            report["kept"] += len(b["keys"])
            kind = "delete task failed"
            report["kept_reasons"][kind] = report["kept_reasons"].get(kind, 0) + len(b["keys"])
        return self._finish(context, report, batches)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        store = context["task_state_store"]
        plan = store.get(PLAN_KEY)
        index = plan["waiting"]
        batches = [store.get(BATCH_KEY.format(i)) for i in range(plan["batches"])]
        batch = batches[index]
        if event.get("status") == "success":
            manifests.remove_entries(batch["keys"])  # only now: the delete task SUCCEEDED
            batch["status"] = "succeeded"
            self.log.info(
                "Delete task %s SUCCEEDED: %d manifest entr(y/ies) removed", batch["task_id"], len(batch["keys"])
            )
        else:
            batch.update(status="failed", message=event.get("message") or str(event))
            self.log.error("Delete task %s failed, its entries stay: %s", batch["task_id"], batch["message"])
        store.set(BATCH_KEY.format(index), batch)
        return self._wait_next(context, plan, batches)

    # -- summary --------------------------------------------------------------------------------
    def _report(self, as_of, dry_run, due, checked: Plan, batches) -> dict[str, Any]:
        return {
            "as_of": as_of.isoformat(),
            "dry_run": dry_run,
            "due": due,
            "to_delete": [f"{b['endpoint']}:{p}" for b in batches for p in b["paths"]][:EXAMPLES],
            "to_delete_count": sum(len(b["keys"]) for b in batches),
            "to_delete_bytes": sum(b["bytes"] for b in batches),
            "deleted": 0,
            "deleted_paths": 0,
            "bytes_freed": 0,
            "already_absent": len(checked.absent),
            "kept": len(checked.kept),
            "kept_reasons": dict(Counter(reason_kind(reason) for _, _, reason in checked.kept)),
            "kept_examples": [f"{what}: {reason}" for _, what, reason in checked.kept[:EXAMPLES]],
            "check_errors": checked.errors,
        }

    def _finish(self, context: Context, report: dict[str, Any], batches: Sequence[dict[str, Any]]) -> dict[str, Any]:
        note = summary_text(report)
        for line in note.splitlines():
            self.log.info("%s", line)
        failed = [b for b in batches if b["status"] == "failed"]
        if failed or report["check_errors"]:
            raise PruneError(
                f"{len(failed)} delete task(s) failed and {report['check_errors']} check(s) could not be made; "
                f"the entries stay for the next run. {note}"
            )
        return report


def summary_text(report: dict[str, Any]) -> str:
    """The run's summary as Markdown: what was deleted, what was kept and why, bytes freed."""
    mode = "dry run: nothing deleted" if report["dry_run"] else "deleted"
    lines = [f"**prune as of {report['as_of']}** ({mode})", f"- due entries: {report['due']}"]
    if report["dry_run"]:
        lines.append(f"- would delete: {report['to_delete_count']} entr(y/ies), {report['to_delete_bytes']} bytes")
        lines += [f"  - {path}" for path in report.get("would_delete", [])]
    else:
        lines.append(
            f"- deleted: {report['deleted']} entr(y/ies), {report['deleted_paths']} path(s), "
            f"{report['bytes_freed']} bytes freed"
        )
        lines += [f"  - {path}" for path in report.get("deleted_list", [])]
    lines.append(f"- already absent (entry dropped): {report['already_absent']}")
    lines.append(f"- kept: {report['kept']}")
    lines += [f"  - {kind}: {count}" for kind, count in sorted(report["kept_reasons"].items())]
    lines += [f"  - {example}" for example in report["kept_examples"]]
    for task in report.get("delete_tasks", []):
        if task["status"] != "succeeded":
            lines.append(f"- delete task {task['task_id']} on {task['endpoint']} {task['status']}: {task['message']}")
    return "\n".join(lines)
