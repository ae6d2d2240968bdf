"""The prune planner: which due manifest entries may be deleted, in which batches, and the run's summary.

Plain Python (no Airflow, no provider). It looks at the copies through one listing per folder
(:class:`include.records.Folders` over anything with the Globus hook's ``listdir``) and, where the
endpoints allow, verifies content through the service itself (:class:`ContentVerifier`: a checksum-verified
sync from target to check copy that must find nothing to transfer), so tests give it in-memory stand-ins.
The prune operator (``als_provider.operators.globus_delete``) reads the due entries, plans here, deletes and
reports. See docs/pruning.md for the manifest design (include/manifests.py) and the safety rules.
"""

from __future__ import annotations

import bisect
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
from include.records import FolderLister, Folders, Record, TreeTooLarge, checksum_of, record_of

#: How many kept entries are listed by name in the summary (all are counted and logged).
EXAMPLES = 100
#: How many kept entries are logged one by one.
LOGGED = 1000
LOOP_REASON = "its check copy is due for deletion in this run too (a loop of checks): kept so a copy survives"
#: Storage where content is compared by listing only (size of every file): a checksum there means a tape
#: recall. Everywhere else the content is verified by a checksum sync (docs/pruning.md, "Verification levels").
LISTING_ONLY_STORAGE = frozenset({"nersc_hpss"})
_log = logging.getLogger(__name__)


class PruneError(RuntimeError):
    """A prune run could not finish: a delete task failed or a check could not be made."""


class ContentVerifier(Protocol):
    """Compares content through the storage service (the prune operator's Globus checksum sync)."""

    def differing(self, pairs: Sequence[tuple[EndpointPath, EndpointPath, bool]]) -> dict[int, str]:
        """For ``(target, check copy, is_folder)`` pairs: ``{index: reason}`` of those whose content differs, or
        ``could not check: ...`` for those it could not compare (counted as errors). May raise: all unchecked."""


@dataclass(frozen=True)
class Verdict:
    """What to do with one due path: ``delete`` (check copy verified), ``absent`` (nothing left) or ``keep``.
    ``content``: the verification level still to apply before deleting (``checksum`` or ``listing``)."""

    action: str
    reason: str = ""
    bytes: int = 0
    content: str = "listing"
    folder: bool = False


@dataclass
class Plan:
    """Outcome of checking the due entries, before any delete."""

    deletable: dict[tuple[str, str], list[ManifestEntry]] = field(default_factory=dict)
    bytes: dict[tuple[str, str], int] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)
    kept: list[tuple[str, str, str]] = field(default_factory=list)  # (key, what, reason)
    errors: int = 0
    listings: int = 0
    content_checked: int = 0


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
def content_level(entry: ManifestEntry, endpoints: Endpoints) -> str:
    """How a verified listing is confirmed: ``regenerate`` (the raw copy exists), ``listing`` (sizes only, on
    tape) or ``checksum`` (a checksum-verified sync from target to check copy finds nothing to transfer)."""
    if entry.regenerable:
        return "regenerate"
    storages = {endpoints[entry.endpoint].collection.storage, endpoints[entry.check_endpoint].collection.storage}
    return "listing" if storages & LISTING_ONLY_STORAGE else "checksum"


