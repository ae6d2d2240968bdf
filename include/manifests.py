"""Deletion manifests: what may be deleted where, once its retention has passed and a copy is verified.

Every pipeline that makes a copy records, with :func:`schedule_deletion`, that the copy may be deleted
later. The ``prune`` DAG reads the due entries, verifies the check copy and deletes. See docs/pruning.md.

Storage: one Airflow Variable per entry, key ``als_prune/<YYYYMMDD>/<id>`` where ``<YYYYMMDD>`` is the
UTC day the entry falls due counted from the run's own time (``since``: the same on every try, so a retry
across UTC midnight rewrites the same key) and ``<id>`` a hash of (dag_id, run_id, endpoint, path). Writers
only ever create their own keys (one PUT, no read-modify-write), so concurrent runs cannot lose an entry
even though a Variable has no compare-and-set; a retry of the same run rewrites the same key with the
same entry. Only the prune DAG (one active run) deletes keys. The day in the key lets prune read only
the values of days up to ``as_of``; keys are listed with ``Variable.keys(prefix)`` (Task SDK, paged).

Retention days per location come from the Variable ``als_retention_days`` (a JSON object, defaults in
airflow_settings.yaml); which location applies on which endpoint, and which endpoints hold long-term copies,
from include/config/retention.yaml (the check copy must outlive its target: refused otherwise).

Every entry records what was copied (:class:`~include.records.Record`: every file's size and modification
time, digested; a checksum where known); an entry without one is refused.

Variables are editable by any UI user, so an entry is trusted only as far as it is checked: every entry is
signed when written (HMAC, include/signing.py, key in the Connection ``als_signing``) and, when read, its
signature is verified and the write-time rules (:func:`validate_entry`) are applied again. An entry that
fails either is refused (:class:`BadEntry`, ``kind="refused"``): prune deletes nothing for it and fails,
naming it. Entries written before signing (version 2) are refused until an operator reviews and re-signs
them: ``python -m tools.manifests review`` / ``resign KEY...`` (docs/pruning.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any, Protocol

from include import signing
from include.endpoints import Endpoint, Endpoints, load_endpoints
from include.errors import ConfigError
from include.paths import EndpointPath, endpoint_relative
from include.records import Record
from include.retention import (  # re-exported: the manifests' callers use them from here
    RETENTION_FILE,
    DeletionRequest,
    long_term_endpoints,
    retention_map,
)

log = logging.getLogger(__name__)

#: Every manifest key starts with this; nothing else may use it.
KEY_PREFIX = "als_prune/"
#: The Variable holding {location: retention days}.
RETENTION_VARIABLE = "als_retention_days"
#: Version 3 entries are signed (``sig``); version 2 (a record, unsigned) and 1 (no record) are refused when
#: read until reviewed and re-signed (``python -m tools.manifests resign``).
ENTRY_VERSION = 3
#: What a manifest entry's signature is made for (include/signing.py).
SIGNATURE_KIND = "manifest"
RESIGN_HINT = "review it, then re-sign it (python -m tools.manifests resign KEY) or delete the Variable"


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

    def payload(self) -> dict[str, Any]:
        """The stored fields (no key, no signature): what logs, XCom and the signature see."""
        data = {k: v for k, v in asdict(self).items() if v is not None or k in ("size", "checksum")}
        data.pop("key")
        data["v"] = ENTRY_VERSION
        data["not_before"] = self.not_before.isoformat()
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        return data

    def to_json(self) -> str:
        """The stored form: the payload and its signature over (key, payload) (needs the signing key)."""
        data = self.payload()
        data["sig"] = signing.sign(SIGNATURE_KIND, {"key": self.key, **data})
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, key: str, text: str, *, verify: bool = True) -> ManifestEntry:
        """Parse a stored entry and verify its signature; :class:`ManifestError` for anything malformed,
        :class:`~include.signing.SignatureError` for an unsigned, edited or forged one."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ManifestError(f"manifest {key}: malformed entry (not JSON: {exc})") from None
        if not isinstance(data, dict):
            raise ManifestError(f"manifest {key}: malformed entry (not a JSON object)")
        signature = data.pop("sig", None)
        if verify:
            if data.get("v") in (1, 2) and signature is None:
                raise signing.SignatureError(
                    f"manifest {key}: unsigned version {data['v']} entry (written before entries were signed, "
                    f"or forged): {RESIGN_HINT}"
                )
            try:
                signing.verify(SIGNATURE_KIND, {"key": key, **data}, signature)
            except signing.SignatureError as exc:
                raise signing.SignatureError(f"manifest {key}: {exc}; {RESIGN_HINT}") from None
        if data.get("v") not in (1, 2, ENTRY_VERSION):
            raise ManifestError(f"manifest {key}: unknown entry version {data.get('v')!r}")
        try:
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


