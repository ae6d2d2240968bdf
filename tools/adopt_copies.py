"""Adopt copies made before the switch (by the Prefect flows) into the deletion manifests, so prune removes them.

Each copy becomes one entry, validated and signed like an entry a pipeline writes (include/manifests.py
validate_entry): the endpoint must hold temporary copies (include/config/retention.yaml; a long-term endpoint is
refused), the target is recorded as it is now (Globus listing: every file's size and time) and its check copy must
exist with the same size (and checksum where Globus gives one), through the Globus hook. Where the copies are:

  --folder PATH     walk ENDPOINT:PATH (`.`: the root) with Globus ls; every file below it is one copy
                    (upstream prunes per file), or with --depth N every path N levels below it (e.g. --depth 2
                    at the root of data832_scratch: each <folder>/rec<ds>/ and rec<ds>.zarr/); hidden names
                    (run markers, prune's side folders) are left out
  --from FILE       a list: CSV with a header (columns path, due; optional endpoint, check_endpoint) or JSON
                    lines ({"path": ..., "due": ...}); e.g. upstream's pending scheduled prune runs

Due: a row's ``due`` or --due (ISO date or datetime, UTC if no zone), else the copy's newest file time plus its
location's retention (Variable als_retention_days), as if the pipeline had recorded it when the copy was made;
never before now. A copy already in the manifests is skipped. --dry-run changes nothing and prints what it would
add. Runs where Airflow's CLI works (the metadata DB and the Connection als_signing). Exit 1 if any copy was
refused (the others are added). docs/operations.md "Switching over from the Prefect flows".
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from tools._cli import ToolError, parser, prepare, run, say

PROG = "adopt_copies"
#: The entries' dag_id: who wrote them (the manifests' key hashes it with the run id, the endpoint and the path).
ADOPTED_BY = "adopt_copies"


@dataclass(frozen=True)
class Wanted:
    """One copy to adopt: ``endpoint:path`` against ``check_endpoint:path``, due at ``due`` (None: by its age)."""

    endpoint: str
    path: str
    check_endpoint: str
    due: datetime | None = None


def parse_due(value: str | None, where: str) -> datetime | None:
    if value is None or not str(value).strip():
        return None
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ToolError(f"{where}: due {value!r} is not an ISO date or datetime (e.g. 2027-01-31)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def read_list(source: Path, endpoint: str | None, check: str | None, due: datetime | None) -> list[Wanted]:
    """The copies of a CSV (header row) or JSON-lines file; a row's endpoint/check_endpoint/due win over the flags."""
    try:
        text = source.read_text()
    except OSError as exc:
        raise ToolError(f"{source}: {exc.strerror or exc}") from None
    if source.suffix in (".jsonl", ".json"):
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError:
                    raise ToolError(f"{source}:{number}: not a JSON object") from None
                if not isinstance(row, dict):
                    raise ToolError(f"{source}:{number}: not a JSON object")
                rows.append((number, row))
    else:
        rows = [(number, row) for number, row in enumerate(csv.DictReader(text.splitlines()), 2)]
    wanted = []
    for number, row in rows:
        where = f"{source}:{number}"
        unknown = set(row) - {"path", "due", "endpoint", "check_endpoint"}
        if unknown:
            raise ToolError(f"{where}: unknown column(s) {', '.join(sorted(map(str, unknown)))}")
        values = {"endpoint": row.get("endpoint") or endpoint, "check_endpoint": row.get("check_endpoint") or check}
        for key in ("path", "endpoint", "check_endpoint"):
            if not (row.get(key) if key == "path" else values[key]):
                raise ToolError(f"{where}: no {key} (a column, or --{key.replace('_endpoint', '')} for every row)")
        row_due = parse_due(row.get("due"), where) or due
        wanted.append(Wanted(values["endpoint"], str(row["path"]), values["check_endpoint"], row_due))
    return wanted


def walk_folder(folders: Any, endpoint: str, folder: str, check: str, due: datetime | None, depth: int | None):
    """Every file below ``endpoint:folder`` (``.``: the root), or every path ``depth`` levels below it and the
    files above that depth; hidden names (``.``) are left out."""
    from include.paths import EndpointPath, endpoint_relative

    top = endpoint_relative(folder, allow_root=True)
    tree = folders.walk(EndpointPath(endpoint, str(top)), limit=None)
    if tree is None:
        raise ToolError(f"{endpoint}:{top}: no such folder")

    def is_unit(rel: str, info: dict) -> bool:
        parts, is_file = PurePosixPath(rel).parts, info.get("type") == "file"
        if any(part.startswith(".") for part in parts):  # run markers, prune's side folders: not copies
            return False
        return is_file if depth is None else len(parts) == depth or (is_file and len(parts) < depth)

    units = sorted(rel for rel, info in tree.items() if is_unit(rel, info))
    return [Wanted(endpoint, str(top / rel), check, due) for rel in units]


def scheduled_paths(store: Any) -> set[tuple[str, str]]:
    """(endpoint, path) of every entry already in the manifests (signed and valid or not: never adopted twice)."""
    from include.manifests import KEY_PREFIX, ManifestEntry, ManifestError

    found = set()
    for key in store.keys(KEY_PREFIX):
        raw = store.get(key)
        try:
            entry = ManifestEntry.from_json(key, raw, verify=False) if raw else None
        except ManifestError:
            continue
        if entry is not None:
            found.add((entry.endpoint, entry.path))
    return found