def verify_copy(
    folders: Folders, entry: ManifestEntry, *, endpoints: Endpoints | None = None, max_tree_entries: int = 200_000
) -> Verdict:
    """Compare ``entry``'s target with its record and its check copy, by listing.

    The target must hold exactly what was recorded (every file's size and modification time); the check copy
    every file of it with the same size (and checksum where both sides give one). A target absent from a
    reachable, known collection is ``absent``; any other listing error propagates.
    """
    target, check = entry.target, entry.check
    mine = folders.tree(target, limit=max_tree_entries)
    if mine is None:
        return Verdict("absent", "already absent")
    record = entry.record
    if record is None:
        return Verdict("keep", f"unrecorded: {entry.key} was scheduled before records were kept; check by hand")
    now = record_of(mine)
    if now.digest != record.digest:
        return Verdict("keep", f"target changed: {target} holds {record.differences(now)}")
    level = content_level(entry, endpoints) if endpoints is not None else "listing"
    if entry.regenerable:
        raw = folders.info(check)
        if raw is None:
            return Verdict("keep", f"check copy missing: {check} (the raw copy to regenerate from) does not exist")
        if raw.get("type") != "file" or not raw.get("size"):
            return Verdict("keep", f"check copy differs: {check} is not a non-empty file")
        return Verdict("delete", bytes=now.size, content=level)
    theirs = folders.tree(check, limit=max_tree_entries)
    if theirs is None:
        return Verdict("keep", f"check copy missing: {check} does not exist")
    folder = "." not in mine
    if folder != ("." not in theirs):
        return Verdict("keep", f"check copy differs: {check} is a {'file' if folder else 'folder'}, {target} not")
    for rel, item in mine.items():
        if item.get("type") != "file":
            continue
        other = theirs.get(rel)
        where = check if rel == "." else check.child(rel)
        if other is None or other.get("type") != "file":
            return Verdict("keep", f"check copy incomplete: {where} missing")
        if int(other.get("size") or 0) != int(item.get("size") or 0):
            return Verdict("keep", f"size differs: {where} has {other.get('size')} bytes, not {item.get('size')}")
        want = (record.checksum if rel == "." else None) or checksum_of(item)
        have = checksum_of(other)
        if want and have and want.lower().split(":")[-1] != have:
            return Verdict("keep", f"checksum differs: {where} {have} != {want}")
    return Verdict("delete", bytes=now.size, content=level, folder=folder)


def check_entries(
    listing: FolderLister,
    items: Iterable[ManifestEntry | BadEntry],
    endpoints: Endpoints,
    *,
    content: ContentVerifier | None = None,
    log: logging.Logger | logging.LoggerAdapter = _log,
    describe_error: Callable[[BaseException], str] = lambda exc: f"{type(exc).__name__}: {exc}",
    max_tree_entries: int = 200_000,
) -> Plan:
    """Validate and verify every due entry; each distinct ``endpoint:path`` is checked once, each folder
    listed once.

    An entry that is malformed, or whose paths ``endpoints`` refuse (edited by hand, or the endpoints changed
    since it was scheduled), is kept; so is one whose check fails with an error (counted in ``errors``: the
    run then fails, visibly), named by ``describe_error``. Verified paths whose level is ``checksum`` are then
    compared by ``content`` (all in one go); without a ``content`` verifier they are kept, never deleted on a
    listing alone.
    """
    plan = Plan()
    folders = Folders(listing)
    seen: dict[tuple[str, str, str, str | None], Verdict] = {}
    for item in items:
        if isinstance(item, BadEntry):
            plan.kept.append((item.key, item.key, f"malformed: {item.reason}"))
            continue
        try:
            manifests.check_deletable(item.endpoint, item.path, item.check_endpoint, endpoints)
        except ValueError as exc:
            plan.kept.append((item.key, str(item), f"refused: {exc}"))
            continue
        ident = (item.endpoint, item.path, item.check_endpoint, item.check_path)
        verdict = seen.get(ident)
        if verdict is None:
            try:
                verdict = verify_copy(folders, item, endpoints=endpoints, max_tree_entries=max_tree_entries)
            except TreeTooLarge as exc:
                plan.errors += 1
                verdict = Verdict("keep", f"could not check: {exc}")
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
            _keep(plan, item, verdict.reason, log)
    plan.listings = folders.listings
    _verify_content(plan, seen, content, endpoints, log=log, describe_error=describe_error)
    keep_copies_that_check_each_other(plan, endpoints, log=log)
    return plan


def _keep(plan: Plan, item: ManifestEntry, reason: str, log: logging.Logger | logging.LoggerAdapter) -> None:
    plan.kept.append((item.key, str(item), reason))
    if len(plan.kept) <= LOGGED:
        log.warning("Keeping %s (%s): %s", item, item.key, reason)