def check_retention_order(endpoint: str, location: str, check_endpoint: str, days: Mapping[str, int]) -> None:
    """Refuse an entry whose location is not its endpoint's, or whose check copy falls due first."""
    table, _ = retention_map()
    expected = table.get(endpoint)
    if expected is None:
        raise ManifestError(f"{endpoint} holds long-term copies ({RETENTION_FILE.name}): never scheduled for deletion")
    if location != expected:
        raise ManifestError(f"{endpoint}: copies there have retention location {expected!r}, not {location!r}")
    check_location = table.get(check_endpoint)
    if check_location is None:
        if check_endpoint not in long_term_endpoints():
            raise ManifestError(
                f"check copy on {check_endpoint}, which {RETENTION_FILE.name} names neither temporary nor long_term"
            )
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
    """Whether ``endpoint`` holds long-term copies (``long_term`` in include/config/retention.yaml)."""
    (endpoints or load_endpoints())[endpoint]  # an unknown endpoint is a ConfigError, not "long-term"
    return endpoint in long_term_endpoints()


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


def _place(endpoint: Endpoint, rel: PurePosixPath | str) -> tuple[str, PurePosixPath]:
    """Where a path is: (file system, absolute collection path); several collections mount one file system."""
    return endpoint.collection.storage, PurePosixPath(endpoint.globus_path(rel))


def protected_place(endpoint: str, rel: PurePosixPath, endpoints: Endpoints) -> str | None:
    """The long-term endpoint whose copies ``endpoint:rel`` is, contains or lies inside, or ``None``.

    Every ``long_term`` endpoint of include/config/retention.yaml guards its whole root on its file system,
    through any collection, except the temporary endpoints nested in it (nersc733_raw inside nersc733).
    """
    storage, absolute = _place(endpoints[endpoint], rel)
    temporary = [_place(endpoints[name], ".") for name in retention_map()[0] if name in endpoints]
    long_term = [(name, *_place(endpoints[name], ".")) for name in long_term_endpoints() if name in endpoints]
    for name, guarded_storage, guarded in sorted(long_term, key=lambda g: (-len(g[2].parts), g[0])):  # closest first
        if guarded_storage != storage or not _overlaps(absolute, guarded):
            continue
        inside_temporary = any(
            t_storage == storage and t_root != guarded and t_root.is_relative_to(guarded)
            and absolute.is_relative_to(t_root) and absolute != t_root
            for t_storage, t_root in temporary
        )  # fmt: skip
        if not inside_temporary:
            return name
    return None


def check_deletable(
    endpoint: str, path: str, check_endpoint: str | None, endpoints: Endpoints | None = None
) -> PurePosixPath:
    """Validate a deletion target and its check copy; return the clean endpoint-relative path.

    Refuses unknown endpoints, paths outside the endpoint (absolute, ``..``, the root itself), a missing
    check endpoint, a check copy that is the target itself (same file system, overlapping paths) and any
    path that is, contains or lies inside a long-term endpoint's copies (:func:`protected_place`).
    """
    endpoints = endpoints or load_endpoints()
    target = endpoints[endpoint]
    rel = endpoint_relative(path)
    guard = protected_place(endpoint, rel, endpoints)
    if guard is not None:
        raise ManifestError(
            f"{endpoint}:{rel} is (or contains, or lies inside) the long-term copies of {guard} "
            f"({endpoints[guard].root}): never pruned"
        )
    if check_endpoint is None:
        raise ManifestError(
            f"{endpoint}:{rel}: no check endpoint; a deletion is only scheduled against a copy that prune "
            "can verify (name the endpoint holding the copy)"
        )
    storage, absolute = _place(target, rel)
    check_storage, check_absolute = _place(endpoints[check_endpoint], rel)
    if check_storage == storage and _overlaps(absolute, check_absolute):
        raise ManifestError(f"{endpoint}:{rel}: the check copy {check_endpoint}:{rel} is the same data, not a copy")
    return rel


