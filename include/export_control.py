"""Export control as a property of the scan: recorded once, signed, never downgraded.

A scan is export-controlled when a caller (the dispatcher's conf, upstream's ``is_export_control``) or the
watcher's folder list says so. The first time that is seen, before anything moves, a signed record is kept
in the Airflow Variable ``als_export_control/<hash of folder and dataset>`` (:func:`mark_controlled`); a
later run saying ``false`` changes nothing. Every off-site operator asks :func:`find_controlled` about the
paths it would move, run or catalogue, and refuses an export-controlled scan (plugins/als_provider/
export_control.py). A record that was edited (its signature no longer matches) still counts as
export-controlled: editing a Variable can never release a scan.

On site is configuration (include/config/export_control.yaml: the beamline's collections); every other
endpoint is off-site. The watcher takes a scan's status from the folder list kept in the Variable
``als_export_control_folders`` (:class:`FolderPolicy`): ``controlled`` patterns (anyone may add one: it only
tightens) and ``released`` patterns, which count only when signed (written by the operator command
``python -m tools.export_control release``); a scan of any other folder is held, not dispatched.
Plain Python; the Variable store is include.manifests' (Task SDK in a task, the metadata DB elsewhere).
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from include.config_files import load_config
from include.endpoints import REPO_ROOT, Endpoints, load_endpoints
from include.manifests import VariableStore, default_store
from include.paths import Scan

CONFIG_FILE = REPO_ROOT / "include" / "config" / "export_control.yaml"
#: One Variable per export-controlled scan: ``<PREFIX><24 hex of sha256(folder, dataset)>``.
RECORD_PREFIX = "als_export_control/"
#: The watcher's folder list: ``{"controlled": [...], "released": [...], "released_signature": "..."}``.
FOLDERS_VARIABLE = "als_export_control_folders"
RECORD_KIND = "export_control"
RELEASE_KIND = "export_control_released_folders"
RELEASE_HOW = "python -m tools.export_control release '<folder or pattern>'"


class ExportControlled(RuntimeError):
    """An off-site step was asked to move, run or catalogue an export-controlled scan."""


# -- where is on site ---------------------------------------------------------------------------------
#: The shape of export_control.yaml; each name must also be a collection of endpoints.yaml.
SCHEMA: dict = {
    "type": "object",
    "required": ["on_site_collections"],
    "additionalProperties": False,
    "properties": {
        "on_site_collections": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
    },
}


@functools.lru_cache(maxsize=4)
def on_site_collections(path: Path = CONFIG_FILE) -> frozenset[str]:
    document = load_config(path, SCHEMA)
    known = load_endpoints().collections
    for index, name in enumerate(document.data["on_site_collections"]):
        if name not in known:
            raise document.error(
                ("on_site_collections", index), f"{name!r} is not a collection of endpoints.yaml ({', '.join(known)})"
            )
    return frozenset(document.data["on_site_collections"])


def is_on_site(endpoint: str, endpoints: Endpoints | None = None) -> bool:
    """Whether ``endpoint`` is on the beamline's own collections (an unknown name is off-site)."""
    endpoints = endpoints or load_endpoints()
    if endpoint not in endpoints:
        return False
    return endpoints[endpoint].collection.name in on_site_collections()


# -- the record of a scan -----------------------------------------------------------------------------
def record_key(folder: str, dataset: str) -> str:
    digest = hashlib.sha256(f"{folder}\x1f{dataset}".encode()).hexdigest()[:24]
    return f"{RECORD_PREFIX}{digest}"


@dataclass(frozen=True)
class Record:
    """An export-controlled scan's record; ``problem`` says why an unreadable one still counts."""

    key: str
    folder: str
    dataset: str
    recorded_at: str = ""
    source: str = ""
    problem: str | None = None

    def describe(self) -> str:
        where = f"Variable {self.key}"
        if self.problem:
            return f"{where} ({self.problem}: treated as export-controlled)"
        return f"{where} (recorded {self.recorded_at} by {self.source})"


def _payload(folder: str, dataset: str, recorded_at: str, source: str) -> dict[str, Any]:
    return {
        "folder": folder,
        "dataset": dataset,
        "export_controlled": True,
        "recorded_at": recorded_at,
        "source": source,
    }


def _read(key: str, text: str | None, folder: str, dataset: str) -> Record:
    from include.signing import SignatureError, verify

    try:
        data = json.loads(text or "")
        payload = {k: data[k] for k in ("folder", "dataset", "export_controlled", "recorded_at", "source")}
    except (ValueError, KeyError, TypeError):
        return Record(key, folder, dataset, problem="unreadable record")
    try:
        verify(RECORD_KIND, payload, data.get("signature"))
    except SignatureError as exc:
        return Record(key, folder, dataset, problem=str(exc))
    if (payload["folder"], payload["dataset"]) != (folder, dataset) or payload["export_controlled"] is not True:
        return Record(key, folder, dataset, problem="record names another scan or says false")
    return Record(key, folder, dataset, payload["recorded_at"], payload["source"])


