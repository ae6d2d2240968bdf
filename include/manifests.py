"""Deletion manifests: what may be deleted where, once its retention has passed and a copy is verified.

Every pipeline that makes a copy records, with :func:`schedule_deletion`, that the copy may be deleted
later. The ``prune`` DAG reads the due entries, verifies the check copy and deletes. See docs/pruning.md.

Storage: one Airflow Variable per entry, key ``als_prune/<YYYYMMDD>/<id>`` where ``<YYYYMMDD>`` is the
UTC day of the entry's not-before time and ``<id>`` a hash of (dag_id, run_id, endpoint, path). Writers
only ever create their own keys (one PUT, no read-modify-write), so concurrent runs cannot lose an entry
even though a Variable has no compare-and-set; a retry of the same run rewrites the same key with the
same entry. Only the prune DAG (one active run) deletes keys. The day in the key lets prune read only
the values of days up to ``as_of``; keys are listed with ``Variable.keys(prefix)`` (Task SDK, paged).

Retention days per location come from the Variable ``als_retention_days`` (a JSON object, defaults in
airflow_settings.yaml); which location applies on which endpoint, and which endpoints hold long-term copies,
from include/config/retention.yaml (the check copy must outlive its target: refused otherwise).

Every entry records what was copied (:class:`~include.records.Record`: every file's size and modification
time, digested; a checksum where known); an entry without one is refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import yaml

from include.endpoints import REPO_ROOT, Endpoints, load_endpoints
from include.errors import ConfigError
from include.paths import EndpointPath, endpoint_relative
from include.records import Record

#: Every manifest key starts with this; nothing else may use it.
KEY_PREFIX = "als_prune/"
#: The Variable holding {location: retention days}.
RETENTION_VARIABLE = "als_retention_days"
#: Long-term copies that are never pruned: (endpoint, endpoint-relative path). Compared as absolute
#: collection paths on every collection, since several collections mount the same file system.
PROTECTED: tuple[tuple[str, str], ...] = (("nersc832", "raw"),)
#: Version 2 entries carry a record; version 1 entries (before records) are kept by prune, never deleted.
ENTRY_VERSION = 2
RETENTION_FILE = REPO_ROOT / "include" / "config" / "retention.yaml"


class ManifestError(ValueError):
    """A deletion entry is refused (unsafe or malformed); nothing was recorded."""


@dataclass(frozen=True)
class ManifestEntry:
    """One pending deletion: ``endpoint:path`` may go after ``not_before`` if ``check_endpoint:path`` matches."""

    key: str
    endpoint: str
    path: str
    check_endpoint: str
    location: str
    not_before: datetime
    dag_id: str
    run_id: str
    size: int | None = None
    checksum: str | None = None
    created_at: datetime | None = None
    files: int | None = None
    mtime: str | None = None
    digest: str | None = None
    check_path: str | None = None

    @property
    def record(self) -> Record | None:
        """What was copied (``None`` for an entry written before records were kept)."""
        if self.digest is None or self.size is None or self.files is None:
            return None
        return Record(self.size, self.files, self.mtime or "", self.digest, self.checksum)

    @property
    def target(self) -> EndpointPath:
        return EndpointPath(self.endpoint, self.path)

    @property
    def check(self) -> EndpointPath:
        """The copy that must match (or, for results that can be regenerated, the raw copy that must exist)."""
        return EndpointPath(self.check_endpoint, self.check_path or self.path)

    @property
    def regenerable(self) -> bool:
        """Whether the check copy is the raw scan the target can be regenerated from, not a copy of it."""
        return self.check_path is not None and self.check_path != self.path

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if v is not None or k in ("size", "checksum")}
        data.pop("key")
        data["v"] = ENTRY_VERSION
        data["not_before"] = self.not_before.isoformat()
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, key: str, text: str) -> ManifestEntry:
        """Parse a stored entry; raises :class:`ManifestError` for anything malformed."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("v") not in (1, ENTRY_VERSION):
                raise ManifestError(f"manifest {key}: unknown entry version {data.get('v')!r}")
            created = data.get("created_at")
            entry = cls(
                key=key,
                endpoint=str(data["endpoint"]),
                path=str(data["path"]),
                check_endpoint=str(data["check_endpoint"]),
                location=str(data["location"]),
                not_before=_aware(datetime.fromisoformat(data["not_before"]), "not_before"),
                dag_id=str(data["dag_id"]),
                run_id=str(data["run_id"]),
                size=None if data.get("size") is None else int(data["size"]),
                checksum=data.get("checksum"),
                created_at=_aware(datetime.fromisoformat(created), "created_at") if created else None,
                files=None if data.get("files") is None else int(data["files"]),
                mtime=data.get("mtime"),
                digest=data.get("digest"),
                check_path=data.get("check_path"),
            )
        except ManifestError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(f"manifest {key}: malformed entry ({type(exc).__name__}: {exc})") from None
        return entry

    @property
    def due_day(self) -> date:
        return self.not_before.astimezone(UTC).date()

    def __str__(self) -> str:
        return f"{self.endpoint}:{self.path}"


