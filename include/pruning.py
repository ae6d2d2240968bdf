"""The prune planner: which due manifest entries may be deleted, in which batches, and the run's summary.

Plain Python (no Airflow, no provider). It looks at the copies through one listing per folder
(:class:`include.records.Folders` over anything with the Globus hook's ``listdir``) and, where the
endpoints allow, compares content through the service itself (:class:`ContentVerifier`), so tests give it
in-memory stand-ins. Content is only ever *compared*: nothing writes into a check copy, a long-term copy or
the target. The comparison (:func:`verify_groups`) copies the check copy into a side folder on the target's
own temporary collection, then syncs the target onto that side folder by checksum: a file the sync had to
transfer differs. A pair whose content differs keeps **both** copies and fails the run.
The prune operator (``als_provider.operators.globus_delete``) reads the due entries, plans here, deletes and
reports. See docs/pruning.md for the manifest design (include/manifests.py) and the safety rules.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
#: The content comparison's side folders: ``<target endpoint root>/.als-verify/<run tag>/<pair>/``.
SIDE_FOLDER = ".als-verify"
#: Most pairs in one comparison group (one copy task and one sync task).
GROUP_ITEMS = 10_000
#: How far ``as_of`` may lie beyond now (clock skew between the UI and the worker).
AS_OF_TOLERANCE = timedelta(minutes=5)
#: What a dry run says of the content of a copy it would delete (it starts no Globus task).
DRY_RUN_NOTE = "content not verified (dry run)"
MISMATCH = "content differs"
HELD = "held"
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
    #: ``target -> check copy: reason`` of every pair whose content differs (the run fails naming them).
    mismatches: list[str] = field(default_factory=list)
    #: (endpoint, path) -> a note on its verification (a dry run's ``content not verified``).
    notes: dict[tuple[str, str], str] = field(default_factory=dict)


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


def refuse_future_as_of(as_of: datetime, now: datetime | None = None) -> datetime:
    """``as_of`` unless it lies beyond now (+ :data:`AS_OF_TOLERANCE`): a future ``as_of`` deletes copies days
    before their retention ends. The months simulation keeps its own clock by calling this module directly."""
    now = now or datetime.now(UTC)
    if as_of > now + AS_OF_TOLERANCE:
        raise ValueError(
            f"as_of {as_of.isoformat()} is in the future (now {now.replace(microsecond=0).isoformat()}): "
            "prune acts only on copies already due; leave as_of empty (now) or give a past time"
        )
    return as_of


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
    held: Mapping[tuple[str, str], str] | None = None,
) -> Plan:
    """Validate and verify every due entry; each distinct ``endpoint:path`` is checked once, each folder
    listed once.

    ``held`` names copies something still needs, ``{(endpoint, path): reason}`` (e.g. the raw copy an owed
    SciCat registration reads: include.catalogue_backlog.held_copies): an entry whose target is, contains or
    lies inside one of them is kept with that reason (not an error: it goes once the hold is released).

    An entry that is malformed, or whose paths ``endpoints`` refuse (edited by hand, or the endpoints changed
    since it was scheduled), is kept; so is one whose check fails with an error (counted in ``errors``: the
    run then fails, visibly), named by ``describe_error``. Verified paths whose level is ``checksum`` are then
    compared by ``content`` (all in one go); without a ``content`` verifier they are kept, never deleted on a
    listing alone.
    """
    plan = Plan()
    folders = Folders(listing)
    seen: dict[tuple[str, str, str, str | None], Verdict] = {}
    held_places = [(_place(EndpointPath(*where), endpoints), why) for where, why in (held or {}).items()]
    for item in items:
        if isinstance(item, BadEntry):  # unsigned, edited, forged, unsafe or malformed: the run fails (issue 26)
            plan.errors += 1
            plan.kept.append((item.key, item.key, f"{item.kind}: {item.reason}"))
            continue
        try:  # read-time rules ran in manifests.read_entry; the path rules again, against these endpoints
            manifests.check_deletable(item.endpoint, item.path, item.check_endpoint, endpoints)
        except ValueError as exc:
            plan.errors += 1
            plan.kept.append((item.key, str(item), f"refused: manifest {item.key}: {exc}"))
            continue
        hold = _held_by(item, held_places, endpoints)
        if hold:
            _keep(plan, item, f"{HELD}: {hold}", log)
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
    """Apply the checksum level to every verified pair; a differing or uncheckable pair keeps its entries.

    A pair whose content differs keeps **both** copies: its target, and every due copy that is, contains or
    lies inside its check copy (``held``) — which of the two is the good one only a person can tell. A
    verifier with a ``note`` (a dry run) compares nothing: its pairs stay deletable, annotated."""
    pairs: list[tuple[EndpointPath, EndpointPath, bool]] = []
    for ident, verdict in seen.items():
        if verdict.action == "delete" and verdict.content == "checksum":
            endpoint, path, check_endpoint, check_path = ident
            pairs.append(
                (EndpointPath(endpoint, path), EndpointPath(check_endpoint, check_path or path), verdict.folder)
            )
    if not pairs:
        return
    note = getattr(content, "note", None)
    if note:
        for target, _, _ in pairs:
            plan.notes[(target.endpoint, str(target.path))] = note
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
    mismatched: list[tuple[EndpointPath, EndpointPath]] = []
    for index, reason in failed.items():
        target, check, _ = pairs[index]
        if reason_kind(reason) == MISMATCH:
            plan.mismatches.append(f"{target} -> {check}: {reason}")
            mismatched.append((target, check))
        key = (target.endpoint, str(target.path))
        for entry in plan.deletable.pop(key, []):
            if entry.check == check:
                _keep(plan, entry, reason, log)
            else:  # another entry of the same target, against another check copy
                plan.deletable.setdefault(key, []).append(entry)
        if key not in plan.deletable:
            plan.bytes.pop(key, None)
    if mismatched:
        _hold(plan, mismatched, endpoints, log)


def _place(where: EndpointPath, endpoints: Endpoints) -> tuple[str, PurePosixPath]:
    """Where a path is: (file system, absolute collection path); several collections reach one file system."""
    found = endpoints[where.endpoint]
    return found.collection.storage, PurePosixPath(found.globus_path(str(where.path)))


def _overlap(a: tuple[str, PurePosixPath], b: tuple[str, PurePosixPath]) -> bool:
    return a[0] == b[0] and (a[1] == b[1] or a[1].is_relative_to(b[1]) or b[1].is_relative_to(a[1]))


def _held_by(
    item: ManifestEntry, held: Sequence[tuple[tuple[str, PurePosixPath], str]], endpoints: Endpoints
) -> str | None:
    """The reason a copy something still needs overlaps ``item``'s target, or ``None``."""
    if not held:
        return None
    here = _place(item.target, endpoints)
    return next((why for place, why in held if _overlap(here, place)), None)


