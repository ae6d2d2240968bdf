"""The prune planner: which due manifest entries may be deleted, in which batches, and the run's summary.

Plain Python (no Airflow, no provider): it looks at the copies through anything with the Globus hook's
``stat`` and ``ls`` (:class:`Listing`), so tests give it an in-memory listing. The prune operator
(``als_provider.operators.globus_delete``) reads the due entries, plans here, deletes and reports.
See docs/pruning.md for the manifest design (include/manifests.py) and the safety rules.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, Protocol

from include import manifests
from include.endpoints import Endpoints
from include.manifests import BadEntry, ManifestEntry
from include.paths import EndpointPath

#: How many kept entries are listed by name in the summary (all are counted and logged).
EXAMPLES = 100
#: How many kept entries are logged one by one.
LOGGED = 1000
LOOP_REASON = "its check copy is due for deletion in this run too (a loop of checks): kept so a copy survives"
_log = logging.getLogger(__name__)


class PruneError(RuntimeError):
    """A prune run could not finish: a delete task failed or a check could not be made."""


class Listing(Protocol):
    """What the planner needs of a storage service (GlobusTransferHook has it)."""

    def stat(self, where: EndpointPath) -> dict[str, Any] | None:
        """``{name, type, size, last_modified, checksum?}`` of a path, or ``None`` if it does not exist."""

    def ls(self, where: EndpointPath) -> list[dict[str, Any]]:
        """The entries of a directory, each like :meth:`stat`'s answer."""


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


def _tree(listing: Listing, root: EndpointPath, limit: int) -> dict[str, dict[str, Any]]:
    """Every entry below a directory, keyed by its path relative to ``root``."""
    found: dict[str, dict[str, Any]] = {}
    pending = [PurePosixPath(".")]
    while pending:
        rel = pending.pop()
        where = root if str(rel) == "." else root.child(str(rel))
        for item in listing.ls(where):
            child = rel / item["name"] if str(rel) != "." else PurePosixPath(item["name"])
            found[str(child)] = item
            if len(found) > limit:
                raise PruneError(f"{root} holds more than {limit} entries; raise max_tree_entries to check it")
            if item.get("type") == "dir":
                pending.append(child)
    return found


def verify_copy(listing: Listing, entry: ManifestEntry, *, max_tree_entries: int = 200_000) -> Verdict:
    """Compare ``entry``'s target with its check copy (size; checksum where given).

    A directory matches when every file below it exists in the check copy with the same size (and checksum
    where both sides give one). The recorded size, when known, must still match the target (file size, or
    the total of a directory's files): a target that changed since it was scheduled is kept.
    """
    target = EndpointPath(entry.endpoint, entry.path)
    check = EndpointPath(entry.check_endpoint, entry.path)
    found = listing.stat(target)
    if found is None:
        return Verdict("absent", "already absent")
    kind = found.get("type")
    if kind not in ("file", "dir"):
        return Verdict("keep", f"unsupported type: {target} is {kind}")
    copy = listing.stat(check)
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
    mine, theirs = _tree(listing, target, max_tree_entries), _tree(listing, check, max_tree_entries)
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
    listing: Listing,
    items: Iterable[ManifestEntry | BadEntry],
    endpoints: Endpoints,
    *,
    log: logging.Logger | logging.LoggerAdapter = _log,
    describe_error: Callable[[BaseException], str] = lambda exc: f"{type(exc).__name__}: {exc}",
    max_tree_entries: int = 200_000,
) -> Plan:
    """Validate and verify every due entry; each distinct ``endpoint:path`` is checked once.

    An entry that is malformed, or whose paths ``endpoints`` refuse (edited by hand, or the endpoints changed
    since it was scheduled), is kept; so is one whose check fails with an error (counted in ``errors``: the
    run then fails, visibly), named by ``describe_error``.
    """
    plan = Plan()
    seen: dict[tuple[str, str, str], Verdict] = {}
    for item in items:
        if isinstance(item, BadEntry):
            plan.kept.append((item.key, item.key, f"malformed: {item.reason}"))
            continue
        try:
            manifests.check_deletable(item.endpoint, item.path, item.check_endpoint, endpoints)
        except ValueError as exc:
            plan.kept.append((item.key, str(item), f"refused: {exc}"))
            continue
        ident = (item.endpoint, item.path, item.check_endpoint)
        verdict = seen.get(ident)
        if verdict is None:
            try:
                verdict = verify_copy(listing, item, max_tree_entries=max_tree_entries)
            except Exception as exc:
                plan.errors += 1
                verdict = Verdict("keep", f"could not check: {describe_error(exc)}")
            seen[ident] = verdict
        if verdict.action == "delete":
            plan.deletable.setdefault((item.endpoint, item.path), []).append(item)
            plan.bytes[(item.endpoint, item.path)] = verdict.bytes
        elif verdict.action == "absent":
            plan.absent.append(item.key)
        else:
            plan.kept.append((item.key, str(item), verdict.reason))
            if len(plan.kept) <= LOGGED:
                log.warning("Keeping %s (%s): %s", item, item.key, verdict.reason)
    keep_copies_that_check_each_other(plan, endpoints, log=log)
    return plan