def check_regeneration(endpoint: str, rel: PurePosixPath, check_endpoint: str, check_path: str) -> PurePosixPath:
    """Validate a ``check_path``: what a run regenerates, pruned once the scan's long-term raw copy exists (the
    rule: :func:`include.plans.regeneration_problem`). Returns the clean check path; raises
    :class:`ManifestError` otherwise."""
    from include.plans import regeneration_problem

    clean = endpoint_relative(check_path)
    problem = regeneration_problem(endpoint, rel, check_endpoint, str(clean))
    if problem:
        raise ManifestError(f"{endpoint}:{rel} (check {check_endpoint}:{check_path}): {problem}")
    return clean


def validate_entry(
    entry: ManifestEntry, *, days: Mapping[str, int], endpoints: Endpoints | None = None
) -> ManifestEntry:
    """Every rule an entry must meet, when it is written and again when prune reads it (the same function).

    The target is on a temporary endpoint, not a long-term copy (:func:`check_deletable`), with its
    endpoint's retention location; its check copy is elsewhere and long-term or outlives it
    (:func:`check_retention_order`, ``days``: the Variable ``als_retention_days``); it has a record; a
    ``check_path`` only as :func:`check_regeneration` allows. Raises :class:`ManifestError` naming the key.
    """
    for name in ("dag_id", "run_id", "location"):
        value = getattr(entry, name)
        if not isinstance(value, str) or not value:
            raise ManifestError(f"{name} must be a non-empty string")
    rel = check_deletable(entry.endpoint, entry.path, entry.check_endpoint, endpoints)
    if str(rel) != entry.path:
        raise ManifestError(f"{entry.endpoint}:{entry.path}: not in its clean form {rel}")
    if entry.record is None:
        raise ManifestError(
            f"{entry}: no record of what was copied (sizes and times of its files): refused, prune "
            "could not tell a changed target from the copy"
        )
    check_retention_order(entry.endpoint, entry.location, entry.check_endpoint, days)
    if entry.check_path is not None:
        clean = check_regeneration(entry.endpoint, rel, entry.check_endpoint, entry.check_path)
        if str(clean) != entry.check_path:
            raise ManifestError(f"{entry}: check_path {entry.check_path!r} is not in its clean form {clean}")
    if entry.created_at is not None and entry.not_before < entry.created_at:
        raise ManifestError(f"{entry}: not_before {entry.not_before:%Y-%m-%d %H:%M} precedes its creation")
    return entry


def entry_key(day: date, dag_id: str, run_id: str, endpoint: str, path: str) -> str:
    digest = hashlib.sha256("\x00".join((dag_id, run_id, endpoint, path)).encode()).hexdigest()[:32]
    return f"{KEY_PREFIX}{day:%Y%m%d}/{digest}"


