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
airflow_settings.yaml).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any, Protocol

from include.endpoints import Endpoints, load_endpoints
from include.errors import ConfigError
from include.paths import endpoint_relative

#: Every manifest key starts with this; nothing else may use it.
KEY_PREFIX = "als_prune/"
#: The Variable holding {location: retention days}.
RETENTION_VARIABLE = "als_retention_days"
#: Long-term copies that are never pruned: (endpoint, endpoint-relative path). Compared as absolute
#: collection paths on every collection, since several collections mount the same file system.
PROTECTED: tuple[tuple[str, str], ...] = (("nersc832", "raw"),)
ENTRY_VERSION = 1


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

    def to_json(self) -> str:
        data = asdict(self)
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
            if not isinstance(data, dict) or data.get("v") != ENTRY_VERSION:
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
    size: int | None = None,
    checksum: str | None = None,
    now: datetime | None = None,
    store: VariableStore | None = None,
) -> ManifestEntry:
    """Record that ``endpoint:path`` may be deleted once ``location``'s retention has passed.

    Prune deletes it only if ``check_endpoint:path`` then exists with the same size (and checksum
    where known). ``check_endpoint=None`` is refused: nothing is ever deleted without a verified copy.
    Idempotent per (dag_id, run_id, endpoint, path). Raises ConfigError (unknown endpoint or location),
    InvalidPathError (path outside the endpoint) or ManifestError (unsafe or malformed entry).
    """
    for name, value in (("dag_id", dag_id), ("run_id", run_id), ("location", location)):
        if not isinstance(value, str) or not value:
            raise ManifestError(f"{name} must be a non-empty string")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ManifestError(f"size must be an integer >= 0 or None, got {size!r}")
    if checksum is not None and (not isinstance(checksum, str) or not checksum.strip()):
        raise ManifestError("checksum must be a non-empty string or None")
    rel = check_deletable(endpoint, path, check_endpoint)
    store = store or default_store()
    created = _aware(now, "now") if now is not None else datetime.now(UTC)
    not_before = created + timedelta(days=retention_days(location, store=store))
    entry = ManifestEntry(
        key=entry_key(not_before.date(), dag_id, run_id, endpoint, str(rel)),
        endpoint=endpoint,
        path=str(rel),
        check_endpoint=str(check_endpoint),
        location=location,
        not_before=not_before,
        dag_id=dag_id,
        run_id=run_id,
        size=size,
        checksum=checksum.strip() if checksum else None,
        created_at=created,
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeletionRequest:
        return cls(**data)

    def __str__(self) -> str:
        return f"{self.endpoint}:{self.path} (check {self.check_endpoint}, {self.location})"


def schedule_deletions(requests: Iterable[DeletionRequest], *, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """Record several copies for one run.

    Records every copy it can and then raises one error naming each that was refused, so one bad entry
    never leaves the others unrecorded. Returns the recorded entries, summarised.
    """
    recorded, errors = [], []
    for request in requests:
        try:
            entry = schedule_deletion(
                endpoint=request.endpoint,
                path=request.path,
                check_endpoint=request.check_endpoint,
                location=request.location,
                dag_id=dag_id,
                run_id=run_id,
            )
        except (ManifestError, ValueError) as exc:
            errors.append(f"{request.endpoint}:{request.path}: {type(exc).__name__}: {exc}")
        else:
            recorded.append(summarize(entry))
            print(
                f"scheduled deletion of {entry.endpoint}:{entry.path} after {entry.not_before:%Y-%m-%d %H:%M} UTC "
                f"if {entry.check_endpoint}:{entry.path} matches ({entry.location})"
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