def adopt_one(wanted: Wanted, *, folders: Any, days: dict[str, int], now: datetime, run_id: str):
    """The signed, validated entry for one copy (not written); ToolError naming why it is refused."""
    from include.manifests import DeletionRequest, check_deletable, new_entry, retention_map, validate_entry
    from include.paths import EndpointPath
    from include.pruning import verify_copy
    from include.records import record_of

    rel = str(check_deletable(wanted.endpoint, wanted.path, wanted.check_endpoint))
    location = retention_map()[0].get(wanted.endpoint)
    if location is None:
        raise ToolError(f"{wanted.endpoint} holds long-term copies (retention.yaml): never scheduled for deletion")
    tree = folders.tree(EndpointPath(wanted.endpoint, rel))
    if tree is None:
        raise ToolError("nothing there")
    record = record_of(tree)
    if record.files == 0:
        raise ToolError("an empty folder (nothing to verify against a copy)")
    if location not in days:
        raise ToolError(f"no retention days for location {location!r} (Variable als_retention_days)")
    due = wanted.due or parse_due(record.mtime, "newest file time") + timedelta(days=days[location])
    not_before = max(due, now)
    entry = new_entry(
        DeletionRequest(wanted.endpoint, rel, wanted.check_endpoint, location),
        record,
        due=not_before.date(),
        not_before=not_before,
        dag_id=ADOPTED_BY,
        run_id=run_id,
        created_at=now,
    )
    validate_entry(entry, days=days)
    verdict = verify_copy(folders, entry)
    if verdict.action != "delete":
        raise ToolError(verdict.reason)
    return entry


def adopt(wanted_of, *, dry_run: bool, conn_id: str) -> None:
    from als_provider.hooks.globus_transfer import GlobusTransferHook
    from include.manifests import MetadataDbVariables, retention_table
    from include.paths import endpoint_relative
    from include.records import Folders

    hook = GlobusTransferHook(conn_id, max_retries=2)
    folders = Folders(hook)
    store = MetadataDbVariables()
    days = retention_table(store=store)
    now = datetime.now(UTC).replace(microsecond=0)
    run_id = f"adopted__{now.isoformat()}"
    known = scheduled_paths(store)
    added = refused = skipped = 0
    for wanted in wanted_of(folders):
        name = f"{wanted.endpoint}:{wanted.path}"
        try:
            if (wanted.endpoint, str(endpoint_relative(wanted.path))) in known:
                skipped += 1
                say(f"skipped {name}: already in the manifests")
                continue
            entry = adopt_one(wanted, folders=folders, days=days, now=now, run_id=run_id)
        except (ToolError, ValueError) as exc:  # a rule of the manifests (ManifestError, ConfigError, InvalidPathError)
            refused += 1
            say(f"refused {name}: {exc}")
            continue
        if not dry_run:
            store.set(entry.key, entry.to_json())
        known.add((entry.endpoint, entry.path))
        added += 1
        say(
            f"{'would add' if dry_run else 'added'} {name} due {entry.not_before:%Y-%m-%d %H:%M} UTC "
            f"(check {entry.check_endpoint}, {entry.location}; {entry.files} file(s), {entry.size} bytes)"
        )
    say(f"{added} {'to add (dry run)' if dry_run else 'added'}, {skipped} skipped, {refused} refused")
    if refused:
        raise ToolError(f"{refused} refused (listed above); {added} {'would be added' if dry_run else 'added'}")


def _describe(exc: BaseException) -> str:
    from als_provider.hooks.globus_transfer import describe_globus_error

    return str(exc) if isinstance(exc, (ToolError, ValueError)) else describe_globus_error(exc)


def main(argv: list[str] | None = None) -> int:
    args_parser = parser(PROG, __doc__)
    args_parser.add_argument("--endpoint", help="where the copies are (endpoints.yaml); a list's column wins")
    args_parser.add_argument("--check", dest="check_endpoint", help="the endpoint holding the copy checked first")
    where = args_parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--folder", help="walk this folder of --endpoint (relative to its root)")
    where.add_argument("--from", dest="source", type=Path, help="a CSV or JSON-lines list of copies")
    args_parser.add_argument("--depth", type=int, help="--folder: one copy per path this many levels below it")
    args_parser.add_argument("--due", help="when every copy falls due (ISO date/datetime); default: by its age")
    args_parser.add_argument("--dry-run", action="store_true", help="change nothing; print what would be added")
    args_parser.add_argument("--conn-id", default="globus_default", help="Airflow connection (default: %(default)s)")
    args = args_parser.parse_args(argv)
    if args.folder is not None and not (args.endpoint and args.check_endpoint):
        args_parser.error("--folder needs --endpoint and --check")
    if args.depth is not None and (args.folder is None or args.depth < 1):
        args_parser.error("--depth is a number >= 1, with --folder")
    prepare()

    def body() -> None:
        due = parse_due(args.due, "--due")
        if args.folder is not None:
            wanted_of = lambda folders: walk_folder(  # noqa: E731
                folders, args.endpoint, args.folder, args.check_endpoint, due, args.depth
            )
        else:
            listed = read_list(args.source, args.endpoint, args.check_endpoint, due)
            wanted_of = lambda folders: listed  # noqa: E731
        adopt(wanted_of, dry_run=args.dry_run, conn_id=args.conn_id)

    return run(PROG, body, _describe)


if __name__ == "__main__":
    sys.exit(main())