def keep_copies_that_check_each_other(
    plan: Plan, endpoints: Endpoints, *, log: logging.Logger | logging.LoggerAdapter = _log
) -> None:
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
            plan.kept.append((entry.key, str(entry), LOOP_REASON))
            log.warning("Keeping %s (%s): %s", entry, entry.key, LOOP_REASON)
        plan.bytes.pop(key, None)


# -- batches -----------------------------------------------------------------------------------------
def make_batches(plan: Plan, batch_size: int) -> list[dict[str, Any]]:
    """One delete batch per endpoint per ``batch_size`` paths, paths sorted (parents before children).

    A batch is a JSON-able dict: ``index``, ``endpoint``, ``paths``, ``keys`` (its manifest entries),
    ``bytes``, and its progress: ``submission_id``, ``task_id``, ``status`` (``pending``, ``succeeded`` or
    ``failed``) and ``message``.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
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
                    "index": len(batches),
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


# -- the report --------------------------------------------------------------------------------------
def plan_report(
    as_of: datetime, dry_run: bool, due: int, checked: Plan, batches: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The run's report before any delete (a dry run's list is ``would_delete``, a real run's ``to_delete``)."""
    report = {
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
    if dry_run:
        report["would_delete"] = report.pop("to_delete")
    return report


def close_report(report: dict[str, Any], batches: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The report once every batch ended: what was deleted and freed; a failed batch's entries count as kept."""
    report = dict(report, kept_reasons=dict(report["kept_reasons"]))
    done = [b for b in batches if b["status"] == "succeeded"]
    report["deleted"] = sum(len(b["keys"]) for b in done)
    report["deleted_paths"] = sum(len(b["paths"]) for b in done)
    report["bytes_freed"] = sum(b["bytes"] for b in done)
    report["deleted_list"] = [f"{b['endpoint']}:{p}" for b in done for p in b["paths"]][:EXAMPLES]
    report["delete_tasks"] = [
        {k: b[k] for k in ("endpoint", "task_id", "status", "message")} | {"paths": len(b["paths"])} for b in batches
    ]
    for b in batches:
        if b["status"] == "failed":
            report["kept"] += len(b["keys"])
            kind = "delete task failed"
            report["kept_reasons"][kind] = report["kept_reasons"].get(kind, 0) + len(b["keys"])
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


def failure_text(report: dict[str, Any], batches: Sequence[dict[str, Any]]) -> str | None:
    """Why the run must fail (a delete task failed or a check could not be made), or ``None``."""
    failed = [b for b in batches if b["status"] == "failed"]
    if not failed and not report["check_errors"]:
        return None
    return (
        f"{len(failed)} delete task(s) failed and {report['check_errors']} check(s) could not be made; "
        f"the entries stay for the next run. {summary_text(report)}"
    )