def mark_controlled(scan: Scan, *, source: str, store: VariableStore | None = None) -> Record:
    """Record ``scan`` as export-controlled (before anything moves); an existing record is kept as it is."""
    store = store or default_store()
    key = record_key(scan.folder, scan.dataset)
    text = store.get(key)
    if text is not None:
        return _read(key, text, scan.folder, scan.dataset)
    from include.signing import sign

    payload = _payload(scan.folder, scan.dataset, datetime.now(UTC).isoformat(timespec="seconds"), source)
    store.set(key, json.dumps({**payload, "signature": sign(RECORD_KIND, payload)}, sort_keys=True))
    return _read(key, store.get(key), scan.folder, scan.dataset)


def identities(values: Any) -> set[tuple[str, str]]:
    """``(folder, dataset)`` of every scan a step's arguments may name: ``<folder>/<dataset>.h5`` and
    ``<folder>[/<site>]/rec<dataset>[.zarr]`` anywhere in a path (relative or absolute), in strings, lists and
    dicts (nested). Over-inclusive by design: more candidates only cost look-ups."""
    found: set[tuple[str, str]] = set()
    for text in _strings(values):
        parts = [p for p in PurePosixPath(text.strip()).parts if p not in ("/", "")]
        for index, name in enumerate(parts):
            if name.endswith(".h5") and index >= 1 and len(name) > 3:
                found.add((parts[index - 1], name[:-3]))
            if name.startswith("rec") and len(name) > 3:  # <folder>/rec<ds> (a primary site) or <folder>/<site>/rec<ds>
                datasets = [name[3:], *([name[3:-5]] if name.endswith(".zarr") and len(name) > 8 else [])]
                for folder in parts[max(0, index - 2) : index]:
                    found.update((folder, dataset) for dataset in datasets)
    return found


def _strings(values: Any) -> Iterable[str]:
    if isinstance(values, str):
        yield values
    elif isinstance(values, dict):
        for value in values.values():
            yield from _strings(value)
    elif isinstance(values, list | tuple | set | frozenset):
        for value in values:
            yield from _strings(value)


def find_controlled(values: Any, *, store: VariableStore | None = None) -> list[Record]:
    """The export-controlled scans among those ``values`` name (see :func:`identities`): one listing of the
    records, then a read of each match."""
    candidates = identities(values)
    if not candidates:
        return []
    store = store or default_store()
    keys = set(store.keys(RECORD_PREFIX))
    found = []
    for folder, dataset in sorted(candidates):
        key = record_key(folder, dataset)
        if key in keys:
            found.append(_read(key, store.get(key), folder, dataset))
    return found


# -- the watcher's folder list ------------------------------------------------------------------------
@dataclass(frozen=True)
class FolderPolicy:
    """Which folders' scans are export-controlled, which are released; anything else is held."""

    controlled: tuple[str, ...] = ()
    released: tuple[str, ...] = ()
    problems: list[str] = field(default_factory=list)

    def status(self, folder: str) -> bool | None:
        """True: export-controlled; False: released; None: unknown (the watcher holds it)."""
        if any(fnmatch.fnmatchcase(folder, p) for p in self.controlled):
            return True
        if any(fnmatch.fnmatchcase(folder, p) for p in self.released):
            return False
        return None

    def to_dict(self) -> dict[str, list[str]]:
        return {"controlled": list(self.controlled), "released": list(self.released)}


def _patterns(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(p, str) and p.strip() for p in value):
        raise ValueError(f"{FOLDERS_VARIABLE}.{name}: a list of folder names or patterns")
    return tuple(p.strip() for p in value)


def folder_policy(*, store: VariableStore | None = None) -> FolderPolicy:
    """The folder list; released patterns whose signature does not verify are ignored (and reported)."""
    from include.signing import SignatureError, verify

    text = (store or default_store()).get(FOLDERS_VARIABLE)
    if text is None:
        return FolderPolicy(problems=[f"Variable {FOLDERS_VARIABLE} is not set: every scan is held"])
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        controlled = _patterns(data.get("controlled"), "controlled")
        released = _patterns(data.get("released"), "released")
    except ValueError as exc:
        return FolderPolicy(problems=[f"Variable {FOLDERS_VARIABLE}: {exc}: every scan is held"])
    if released:
        try:
            verify(RELEASE_KIND, {"released": list(released)}, data.get("released_signature"))
        except SignatureError as exc:
            problem = f"Variable {FOLDERS_VARIABLE}.released ignored ({exc}); release with {RELEASE_HOW}"
            return FolderPolicy(controlled, (), [problem])
    return FolderPolicy(controlled, released)


def update_folders(
    *, control: Iterable[str] = (), release: Iterable[str] = (), store: VariableStore | None = None
) -> FolderPolicy:
    """Add ``control`` and ``release`` patterns to the folder list and sign the released ones (the operator
    command; the signing key is the Connection ``als_signing``)."""
    from include.signing import sign

    store = store or default_store()
    current = folder_policy(store=store)
    if any("signature" in p for p in current.problems):
        raise ValueError(f"{current.problems[0]}: fix or delete the Variable first")
    controlled = tuple(dict.fromkeys([*current.controlled, *control]))
    released = tuple(dict.fromkeys([*current.released, *release]))
    document: dict[str, Any] = {"controlled": list(controlled), "released": list(released)}
    if released:
        document["released_signature"] = sign(RELEASE_KIND, {"released": list(released)})
    store.set(FOLDERS_VARIABLE, json.dumps(document, indent=1))
    return folder_policy(store=store)