# -- storage --------------------------------------------------------------------------------------
class VariableStore(Protocol):
    """The four Variable operations the manifests need (Task SDK inside a task, the DB outside)."""

    def get(self, key: str) -> str | None: ...
    def set(self, key: str, value: str) -> None: ...
    def delete(self, key: str) -> None: ...
    def keys(self, prefix: str) -> list[str]: ...


class TaskSdkVariables:
    """Variables through the Task SDK (the Execution API): what a running task must use."""

    def get(self, key: str) -> str | None:
        from airflow.sdk import Variable

        return Variable.get(key, default=None)

    def set(self, key: str, value: str) -> None:
        from airflow.sdk import Variable

        Variable.set(key, value)

    def delete(self, key: str) -> None:
        from airflow.sdk import Variable

        Variable.delete(key)

    def keys(self, prefix: str) -> list[str]:
        from airflow.sdk import Variable

        return sorted(Variable.keys(prefix=prefix))


class MetadataDbVariables:
    """Variables straight from the metadata database: for tests, benchmarks and admin scripts only."""

    def get(self, key: str) -> str | None:
        from airflow.models import Variable

        return Variable.get(key, default_var=None)

    def set(self, key: str, value: str) -> None:
        from airflow.models import Variable

        Variable.set(key, value)

    def delete(self, key: str) -> None:
        from airflow.models import Variable

        Variable.delete(key)

    def keys(self, prefix: str) -> list[str]:
        from airflow.models import Variable
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            stmt = select(Variable.key).where(Variable.key.startswith(prefix, autoescape=True)).order_by(Variable.key)
            return list(session.scalars(stmt))


def default_store() -> VariableStore:
    """The Task SDK inside a task process (no DB access there), else the metadata database."""
    if hasattr(sys.modules.get("airflow.sdk.execution_time.task_runner"), "SUPERVISOR_COMMS"):
        return TaskSdkVariables()
    return MetadataDbVariables()


# -- retention ------------------------------------------------------------------------------------
def retention_days(location: str, *, store: VariableStore | None = None) -> int:
    """Retention in days of ``location`` from the ``als_retention_days`` Variable."""
    table = retention_table(store=store)
    if location not in table:
        known = ", ".join(sorted(table)) or "none"
        raise ConfigError(f"unknown retention location {location!r} (Variable {RETENTION_VARIABLE}: {known})")
    return table[location]


def retention_table(*, store: VariableStore | None = None) -> dict[str, int]:
    raw = (store or default_store()).get(RETENTION_VARIABLE)
    if raw is None:
        raise ConfigError(f"Variable {RETENTION_VARIABLE} is missing (defaults are in airflow_settings.yaml)")
    try:
        table = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise ConfigError(f"Variable {RETENTION_VARIABLE}: not JSON") from None
    if not isinstance(table, dict):
        raise ConfigError(f"Variable {RETENTION_VARIABLE}: expected a JSON object of location -> days")
    for name, days in table.items():
        if isinstance(days, bool) or not isinstance(days, int) or days < 0:
            raise ConfigError(f"Variable {RETENTION_VARIABLE}.{name}: days must be an integer >= 0, got {days!r}")
    return table