def _hold(
    plan: Plan,
    mismatched: Sequence[tuple[EndpointPath, EndpointPath]],
    endpoints: Endpoints,
    log: logging.Logger | logging.LoggerAdapter,
) -> None:
    """Keep every due copy overlapping either side of a pair whose content differs (both copies stay)."""
    sides = [(_place(where, endpoints), target, check) for target, check in mismatched for where in (target, check)]
    for key in list(plan.deletable):
        here = _place(EndpointPath(*key), endpoints)
        found = next(((t, c) for place, t, c in sides if _overlap(here, place)), None)
        if found is None:
            continue
        reason = (
            f"{HELD}: {key[0]}:{key[1]} is a copy whose content differs ({found[0]} vs {found[1]}); "
            "both copies kept until a person decides"
        )
        for entry in plan.deletable.pop(key):
            _keep(plan, entry, reason, log)
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


# -- content comparison in side folders ---------------------------------------------------------------
Pair = tuple[EndpointPath, EndpointPath, bool]


def pair_key(target: EndpointPath, check: EndpointPath) -> str:
    """How a (target, check copy) pair is named in stored comparison results."""
    return f"{target} -> {check}"


def side_tag(*parts: object) -> str:
    """The side folders' name for one round of one run (the same on a retry, new for a new round)."""
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:16]


