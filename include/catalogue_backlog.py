"""SciCat registrations still owed: what a run could not catalogue, kept until the catch-up registers it.

A run never waits for SciCat: when a SciCat step fails after its retries while the data and reconstruction
steps of its pipeline succeeded, ``finish`` records what the step was asked to do (its operator's rendered
arguments) as one entry here; the ``scicat_catchup`` DAG replays the entries (the operators are idempotent:
they find the dataset a previous attempt made) and removes each once its registration succeeded. Entries are
Airflow Variables ``als_scicat_pending/<dag_id>/<run_id>/<task_id>`` (one per step, so a retried or cleared
``finish`` rewrites its own entry and runs never race on a shared value). Plain Python: the store is the one
the deletion manifests use.
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


def settle(keys: list[str], *, store: VariableStore | None = None) -> int:
    """Remove the entries of registrations that succeeded; returns how many."""
    store = store or default_store()
    for key in keys:
        if not key.startswith(KEY_PREFIX):
            raise BacklogError(f"{key!r} is not a SciCat backlog key")
        store.delete(key)
    return len(keys)