def new_entry(
    request: DeletionRequest,
    record: Record,
    *,
    due: date,
    not_before: datetime,
    dag_id: str,
    run_id: str,
    created_at: datetime | None = None,
) -> ManifestEntry:
    """The entry (neither validated nor signed) for ``request``'s copy, which holds ``record``, keyed under
    the day ``due`` (:func:`entry_key`)."""
    return ManifestEntry(
        key=entry_key(due, dag_id, run_id, request.endpoint, request.path),
        endpoint=request.endpoint,
        path=request.path,
        check_endpoint=request.check_endpoint,
        location=request.location,
        not_before=not_before,
        dag_id=dag_id,
        run_id=run_id,
        size=record.size,
        checksum=record.checksum,
        created_at=created_at,
        files=record.files,
        mtime=record.mtime,
        digest=record.digest,
        check_path=request.check_path,
    )


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
    since: datetime | None = None,
    store: VariableStore | None = None,
) -> ManifestEntry:
    """Record that ``endpoint:path`` may be deleted once ``location``'s retention has passed.

    ``record`` is what the copy held right after it was made (:func:`include.records.record_of`); prune
    deletes only if the target still holds exactly that and ``check_endpoint:path`` matches it.
    ``check_path``: only for results that can be regenerated, the raw scan on the long-term
    ``check_endpoint`` (opt-in per site, include/config/retention.yaml). ``since``: the run's own time (its
    ``run_after``), the same on every try: the key's day is ``since`` plus the retention, so a retry, even
    across UTC midnight, rewrites the same key (default ``now``); retention still counts from ``now``.
    Refused (``ManifestError``): any rule of :func:`validate_entry`. The entry is signed (include/signing.py).
    Idempotent per (dag_id, run_id, endpoint, path). Raises ConfigError (unknown endpoint or location, no
    signing key), InvalidPathError (path outside the endpoint) or ManifestError (unsafe or malformed entry).
    """
    request = DeletionRequest(endpoint, path, check_endpoint, location, check_path=check_path)
    return schedule_request(request, record, dag_id=dag_id, run_id=run_id, now=now, since=since, store=store)


def schedule_request(
    request: DeletionRequest,
    record: Record | None,
    *,
    dag_id: str,
    run_id: str,
    now: datetime | None = None,
    since: datetime | None = None,
    store: VariableStore | None = None,
) -> ManifestEntry:
    """:func:`schedule_deletion` of ``request``'s copy, which holds ``record`` (``after`` is not used)."""
    endpoint, path, check_endpoint, location = request.endpoint, request.path, request.check_endpoint, request.location
    for name, value in (("dag_id", dag_id), ("run_id", run_id), ("location", location)):
        if not isinstance(value, str) or not value:
            raise ManifestError(f"{name} must be a non-empty string")
    rel = check_deletable(endpoint, path, check_endpoint)
    if not isinstance(record, Record):
        raise ManifestError(
            f"{endpoint}:{path}: no record of what was copied (sizes and times of its files): refused, prune "
            "could not tell a changed target from the copy"
        )
    check_path = None if request.check_path is None else str(endpoint_relative(request.check_path))
    store = store or default_store()
    keep_days = retention_days(location, store=store)
    created = _aware(now, "now") if now is not None else datetime.now(UTC)
    start = _aware(since, "since") if since is not None else created
    if start > created:
        raise ManifestError(f"since {start.isoformat()} is after now {created.isoformat()}")
    entry = new_entry(
        DeletionRequest(endpoint, str(rel), str(check_endpoint), location, check_path=check_path),
        record,
        due=(start + timedelta(days=keep_days)).date(),
        not_before=created + timedelta(days=keep_days),
        dag_id=dag_id,
        run_id=run_id,
        created_at=created,
    )
    validate_entry(entry, days=retention_table(store=store))
    store.set(entry.key, entry.to_json())
    return entry