def verify_groups(
    pairs: Sequence[Pair], tag: str, endpoints: Endpoints, *, max_items: int = GROUP_ITEMS
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Plan the comparison of ``pairs`` in side folders: JSON-able groups, and ``{pair key: reason}`` of the
    pairs that cannot be compared (``could not check``).

    Each pair gets ``<target endpoint>:.als-verify/<tag>/<n>/<name>``, on the target's own (temporary)
    collection. A group (one per target endpoint, check endpoint and kind, at most ``max_items`` pairs) is
    two Globus tasks: ``copy`` (check copy → side folder, checksum-verified: it only *reads* the check copy)
    then ``sync`` (target → side folder, ``sync_level="checksum"``: it only *reads* the target). A file the
    sync transfers differs. The side root must overlap no target or check copy of the run and no long-term
    place, or the pair is not compared.
    """
    places = [_place(where, endpoints) for target, check, _ in pairs for where in (target, check)]
    refused: dict[str, str] = {}
    roots: dict[str, str | None] = {}
    grouped: dict[tuple[str, str, bool], list[list[Any]]] = defaultdict(list)
    for index, (target, check, folder) in enumerate(pairs):
        if target.endpoint not in roots:
            root = EndpointPath(target.endpoint, f"{SIDE_FOLDER}/{tag}")
            here = _place(root, endpoints)
            clash = next((f"{p[0]}:{p[1]}" for p in places if _overlap(here, p)), None)
            guarded = manifests.protected_place(target.endpoint, root.path, endpoints)
            roots[target.endpoint] = (
                f"the side folder {root} overlaps {clash}" if clash
                else f"the side folder {root} lies in the long-term {guarded}" if guarded
                else None
            )  # fmt: skip
        if roots[target.endpoint]:
            refused[pair_key(target, check)] = f"could not check: content: {roots[target.endpoint]}"
            continue
        side = f"{SIDE_FOLDER}/{tag}/{index}/{target.path.name}"
        grouped[(target.endpoint, check.endpoint, folder)].append(
            [pair_key(target, check), str(target.path), str(check.path), side]
        )
    groups: list[dict[str, Any]] = []
    for (target_endpoint, check_endpoint, folder), items in sorted(grouped.items()):
        for start in range(0, len(items), max_items):
            groups.append(
                {
                    "index": len(groups),
                    "target_endpoint": target_endpoint,
                    "check_endpoint": check_endpoint,
                    "folder": folder,
                    "side_root": f"{SIDE_FOLDER}/{tag}",
                    "items": items[start : start + max_items],
                }
            )
    return groups, refused


def group_results(group: dict[str, Any], transferred: Iterable[str], task_id: str) -> dict[str, str]:
    """``{pair key: ""}`` (same content) or ``{pair key: "content differs: ..."}`` for every pair of ``group``,
    from the endpoint-relative side paths its ``sync`` task transferred (every page of them)."""
    depth = len(PurePosixPath(group["side_root"]).parts) + 1  # .als-verify/<tag>/<n>: one folder per pair
    per_pair = Counter("/".join(PurePosixPath(path).parts[:depth]) for path in transferred)
    out = {}
    for key, target, check, side in group["items"]:
        count = per_pair.get(side.rsplit("/", 1)[0], 0)
        out[key] = (
            f"{MISMATCH}: {count} file(s) of {group['target_endpoint']}:{target} differ from "
            f"{group['check_endpoint']}:{check} (Globus checksum sync into a side folder, task {task_id}); "
            "both copies kept until a person decides"
            if count
            else ""
        )
    return out


class StoredContent:
    """A :class:`ContentVerifier` answering from comparison results made earlier in the run (``{pair key:
    reason or ""}``); a pair not compared in this round is kept (``could not check``), never deleted."""

    def __init__(self, results: Mapping[str, str]) -> None:
        self.results = results

    def differing(self, pairs: Sequence[Pair]) -> dict[int, str]:
        out = {}
        for index, (target, check, _) in enumerate(pairs):
            found = self.results.get(pair_key(target, check))
            if found is None:  # its listing changed between the two passes of this round: an error, checked again
                out[index] = f"could not check: content: {target} -> {check} was not compared in this round"
            elif found:
                out[index] = found
        return out


class CollectPairs:
    """A :class:`ContentVerifier` that only notes the pairs to compare (the operator's first pass)."""

    def __init__(self) -> None:
        self.pairs: list[Pair] = []

    def differing(self, pairs: Sequence[Pair]) -> dict[int, str]:
        self.pairs = list(pairs)
        return {}


class NotCompared:
    """A dry run's :class:`ContentVerifier`: compares nothing (a comparison starts Globus tasks that write side
    folders), so the pairs stay in the would-delete list with :data:`DRY_RUN_NOTE`."""

    note = DRY_RUN_NOTE

    def differing(self, pairs: Sequence[Pair]) -> dict[int, str]:
        return {}


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
    """The run's report before any delete (a dry run's list is ``would_delete``, a real run's ``to_delete``;
    a path whose content was not compared says so: ``... (content not verified (dry run))``)."""

    def named(endpoint: str, path: str) -> str:
        note = checked.notes.get((endpoint, path))
        return f"{endpoint}:{path}" + (f" ({note})" if note else "")

    report = {
        "as_of": as_of.isoformat(),
        "dry_run": dry_run,
        "due": due,
        "to_delete": [named(b["endpoint"], p) for b in batches for p in b["paths"]][:EXAMPLES],
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
        "content_mismatches": checked.mismatches[:EXAMPLES],
        "content_mismatch_count": len(checked.mismatches),
        "content_not_verified": len(checked.notes),
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
    if report.get("content_mismatch_count"):
        lines.append(
            f"- CONTENT DIFFERS ({report['content_mismatch_count']}): both copies kept, delete neither until a "
            'person decides which is good (docs/pruning.md, "A content mismatch")'
        )
        lines += [f"  - {line}" for line in report.get("content_mismatches", [])]
    for problem in report.get("cleanup_failures", []):
        lines.append(f"- side folder clean-up failed: {problem}")
    for task in report.get("delete_tasks", []):
        if task["status"] != "succeeded":
            lines.append(f"- delete task {task['task_id']} on {task['endpoint']} {task['status']}: {task['message']}")
    return "\n".join(lines)


def failure_text(report: dict[str, Any], batches: Sequence[dict[str, Any]]) -> str | None:
    """Why the run must fail (content differs, a delete task failed, a check could not be made or a side
    folder was not cleaned up), or ``None``."""
    failed = [b for b in report.get("delete_tasks", batches) if b["status"] == "failed"]
    mismatches = report.get("content_mismatch_count", 0)
    cleanup = report.get("cleanup_failures", [])
    if not failed and not report["check_errors"] and not mismatches and not cleanup:
        return None
    head = ""
    if mismatches:
        head = (
            f"CONTENT DIFFERS for {mismatches} pair(s) of copies, e.g. {report['content_mismatches'][0]}; both "
            "copies kept: delete neither until a person decides. "
        )
    return (
        f"{head}{len(failed)} delete task(s) failed and {report['check_errors']} check(s) could not be made"
        + (f", {len(cleanup)} side folder clean-up(s) failed" if cleanup else "")
        + f"; the entries stay for the next run. {summary_text(report)}"
    )


def merge_reports(earlier: dict[str, Any], later: dict[str, Any], *, rechecked: int) -> dict[str, Any]:
    """One report for a run whose retry checked again, in a new round, the ``rechecked`` entries the earlier
    round could not check: what was deleted adds up; what was kept is the earlier round's, except the entries
    checked again, which count as the later round has them."""
    merged = dict(later)
    for name in ("deleted", "deleted_paths", "bytes_freed", "already_absent", "content_mismatch_count"):
        merged[name] = earlier.get(name, 0) + later.get(name, 0)
    for name in ("deleted_list", "content_mismatches", "cleanup_failures", "delete_tasks"):
        merged[name] = [*earlier.get(name, []), *later.get(name, [])][: EXAMPLES if name != "delete_tasks" else None]
    reasons = Counter(earlier["kept_reasons"])
    reasons["could not check"] -= rechecked
    reasons.update(later["kept_reasons"])
    merged["kept_reasons"] = {kind: count for kind, count in reasons.items() if count > 0}
    merged["kept"] = earlier["kept"] - rechecked + later["kept"]
    unchecked = [e for e in earlier["kept_examples"] if ": could not check" not in e]
    merged["kept_examples"] = [*unchecked, *later["kept_examples"]][:EXAMPLES]
    merged["due"] = earlier["due"]
    merged["rounds"] = earlier.get("rounds", 1) + 1
    return merged


def recheck_keys(plan: Plan) -> list[str]:
    """Keys of the entries kept because a check could not be made (a service error): a retry checks them again."""
    return [key for key, _, reason in plan.kept if reason_kind(reason) == "could not check"]