def _verify_content(
    plan: Plan,
    seen: dict[tuple[str, str, str, str | None], Verdict],
    content: ContentVerifier | None,
    endpoints: Endpoints,
    *,
    log: logging.Logger | logging.LoggerAdapter,
    describe_error: Callable[[BaseException], str],
) -> None:
    """Apply the checksum level to every verified pair; a differing or uncheckable pair keeps its entries."""
    pairs: list[tuple[EndpointPath, EndpointPath, bool]] = []
    for ident, verdict in seen.items():
        if verdict.action == "delete" and verdict.content == "checksum":
            endpoint, path, check_endpoint, check_path = ident
            pairs.append(
                (EndpointPath(endpoint, path), EndpointPath(check_endpoint, check_path or path), verdict.folder)
            )
    if not pairs:
        return
    failed: dict[int, str] = {}
    if content is None:
        failed = dict.fromkeys(range(len(pairs)), "content not verified: no content verifier in this run")
    else:
        try:
            failed = content.differing(pairs)
        except Exception as exc:
            failed = dict.fromkeys(range(len(pairs)), f"could not check: content: {describe_error(exc)}")
        plan.errors += sum(1 for reason in failed.values() if reason.startswith("could not check"))
    plan.content_checked += len(pairs)
    for index, reason in failed.items():
        target, check, _ = pairs[index]
        key = (target.endpoint, str(target.path))
        for entry in plan.deletable.pop(key, []):
            if entry.check == check:
                _keep(plan, entry, reason, log)
            else:  # another entry of the same target, against another check copy
                plan.deletable.setdefault(key, []).append(entry)
        if key not in plan.deletable:
            plan.bytes.pop(key, None)


def keep_copies_that_check_each_other(
    plan: Plan, endpoints: Endpoints, *, log: logging.Logger | logging.LoggerAdapter = _log
) -> None:
    """Never delete, in one run, every copy of a loop of checks (of any length, through containment).

    Places are compared as (storage, collection path), since several endpoint names reach one file, and by
    containment: a check copy is lost when it is, contains or lies inside a place deleted in this run. A due
    copy is safe to delete when one of its check copies overlaps no place deleted in this run, or only places
    that are themselves safe (a chain of deletions ending at a surviving copy). The rest is kept.
    """

    def place(where: EndpointPath) -> tuple[str, PurePosixPath]:
        found = endpoints[where.endpoint]
        return found.collection.storage, PurePosixPath(found.globus_path(str(where.path)))

    doomed = {key: place(EndpointPath(*key)) for key in plan.deletable}
    at: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)  # (storage, path) -> deleted keys
    for key, (storage, path) in doomed.items():
        at[(storage, str(path))].append(key)
    ordered = {s: sorted(p for storage, p in at if storage == s) for s in {storage for storage, _ in at}}

    def lost_with(check: tuple[str, PurePosixPath]) -> set[tuple[str, str]]:
        """Deleted places overlapping ``check``: itself, its parents, anything below it (a sorted range)."""
        storage, path = check
        found = {key for parent in (path, *path.parents) for key in at.get((storage, str(parent)), ())}
        paths = ordered.get(storage, [])
        prefix = str(path).rstrip("/") + "/"
        for index in range(bisect.bisect_left(paths, prefix), len(paths)):
            if not paths[index].startswith(prefix):
                break
            found.update(at[(storage, paths[index])])
        return found

    needs = {key: [lost_with(place(entry.check)) for entry in plan.deletable[key]] for key in doomed}
    safe: set[tuple[str, str]] = set()
    grew = True
    while grew:
        grew = False
        for key, options in needs.items():
            if key not in safe and any(option <= safe for option in options):
                safe.add(key)
                grew = True
    for key in set(doomed) - safe:
        for entry in plan.deletable.pop(key):
            _keep(plan, entry, LOOP_REASON, log)
        plan.bytes.pop(key, None)


# -- recording -------------------------------------------------------------------------------------
def record_copies(
    lister: FolderLister, requests: Iterable[manifests.DeletionRequest]
) -> list[tuple[manifests.DeletionRequest, Record | None]]:
    """Each request with the record of what its target holds now (``None``: nothing is there), one listing
    per folder; taken right after the copies are made, so prune can tell a later change from the copy."""
    folders = Folders(lister)
    out = []
    for request in requests:
        tree = folders.tree(EndpointPath(request.endpoint, request.path))
        out.append((request, None if tree is None else record_of(tree)))
    return out


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