def schedule_deletions(
    requests: Iterable[tuple[DeletionRequest, Record | None]],
    *,
    dag_id: str,
    run_id: str,
    now: datetime | None = None,
    since: datetime | None = None,
    store: VariableStore | None = None,
) -> list[dict[str, Any]]:
    """Record several copies for one run, each with its record (``None``: nothing is there; skipped).

    Records every copy it can and then raises one error naming each that was refused, so one bad entry
    never leaves the others unrecorded. ``since``: the run's own time (see :func:`schedule_deletion`).
    Returns the recorded entries, summarised.
    """
    recorded, errors = [], []
    for request, record in requests:
        if record is None:
            log.info("nothing at %s:%s: no deletion to record", request.endpoint, request.path)
            continue
        try:
            entry = schedule_request(request, record, dag_id=dag_id, run_id=run_id, now=now, since=since, store=store)
        except (ManifestError, ValueError) as exc:
            errors.append(f"{request.endpoint}:{request.path}: {type(exc).__name__}: {exc}")
        else:
            recorded.append(summarize(entry))
            log.info(
                "scheduled deletion of %s after %s UTC if %s matches (%s; %s file(s), %s bytes)",
                entry,
                f"{entry.not_before:%Y-%m-%d %H:%M}",
                entry.check,
                entry.location,
                entry.files,
                entry.size,
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
    """A stored entry that cannot be acted on (kept in the manifest, reported; the prune run fails).

    ``kind``: ``malformed`` (cannot be parsed) or ``refused`` (unsigned, edited or forged, or breaking a rule
    of :func:`validate_entry`)."""

    key: str
    reason: str
    kind: str = "malformed"


def read_entry(
    key: str, text: str, *, days: Mapping[str, int], endpoints: Endpoints | None = None
) -> ManifestEntry | BadEntry:
    """One stored entry, trusted only once its signature verifies and :func:`validate_entry` accepts it."""
    try:
        entry = ManifestEntry.from_json(key, text)
    except signing.SignatureError as exc:
        return BadEntry(key, f"edited or forged: {exc}", kind="refused")
    except ManifestError as exc:
        return BadEntry(key, str(exc))
    try:
        validate_entry(entry, days=days, endpoints=endpoints)
    except ValueError as exc:  # ManifestError, ConfigError, InvalidPathError
        return BadEntry(key, f"manifest {key} ({entry}): {exc}", kind="refused")
    return entry


def load_entries(
    keys: Iterable[str], *, store: VariableStore | None = None, endpoints: Endpoints | None = None
) -> Iterator[ManifestEntry | BadEntry]:
    """Read entries by key; a vanished key is skipped, a malformed, unsigned, edited or unsafe one yields
    :class:`BadEntry`. Raises ConfigError when the retention Variable or the signing key is missing."""
    store = store or default_store()
    days: dict[str, int] | None = None
    for key in keys:
        raw = store.get(key)
        if raw is None:
            continue
        if days is None:
            days = retention_table(store=store)
        yield read_entry(key, raw, days=days, endpoints=endpoints)


def due_entries(
    as_of: datetime, *, store: VariableStore | None = None, endpoints: Endpoints | None = None
) -> Iterator[ManifestEntry | BadEntry]:
    """Entries whose not-before time is at or before ``as_of`` (plus refused ones of due days)."""
    store = store or default_store()
    as_of = _aware(as_of, "as_of")
    for item in load_entries(due_keys(as_of, store=store), store=store, endpoints=endpoints):
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
    """The entry as a plain dict for logs, XCom and notes (no signature)."""
    return {**entry.payload(), "key": entry.key}


# -- operator commands ------------------------------------------------------------------------------
def review(*, store: VariableStore | None = None) -> list[BadEntry]:
    """Every stored entry that prune would refuse (unsigned, edited, forged, unsafe or malformed)."""
    store = store or default_store()
    return [item for item in load_entries(store.keys(KEY_PREFIX), store=store) if isinstance(item, BadEntry)]


def resign(keys: Sequence[str], *, store: VariableStore | None = None) -> list[ManifestEntry]:
    """Sign entries a person has reviewed (e.g. written before entries were signed): each is parsed without
    its signature, must pass :func:`validate_entry` and is written back, unchanged but signed. Raises
    :class:`ManifestError` naming every key that cannot be re-signed (those are left as they are)."""
    store = store or default_store()
    days = retention_table(store=store)
    done, errors = [], []
    for key in keys:
        raw = store.get(key) if manifest_day(key) is not None else None
        if raw is None:
            errors.append(f"{key}: no such manifest entry")
            continue
        try:
            entry = validate_entry(ManifestEntry.from_json(key, raw, verify=False), days=days)
        except ValueError as exc:
            errors.append(f"{key}: {exc}")
            continue
        store.set(key, entry.to_json())
        done.append(entry)
    if errors:
        raise ManifestError("not re-signed (delete the Variable if the entry is wrong):\n" + "\n".join(errors))
    return done