@functools.cache
def retention_map(source: str = str(RETENTION_FILE)) -> tuple[dict[str, str], frozenset[str]]:
    """include/config/retention.yaml: ({endpoint: location} of temporary copies, sites opted in to
    regenerate results from the long-term raw copy)."""
    try:
        document = yaml.safe_load(Path(source).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
    table, regenerable = document.get("endpoints"), document.get("regenerate_from_raw", [])
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise ConfigError(f"{source}: endpoints: expected a mapping of endpoint -> location")
    if not isinstance(regenerable, list):
        raise ConfigError(f"{source}: regenerate_from_raw: expected a list of site names")
    return dict(table), frozenset(regenerable)


def check_retention_order(endpoint: str, location: str, check_endpoint: str, days: dict[str, int]) -> None:
    """Refuse an entry whose location is not its endpoint's, or whose check copy falls due first."""
    table, _ = retention_map()
    expected = table.get(endpoint)
    if expected is None:
        raise ManifestError(f"{endpoint} holds long-term copies ({RETENTION_FILE.name}): never scheduled for deletion")
    if location != expected:
        raise ManifestError(f"{endpoint}: copies there have retention location {expected!r}, not {location!r}")
    check_location = table.get(check_endpoint)
    if check_location is None:
        return  # the check copy is long-term
    if check_location not in days:
        raise ConfigError(f"unknown retention location {check_location!r} of {check_endpoint} ({RETENTION_FILE.name})")
    if days[check_location] < days[location]:
        raise ManifestError(
            f"{endpoint} ({location}, {days[location]} days) is checked against {check_endpoint} "
            f"({check_location}, {days[check_location]} days), which falls due first: the check copy must be "
            "long-term or outlive its target"
        )


def is_long_term(endpoint: str, endpoints: Endpoints | None = None) -> bool:
    """Whether ``endpoint`` holds long-term copies (no retention in include/config/retention.yaml)."""
    (endpoints or load_endpoints())[endpoint]  # an unknown endpoint is a ConfigError, not "long-term"
    return endpoint not in retention_map()[0]


# -- validation -----------------------------------------------------------------------------------
def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise ManifestError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ManifestError(f"{name} {value.isoformat()} has no time zone")
    return value.astimezone(UTC)


def _overlaps(a: PurePosixPath, b: PurePosixPath) -> bool:
    """True when one path is the other or lies inside it."""
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def check_deletable(
    endpoint: str, path: str, check_endpoint: str | None, endpoints: Endpoints | None = None
) -> PurePosixPath:
    """Validate a deletion target and its check copy; return the clean endpoint-relative path.

    Refuses unknown endpoints, paths outside the endpoint (absolute, ``..``, the root itself), a missing
    check endpoint, a check copy that is the target itself (same collection, overlapping paths) and any
    path overlapping a protected long-term copy (nersc832 ``raw/``) on any collection.
    """
    endpoints = endpoints or load_endpoints()
    target = endpoints[endpoint]
    rel = endpoint_relative(path)
    absolute = PurePosixPath(target.globus_path(rel))
    for protected_endpoint, protected_path in PROTECTED:
        if protected_endpoint in endpoints:
            guarded = PurePosixPath(endpoints[protected_endpoint].globus_path(protected_path))
            if _overlaps(absolute, guarded):
                raise ManifestError(f"{endpoint}:{rel} is (or contains) the long-term copy {guarded}: never pruned")
    if check_endpoint is None:
        raise ManifestError(
            f"{endpoint}:{rel}: no check endpoint; a deletion is only scheduled against a copy that prune "
            "can verify (name the endpoint holding the copy)"
        )
    check = endpoints[check_endpoint]
    check_absolute = PurePosixPath(check.globus_path(rel))
    if check.uuid == target.uuid and _overlaps(absolute, check_absolute):
        raise ManifestError(f"{endpoint}:{rel}: the check copy {check_endpoint}:{rel} is the same data, not a copy")
    return rel


def entry_key(day: date, dag_id: str, run_id: str, endpoint: str, path: str) -> str:
    digest = hashlib.sha256("\x00".join((dag_id, run_id, endpoint, path)).encode()).hexdigest()[:32]
    return f"{KEY_PREFIX}{day:%Y%m%d}/{digest}"


# -- writing --------------------------------------------------------------------------------------
def schedule_deletion(
    *,
    endpoint: str,
    path: str,
    check_endpoint: str | None,
    location: str,
    dag_id: str,
    run_id: str,
    record: Record | None,
    check_path: str | None = None,
    now: datetime | None = None,
    store: VariableStore | None = None,
) -> ManifestEntry:
    """Record that ``endpoint:path`` may be deleted once ``location``'s retention has passed.

    ``record`` is what the copy held right after it was made (:func:`include.records.record_of`); prune
    deletes only if the target still holds exactly that and ``check_endpoint:path`` matches it.
    ``check_path``: only for results that can be regenerated, the raw scan on the long-term
    ``check_endpoint`` (opt-in per site, include/config/retention.yaml). Refused (``ManifestError``): no
    record, no check endpoint, a location that is not the endpoint's, a check copy that falls due first.
    Idempotent per (dag_id, run_id, endpoint, path). Raises ConfigError (unknown endpoint or location),
    InvalidPathError (path outside the endpoint) or ManifestError (unsafe or malformed entry).
    """
    for name, value in (("dag_id", dag_id), ("run_id", run_id), ("location", location)):
        if not isinstance(value, str) or not value:
            raise ManifestError(f"{name} must be a non-empty string")
    rel = check_deletable(endpoint, path, check_endpoint)
    if not isinstance(record, Record):
        raise ManifestError(
            f"{endpoint}:{path}: no record of what was copied (sizes and times of its files): refused, prune "
            "could not tell a changed target from the copy"
        )
    if check_path is not None:
        endpoints = load_endpoints()
        if not is_long_term(check_endpoint, endpoints):
            raise ManifestError(f"{endpoint}:{rel}: regenerating needs a long-term raw copy, not {check_endpoint}")
        check_path = str(endpoint_relative(check_path))
    store = store or default_store()
    keep_days = retention_days(location, store=store)
    check_retention_order(endpoint, location, str(check_endpoint), retention_table(store=store))
    created = _aware(now, "now") if now is not None else datetime.now(UTC)
    not_before = created + timedelta(days=keep_days)
    entry = ManifestEntry(
        key=entry_key(not_before.date(), dag_id, run_id, endpoint, str(rel)),
        endpoint=endpoint,
        path=str(rel),
        check_endpoint=str(check_endpoint),
        location=location,
        not_before=not_before,
        dag_id=dag_id,
        run_id=run_id,
        size=record.size,
        checksum=record.checksum,
        created_at=created,
        files=record.files,
        mtime=record.mtime,
        digest=record.digest,
        check_path=check_path,
    )
    store.set(entry.key, entry.to_json())
    return entry


@dataclass(frozen=True)
class DeletionRequest:
    """A copy a pipeline made (or may have made): ``endpoint:path`` may go after ``location``'s retention,
    once ``check_endpoint:path`` is verified. ``after`` names the step (a task id in the pipeline) whose
    success makes the copy exist; ``None``: the copy may exist as soon as the pipeline started (work areas
    a failed step can leave half-written)."""

    endpoint: str
    path: str
    check_endpoint: str
    location: str
    after: str | None = None
    check_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeletionRequest:
        return cls(**data)

    @property
    def check(self) -> EndpointPath:
        return EndpointPath(self.check_endpoint, self.check_path or self.path)

    def __str__(self) -> str:
        return f"{self.endpoint}:{self.path} (check {self.check_endpoint}, {self.location})"


def schedule_deletions(
    requests: Iterable[tuple[DeletionRequest, Record | None]],
    *,
    dag_id: str,
    run_id: str,
    now: datetime | None = None,
    store: VariableStore | None = None,
) -> list[dict[str, Any]]:
    """Record several copies for one run, each with its record (``None``: nothing is there; skipped).

    Records every copy it can and then raises one error naming each that was refused, so one bad entry
    never leaves the others unrecorded. Returns the recorded entries, summarised.
    """
    recorded, errors = [], []
    for request, record in requests:
        if record is None:
            print(f"nothing at {request.endpoint}:{request.path}: no deletion to record")
            continue
        try:
            entry = schedule_deletion(
                endpoint=request.endpoint,
                path=request.path,
                check_endpoint=request.check_endpoint,
                location=request.location,
                dag_id=dag_id,
                run_id=run_id,
                record=record,
                check_path=request.check_path,
                now=now,
                store=store,
            )
        except (ManifestError, ValueError) as exc:
            errors.append(f"{request.endpoint}:{request.path}: {type(exc).__name__}: {exc}")
        else:
            recorded.append(summarize(entry))
            print(
                f"scheduled deletion of {entry.endpoint}:{entry.path} after {entry.not_before:%Y-%m-%d %H:%M} UTC "
                f"if {entry.check} matches ({entry.location}; {entry.files} file(s), {entry.size} bytes)"
            )
    if errors:
        raise ManifestError("could not record deletion(s):\n" + "\n".join(errors))
    return recorded


# -- reading and removing (the prune DAG) ------------------------------------------------------------
def manifest_day(key: str) -> date | None:
    """The due day encoded in a manifest key, or None for a key that is not a manifest entry."""
    if not key.startswith(KEY_PREFIX):
        return None
    day, _, rest = key[len(KEY_PREFIX) :].partition("/")
    if not rest or "/" in rest:
        return None
    try:
        return datetime.strptime(day, "%Y%m%d").date()
    except ValueError:
        return None


def due_keys(as_of: datetime, *, store: VariableStore | None = None) -> list[str]:
    """Keys of every entry whose due day is on or before ``as_of``'s UTC day (one paged key listing)."""
    as_of_day = _aware(as_of, "as_of").date()
    keys = (store or default_store()).keys(KEY_PREFIX)
    return [key for key in keys if (day := manifest_day(key)) is not None and day <= as_of_day]


@dataclass(frozen=True)
class BadEntry:
    """A stored entry that cannot be acted on (kept in the manifest, reported)."""

    key: str
    reason: str


def load_entries(keys: Iterable[str], *, store: VariableStore | None = None) -> Iterator[ManifestEntry | BadEntry]:
    """Read entries by key; a vanished key is skipped, a malformed one yields :class:`BadEntry`."""
    store = store or default_store()
    for key in keys:
        raw = store.get(key)
        if raw is None:
            continue
        try:
            yield ManifestEntry.from_json(key, raw)
        except ManifestError as exc:
            yield BadEntry(key, str(exc))


def due_entries(as_of: datetime, *, store: VariableStore | None = None) -> Iterator[ManifestEntry | BadEntry]:
    """Entries whose not-before time is at or before ``as_of`` (plus malformed ones of due days)."""
    store = store or default_store()
    as_of = _aware(as_of, "as_of")
    for item in load_entries(due_keys(as_of, store=store), store=store):
        if isinstance(item, BadEntry) or item.not_before <= as_of:
            yield item


def remove_entries(keys: Sequence[str], *, store: VariableStore | None = None) -> int:
    """Delete manifest entries (after their deletion succeeded); returns how many keys were removed."""
    store = store or default_store()
    for key in keys:
        if manifest_day(key) is None:
            raise ManifestError(f"{key!r} is not a manifest key")
        store.delete(key)
    return len(keys)


def pending_count(*, store: VariableStore | None = None) -> int:
    return len((store or default_store()).keys(KEY_PREFIX))


def summarize(entry: ManifestEntry) -> dict[str, Any]:
    """The entry as a plain dict for logs, XCom and notes."""
    data = json.loads(entry.to_json())
    data["key"] = entry.key
    return data
