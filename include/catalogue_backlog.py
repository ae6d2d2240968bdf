"""SciCat registrations still owed: what a run could not catalogue, kept until the catch-up registers it.

A run never waits for SciCat: when a SciCat step fails after its retries while the data and reconstruction
steps of its pipeline succeeded, ``finish`` records what the step was asked to do (its operator's rendered
arguments) as one entry here; the ``scicat_catchup`` DAG replays the entries (the operators are idempotent:
they find the dataset a previous attempt made) and removes each once its registration succeeded. Entries are
Airflow Variables ``als_scicat_pending/<dag_id>/<run_id>/<task_id>`` (one per step, so a retried or cleared
``finish`` rewrites its own entry and runs never race on a shared value). Plain Python: the store is the one
the deletion manifests use.

While an entry is owed, :func:`held_copies` names the copies it will read (the prune keeps them), and
:func:`owed_raw` tells a derived step that its scan's raw dataset is still owed (so it is owed too, not skipped).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from include.manifests import VariableStore, default_store

KEY_PREFIX = "als_scicat_pending/"
#: What an entry replays: a raw dataset of a scan, a derived dataset of a reconstruction.
KINDS = ("raw", "derived")


class BacklogError(ValueError):
    """An entry that cannot be replayed (kept, reported)."""


@dataclass(frozen=True)
class OwedRegistration:
    """One SciCat registration a run could not make."""

    kind: str
    kwargs: dict[str, Any]
    dag_id: str
    run_id: str
    task_id: str
    error: str = ""
    recorded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BacklogError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not isinstance(self.kwargs, dict) or not self.kwargs.get("file_path"):
            raise BacklogError("kwargs must name the scan (file_path)")

    @property
    def key(self) -> str:
        return f"{KEY_PREFIX}{self.dag_id}/{self.run_id}/{self.task_id}"

    def describe(self) -> str:
        where = f" at {self.kwargs['site']}" if self.kind == "derived" and self.kwargs.get("site") else ""
        return f"{self.kind} dataset of {self.kwargs['file_path']}{where} ({self.dag_id} {self.run_id})"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> OwedRegistration:
        try:
            data = json.loads(text)
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise BacklogError(f"not an owed registration: {exc}") from None


def record(owed: list[OwedRegistration], *, store: VariableStore | None = None) -> list[str]:
    """Store each registration (rewriting an earlier entry of the same step); returns their keys."""
    store = store or default_store()
    for item in owed:
        store.set(item.key, item.to_json())
    return [item.key for item in owed]


def pending(*, store: VariableStore | None = None) -> tuple[list[tuple[str, OwedRegistration]], dict[str, str]]:
    """Every stored entry, raw ones first (a derived dataset needs its raw one), oldest first; and the keys
    of entries that cannot be read, with why (kept for a person to look at)."""
    store = store or default_store()
    good, bad = [], {}
    for key in store.keys(KEY_PREFIX):
        text = store.get(key)
        if text is None:
            continue
        try:
            good.append((key, OwedRegistration.from_json(text)))
        except BacklogError as exc:
            bad[key] = str(exc)
    good.sort(key=lambda item: (KINDS.index(item[1].kind), item[1].recorded_at, item[0]))
    return good, bad


def _relatives(file_path: Any, ingester: str) -> list[str]:
    """The endpoint-relative files of an entry's ``file_path`` (a path, a list, or a list's JSON text)."""
    from include.paths import BEAMLINE_RAW_PREFIX, endpoint_relative, parse_scan

    value = file_path
    if isinstance(value, str) and value.strip().startswith("["):
        value = json.loads(value)
    out = []
    for path in [value] if isinstance(value, str) else list(value):
        if ingester in ("als_733_saxs", "als733_saxs"):
            raw = path[len(str(BEAMLINE_RAW_PREFIX)) + 1 :] if path.startswith(f"{BEAMLINE_RAW_PREFIX}/") else path
            out.append(str(endpoint_relative(raw)))
        else:
            out.append(str(parse_scan(path).relative_path))
    return out


def held_copies(*, store: VariableStore | None = None) -> dict[tuple[str, str], str]:
    """``{(endpoint, endpoint-relative path): reason}`` of every copy an owed registration will read.

    The prune keeps these while the registration is owed: a raw entry reads its scan file(s) at its
    ``endpoint`` (default data832_raw); a derived entry lists its ``results_folder`` at its ``endpoint``
    (default data832_scratch) and reads its scan at ``raw_endpoint`` for the raw dataset's name. An entry
    that cannot be read holds nothing it could name; the catch-up reports it.
    """
    held: dict[tuple[str, str], str] = {}
    for key, item in pending(store=store)[0]:
        reason = f"registration owed: {key}"
        kw = item.kwargs
        try:
            if item.kind == "raw":
                for rel in _relatives(kw["file_path"], str(kw.get("ingester") or "als_832_dx_4")):
                    held.setdefault((str(kw.get("endpoint") or "data832_raw"), rel), reason)
            else:
                from include.paths import endpoint_relative, parse_scan

                if not kw.get("raw_pid"):
                    rel = str(parse_scan(kw["file_path"]).relative_path)
                    held.setdefault((str(kw.get("raw_endpoint") or "data832_raw"), rel), reason)
                if kw.get("results_folder"):
                    rel = str(endpoint_relative(kw["results_folder"]))
                    held.setdefault((str(kw.get("endpoint") or "data832_scratch"), rel), reason)
        except (ValueError, TypeError, KeyError):  # InvalidPathError is a ValueError
            continue
    return held


def owed_raw(relative_path: str, *, store: VariableStore | None = None) -> list[str]:
    """The keys of owed raw registrations of the scan ``<folder>/<file>``: a derived dataset of it is owed
    too (it cannot link a raw dataset that does not exist yet), never skipped."""
    keys = []
    for key, item in pending(store=store)[0]:
        if item.kind != "raw":
            continue
        try:
            files = _relatives(item.kwargs["file_path"], str(item.kwargs.get("ingester") or "als_832_dx_4"))
        except (ValueError, TypeError, KeyError):
            continue
        if str(relative_path) in files:
            keys.append(key)
    return keys


def settle(keys: list[str], *, store: VariableStore | None = None) -> int:
    """Remove the entries of registrations that succeeded; returns how many."""
    store = store or default_store()
    for key in keys:
        if not key.startswith(KEY_PREFIX):
            raise BacklogError(f"{key!r} is not a SciCat backlog key")
        store.delete(key)
    return len(keys)
