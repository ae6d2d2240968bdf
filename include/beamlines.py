"""Beamlines as configuration: load and validate include/config/beamlines.yaml.

A beamline is its endpoints (where scans are written, where the NERSC copy goes), the retention location
of each copy it makes, and the pipelines that run after the move (``scicat``, ``ptycho``, ``hpss_archive``).
dags/pipelines/beamline.py turns one entry into the DAG ``<key>_new_file``. Errors name the file and the key.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from include.endpoints import REPO_ROOT, load_endpoints
from include.errors import ConfigError
from include.retention import RETENTION_FILE, long_term_endpoints, retention_map

BEAMLINES_FILE = REPO_ROOT / "include" / "config" / "beamlines.yaml"
JOBS_DIR = REPO_ROOT / "include" / "jobs"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
_NUMBER = re.compile(r"^\d+(\.\d+)+$")
_KEYS = {
    "beamline",
    "description",
    "owner",
    "source_endpoint",
    "nersc_endpoint",
    "source_retention",
    "pipelines",
    "transfer_check",
    "file_suffixes",
}
#: A file suffix: a dot and lower-case letters or digits (``.h5``, ``.edf``).
_SUFFIX = re.compile(r"^\.[a-z0-9]{1,10}$")
#: Where the health check's probes go (docs/beamlines.md): never a folder that holds scans.
PROBE_FOLDER = "transfer_check"
#: Pipeline kind -> (required keys, optional keys with defaults).
PIPELINES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "scicat": ((), {"ingester": "als_832_dx_4"}),
    "ptycho": (("results_endpoint",), {"template": "ptycho_recon.sh.j2", "directives": {}}),
    "hpss_archive": (
        ("archive_endpoint", "retention_location"),
        {"template": "hpss_archive.sh.j2", "directives": {}},
    ),
}
_ENDPOINT_KEYS = {"source_endpoint", "nersc_endpoint", "results_endpoint", "archive_endpoint"}


@dataclass(frozen=True)
class Beamline:
    """One beamline: where its scans are, where they go, and what runs on them."""

    key: str
    beamline: str
    description: str
    owner: str
    source_endpoint: str
    nersc_endpoint: str
    source_retention: str
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The health check's NERSC end (``endpoint``: one outside the raw copy's tree), or None: no check.
    transfer_check: dict[str, str] | None = None
    #: What a run's files may end with (7.3.3: SAXS ``.txt`` headers and ``.edf`` images).
    file_suffixes: tuple[str, ...] = (".h5",)

    @property
    def dag_id(self) -> str:
        return f"{self.key}_new_file"

    @property
    def transfer_check_dag_id(self) -> str:
        return f"{self.key}_transfer_check"

    def pipeline(self, kind: str) -> dict[str, Any] | None:
        """The options of pipeline ``kind``, or None when this beamline does not run it."""
        return self.pipelines.get(kind)

    def retention_locations(self) -> set[str]:
        """Every deletion-manifest location this beamline records (each needs a key in als_retention_days)."""
        archive = self.pipeline("hpss_archive")
        return {self.source_retention} | ({archive["retention_location"]} if archive else set())


@dataclass(frozen=True)
class Beamlines:
    beamlines: dict[str, Beamline]
    source: Path

    def __getitem__(self, key: str) -> Beamline:
        try:
            return self.beamlines[key]
        except KeyError:
            known = ", ".join(sorted(self.beamlines))
            raise ConfigError(f"{self.source}: unknown beamline {key!r} (known: {known})") from None

    def __iter__(self):
        return iter(self.beamlines.values())


def _string(entry: dict, key: str, where: str, source: Path) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{source}: {where}.{key}: missing or not a non-empty string")
    return value.strip()


def _check_endpoint(value: str, key: str, source: Path, endpoint_names: set[str]) -> None:
    if value not in endpoint_names:
        raise ConfigError(f"{source}: {key}: unknown endpoint {value!r} (see endpoints.yaml)")


def _pipeline(kind: str, entry: object, where: str, source: Path, endpoint_names: set[str]) -> dict[str, Any]:
    from include.slurm import sbatch_header

    if kind not in PIPELINES:
        raise ConfigError(f"{source}: {where}: unknown pipeline {kind!r} (known: {', '.join(PIPELINES)})")
    entry = {} if entry is None else entry
    if not isinstance(entry, dict):
        raise ConfigError(f"{source}: {where}: expected a mapping of options")
    required, optional = PIPELINES[kind]
    unknown = set(entry) - set(required) - set(optional)
    if unknown:
        raise ConfigError(f"{source}: {where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    options: dict[str, Any] = {**optional, **{key: _string(entry, key, where, source) for key in required}}
    for key in _ENDPOINT_KEYS & set(options):
        _check_endpoint(options[key], f"{where}.{key}", source, endpoint_names)
    if "template" in entry:
        options["template"] = _string(entry, "template", where, source)
    if "template" in options:
        template = options["template"]
        if "/" in template or not (JOBS_DIR / template).is_file():
            raise ConfigError(f"{source}: {where}.template: no job template {template!r} in include/jobs/")
    if "ingester" in entry:
        from include.scicat_ingesters import ingester_name

        try:
            options["ingester"] = ingester_name(_string(entry, "ingester", where, source))
        except ValueError as exc:
            raise ConfigError(f"{source}: {where}.ingester: {exc}") from None
    if "directives" in entry:
        directives = entry["directives"] or {}
        if not isinstance(directives, dict):
            raise ConfigError(f"{source}: {where}.directives: expected a mapping of #SBATCH options")
        try:
            sbatch_header(directives)
        except ValueError as exc:
            raise ConfigError(f"{source}: {where}.directives: {exc}") from None
        options["directives"] = dict(directives)
    return options


def _transfer_check(
    entry: object, values: dict[str, str], where: str, source: Path, endpoint_names: set[str]
) -> dict[str, str] | None:
    """The health check's settings: ``endpoint`` (the NERSC end, not the raw copy's endpoint, whose tree holds
    scans only) and the probe ``folder`` on both ends (default ``transfer_check``)."""
    if entry is None:
        return None
    where = f"{where}.transfer_check"
    if not isinstance(entry, dict) or set(entry) - {"endpoint", "folder"}:
        raise ConfigError(f"{source}: {where}: expected a mapping with endpoint (and folder)")
    endpoint = _string(entry, "endpoint", where, source)
    _check_endpoint(endpoint, f"{where}.endpoint", source, endpoint_names)
    if endpoint in (values["source_endpoint"], values["nersc_endpoint"]):
        raise ConfigError(f"{source}: {where}.endpoint: the check's NERSC end must not be the raw copy's endpoint")
    folder = _string(entry, "folder", where, source) if "folder" in entry else PROBE_FOLDER
    if "/" in folder or folder.startswith("."):
        raise ConfigError(f"{source}: {where}.folder: one folder name, got {folder!r}")
    return {"endpoint": endpoint, "folder": folder}


def _suffixes(value: object, where: str, source: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and _SUFFIX.match(v) for v in value):
        raise ConfigError(f'{source}: {where}: a non-empty list of suffixes like [".h5", ".edf"], got {value!r}')
    return tuple(dict.fromkeys(value))


def _check_retention(values: dict[str, str], archive: object, where: str, source: Path) -> None:
    """Each copy the beamline schedules for deletion has its endpoint's location in retention.yaml, and each
    check copy is classified there, so a missing entry fails at load, not mid-run as a ManifestError."""
    table, _ = retention_map()
    long_term = long_term_endpoints()
    retention = f"{RETENTION_FILE.relative_to(REPO_ROOT)}"
    deletions = [(values["source_endpoint"], values["source_retention"], "source_retention", values["nersc_endpoint"])]
    if isinstance(archive, dict) and archive.get("retention_location") and archive.get("archive_endpoint"):
        location, check = str(archive["retention_location"]), str(archive["archive_endpoint"])
        deletions.append((values["nersc_endpoint"], location, "pipelines.hpss_archive.retention_location", check))
    for endpoint, location, key, check in deletions:
        expected = table.get(endpoint)
        if expected is None:
            raise ConfigError(
                f"{source}: {where}.{key}: {retention}: endpoints.{endpoint}: missing; add `{endpoint}: {location}` "
                "there (docs/beamlines.md)"
            )
        if expected != location:
            raise ConfigError(
                f"{source}: {where}.{key}: {location!r}, but {retention}: endpoints.{endpoint} is {expected!r}; "
                "make them equal"
            )
        if check not in table and check not in long_term:
            raise ConfigError(
                f"{source}: {where}: {retention}: {check} (the check copy of {endpoint}) is in neither endpoints nor "
                "long_term; add it to long_term if it keeps its copies"
            )


def parse_beamlines(document: object, *, source: Path, endpoint_names: set[str]) -> Beamlines:
    """Validate a parsed beamlines document; endpoints must exist in endpoints.yaml."""
    if not isinstance(document, dict) or not isinstance(document.get("beamlines"), dict) or not document["beamlines"]:
        raise ConfigError(f"{source}: beamlines: missing or empty")
    beamlines: dict[str, Beamline] = {}
    for key, entry in document["beamlines"].items():
        where = f"beamlines.{key}"
        if not isinstance(key, str) or not _NAME.match(key):
            raise ConfigError(f"{source}: {where}: beamline keys are lower-case identifiers (they name DAGs)")
        if key.startswith("bl832"):
            raise ConfigError(f"{source}: {where}: 8.3.2 has its own DAGs (bl832_*); pick another key")
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: {where}: expected a mapping")
        unknown = set(entry) - _KEYS
        if unknown:
            raise ConfigError(f"{source}: {where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        number = entry.get("beamline")
        if not isinstance(number, str) or not _NUMBER.match(number):
            raise ConfigError(f'{source}: {where}.beamline: a quoted beamline number like "7.3.3", got {number!r}')
        values = {
            name: _string(entry, name, where, source)
            for name in ("owner", "source_endpoint", "nersc_endpoint", "source_retention")
        }
        for name in ("source_endpoint", "nersc_endpoint"):
            _check_endpoint(values[name], f"{where}.{name}", source, endpoint_names)
        if values["source_endpoint"] == values["nersc_endpoint"]:
            raise ConfigError(f"{source}: {where}.nersc_endpoint: must differ from source_endpoint")
        pipelines = entry.get("pipelines") or {}
        if not isinstance(pipelines, dict):
            raise ConfigError(f"{source}: {where}.pipelines: expected a mapping of pipeline name to options")
        beamlines[key] = Beamline(
            key=key,
            transfer_check=_transfer_check(entry.get("transfer_check"), values, where, source, endpoint_names),
            file_suffixes=_suffixes(entry.get("file_suffixes", [".h5"]), f"{where}.file_suffixes", source),
            beamline=number,
            description=str(entry.get("description") or f"beamline {number}"),
            pipelines={
                str(kind): _pipeline(str(kind), options, f"{where}.pipelines.{kind}", source, endpoint_names)
                for kind, options in pipelines.items()
            },
            **values,
        )
        _check_retention(values, beamlines[key].pipeline("hpss_archive"), where, source)
    return Beamlines(beamlines, source)


def load_beamlines(path: Path | None = None) -> Beamlines:
    """Load and validate the beamlines file (cached per path)."""
    return _load_cached(Path(path or BEAMLINES_FILE).resolve())


@functools.lru_cache(maxsize=4)
def _load_cached(path: Path) -> Beamlines:
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: beamlines file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    names = set(load_endpoints("production").endpoints)
    return parse_beamlines(document, source=path, endpoint_names=names)
