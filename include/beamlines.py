"""Beamlines as configuration: load and validate include/config/beamlines.yaml.

Two kinds of entry. A **moving** beamline (section ``beamlines``) is its endpoints (where scans are written,
where the NERSC copy goes), the retention location of each copy it makes, and the pipelines that run after the
move (``scicat``, ``ptycho``, ``hpss_archive``); dags/pipelines/beamline.py turns one entry into the DAG
``<key>_new_file``. A **tomography** beamline (section ``tomography``, 8.3.2) is its new-scan route (source →
raw → long-term), its results home, the retention of each copy, its DAG id prefix and SciCat ingester; the
reconstruction sites of include/config/sites.yaml point at it, dags/pipelines/tomography.py builds its DAGs.
Errors name the file and the key.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from include.config_files import ConfigDocument, check_schema, load_config, named
from include.endpoints import REPO_ROOT, load_endpoints
from include.errors import ConfigError
from include.paths import Scan
from include.retention import RETENTION_FILE, long_term_endpoints, retention_map

BEAMLINES_FILE = REPO_ROOT / "include" / "config" / "beamlines.yaml"
#: The tomography beamline a site works for, and a new-scan plan is made for, unless one is named.
DEFAULT_TOMOGRAPHY = "bl832"
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
#: The shape of beamlines.yaml (include/config_files.py): two sections of entries; each entry's keys and the
#: rules between them are :func:`parse_beamlines`'s.
SCHEMA = {
    "type": "object",
    "required": ["beamlines"],
    "additionalProperties": False,
    "properties": {
        section: {"type": "object", "additionalProperties": {"type": "object"}}
        for section in ("beamlines", "tomography")
    },
}


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
class Tomography:
    """A tomography beamline (8.3.2): where a new scan goes (source → raw → long-term), where results come
    home, the retention location of each copy, its DAG ids and its SciCat mapping. Every path a scan takes
    on these endpoints is derived here (the ``raw/`` folder is glued in one place)."""

    key: str
    beamline: str
    description: str
    owner: str
    #: Every DAG id of the beamline starts with it: ``<prefix>_dispatcher``, ``<prefix>_<site>_recon``.
    dag_prefix: str
    #: The detector's host: a scan is at ``<raw_folder>/<folder>/<file>``.
    source_endpoint: str
    #: The beamline's storage: the scan at ``<raw_folder>/<folder>/<file>`` (its copies are pruned there).
    storage_endpoint: str
    #: The same storage's raw folder: the scan at ``<folder>/<file>``, where sites read it.
    raw_endpoint: str
    #: Where results come home (``<folder>/<results>/rec<dataset>/``).
    scratch_endpoint: str
    #: The long-term raw copy (never pruned): ``<raw_folder>/<folder>/<file>``.
    long_term_endpoint: str
    raw_folder: str
    #: Deletion-manifest locations: the source's copy, the storage's copy, the results at home.
    source_retention: str
    raw_retention: str
    scratch_retention: str
    #: The site whose results go to ``<folder>/rec<dataset>/`` (upstream's layout); every other site writes
    #: ``<folder>/<site>/rec<dataset>/``. None: every site under its own folder.
    primary_site: str | None
    ingester: str
    #: Where the beamline's callers name their scans' folders (8.3.2: ``/global/raw``): a raw dataset's SciCat
    #: ``sourceFolder`` is ``<source_folder_root>/<folder>``, as upstream's ingester records it. None: the
    #: folder's long-term copy (its Globus path).
    source_folder_root: str | None = None

    def source_path(self, scan: Scan) -> str:
        """The scan on the doc, the storage and the long-term copy: ``<raw_folder>/<folder>/<file>``."""
        return str(PurePosixPath(self.raw_folder, scan.relative_path))

    def raw_folder_of(self, scan: Scan) -> str:
        """The scan's folder in the raw trees: ``<raw_folder>/<folder>``."""
        return str(PurePosixPath(self.raw_folder, scan.folder))

    @property
    def new_file_dag_id(self) -> str:
        return f"{self.dag_prefix}_new_file"

    @property
    def dispatcher_dag_id(self) -> str:
        return f"{self.dag_prefix}_dispatcher"

    @property
    def settings_variable(self) -> str:
        """The dispatcher's Variable: which pipelines run (``{"new_file": true, "<site>": true, ...}``)."""
        return f"{self.dispatcher_dag_id}_settings"

    def recon_dag_id(self, site: str) -> str:
        return f"{self.dag_prefix}_{site}_recon"

    def results_folder(self, site: str, configured: str | None = None) -> str:
        """Where ``site`` writes under a scan's folder: ``configured``, else nothing for the primary site,
        else the site's name."""
        if configured is not None:
            return configured
        return "" if site == self.primary_site else site


@dataclass(frozen=True)
class Beamlines:
    beamlines: dict[str, Beamline]
    source: Path
    tomography: dict[str, Tomography] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Beamline:
        return named(self.beamlines, key, "beamline", self.source)

    def __iter__(self):
        return iter(self.beamlines.values())

    def tomography_beamline(self, key: str) -> Tomography:
        try:
            return self.tomography[key]
        except KeyError:
            known = ", ".join(sorted(self.tomography))
            raise ConfigError(f"{self.source}: tomography.{key}: no such beamline (known: {known})") from None


def _string(entry: dict, key: str, where: str, doc: ConfigDocument) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise doc.error(f"{where}.{key}", "missing or not a non-empty string")
    return value.strip()


def _entry_frame(
    section: str, key: object, entry: object, keys: set[str], example: str, doc: ConfigDocument
) -> tuple[str, str]:
    """What every beamline entry of ``section`` is: a lower-case key, a mapping of known ``keys``, a quoted
    beamline number (like ``example``). Returns where it is (``<section>.<key>``) and its beamline number."""
    where = f"{section}.{key}"
    if not isinstance(key, str) or not _NAME.match(key):
        raise doc.error(where, "beamline keys are lower-case identifiers (they name DAGs)")
    if not isinstance(entry, dict):
        raise doc.error(where, "expected a mapping")
    unknown = set(entry) - keys
    if unknown:
        raise doc.error(where, f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    number = entry.get("beamline")
    if not isinstance(number, str) or not _NUMBER.match(number):
        raise doc.error(f"{where}.beamline", f'a quoted beamline number like "{example}", got {number!r}')
    return where, number


def _check_endpoint(value: str, key: str, doc: ConfigDocument, endpoint_names: set[str]) -> None:
    if value not in endpoint_names:
        raise doc.error(key, f"unknown endpoint {value!r} (see endpoints.yaml)")


def _pipeline(kind: str, entry: object, where: str, doc: ConfigDocument, endpoint_names: set[str]) -> dict[str, Any]:
    from include.slurm import sbatch_header

    if kind not in PIPELINES:
        raise doc.error(where, f"unknown pipeline {kind!r} (known: {', '.join(PIPELINES)})")
    entry = {} if entry is None else entry
    if not isinstance(entry, dict):
        raise doc.error(where, "expected a mapping of options")
    required, optional = PIPELINES[kind]
    unknown = set(entry) - set(required) - set(optional)
    if unknown:
        raise doc.error(where, f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    options: dict[str, Any] = {**optional, **{key: _string(entry, key, where, doc) for key in required}}
    for key in _ENDPOINT_KEYS & set(options):
        _check_endpoint(options[key], f"{where}.{key}", doc, endpoint_names)
    if "template" in entry:
        options["template"] = _string(entry, "template", where, doc)
    if "template" in options:
        template = options["template"]
        if "/" in template or not (JOBS_DIR / template).is_file():
            raise doc.error(f"{where}.template", f"no job template {template!r} in include/jobs/")
    if "ingester" in entry:
        from include.scicat_ingesters import ingester_name

        try:
            options["ingester"] = ingester_name(_string(entry, "ingester", where, doc))
        except ValueError as exc:
            raise doc.error(f"{where}.ingester", str(exc)) from None
    if "directives" in entry:
        directives = entry["directives"] or {}
        if not isinstance(directives, dict):
            raise doc.error(f"{where}.directives", "expected a mapping of #SBATCH options")
        try:
            sbatch_header(directives)
        except ValueError as exc:
            raise doc.error(f"{where}.directives", str(exc)) from None
        options["directives"] = dict(directives)
    return options


def _transfer_check(
    entry: object, values: dict[str, str], where: str, doc: ConfigDocument, endpoint_names: set[str]
) -> dict[str, str] | None:
    """The health check's settings: ``endpoint`` (the NERSC end, not the raw copy's endpoint, whose tree holds
    scans only) and the probe ``folder`` on both ends (default ``transfer_check``)."""
    if entry is None:
        return None
    where = f"{where}.transfer_check"
    if not isinstance(entry, dict) or set(entry) - {"endpoint", "folder"}:
        raise doc.error(where, "expected a mapping with endpoint (and folder)")
    endpoint = _string(entry, "endpoint", where, doc)
    _check_endpoint(endpoint, f"{where}.endpoint", doc, endpoint_names)
    if endpoint in (values["source_endpoint"], values["nersc_endpoint"]):
        raise doc.error(f"{where}.endpoint", "the check's NERSC end must not be the raw copy's endpoint")
    folder = _string(entry, "folder", where, doc) if "folder" in entry else PROBE_FOLDER
    if "/" in folder or folder.startswith("."):
        raise doc.error(f"{where}.folder", f"one folder name, got {folder!r}")
    return {"endpoint": endpoint, "folder": folder}


def _suffixes(value: object, where: str, doc: ConfigDocument) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and _SUFFIX.match(v) for v in value):
        raise doc.error(where, f'a non-empty list of suffixes like [".h5", ".edf"], got {value!r}')
    return tuple(dict.fromkeys(value))


def _check_retention(values: dict[str, str], archive: object, where: str, doc: ConfigDocument) -> None:
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
            raise doc.error(
                f"{where}.{key}",
                f"{retention}: endpoints.{endpoint}: missing; add `{endpoint}: {location}` there (docs/beamlines.md)",
            )
        if expected != location:
            raise doc.error(
                f"{where}.{key}",
                f"{location!r}, but {retention}: endpoints.{endpoint} is {expected!r}; make them equal",
            )
        if check not in table and check not in long_term:
            raise doc.error(
                f"{where}",
                f"{retention}: {check} (the check copy of {endpoint}) is in neither endpoints nor "
                "long_term; add it to long_term if it keeps its copies",
            )


def parse_beamlines(document: object, *, source: Path, endpoint_names: set[str]) -> Beamlines:
    """Validate a beamlines document (parsed data, or a :class:`ConfigDocument` that knows each key's line);
    endpoints must exist in endpoints.yaml. Errors: ``<file>[:<line>]: <key>: <what is wrong>``."""
    doc = document if isinstance(document, ConfigDocument) else ConfigDocument(document, Path(source))
    check_schema(doc, SCHEMA)
    document = doc.data
    if not isinstance(document, dict) or not isinstance(document.get("beamlines"), dict) or not document["beamlines"]:
        raise doc.error("beamlines", "missing or empty")
    beamlines: dict[str, Beamline] = {}
    for key, entry in document["beamlines"].items():
        where, number = _entry_frame("beamlines", key, entry, _KEYS, "7.3.3", doc)
        values = {
            name: _string(entry, name, where, doc)
            for name in ("owner", "source_endpoint", "nersc_endpoint", "source_retention")
        }
        for name in ("source_endpoint", "nersc_endpoint"):
            _check_endpoint(values[name], f"{where}.{name}", doc, endpoint_names)
        if values["source_endpoint"] == values["nersc_endpoint"]:
            raise doc.error(f"{where}.nersc_endpoint", "must differ from source_endpoint")
        pipelines = entry.get("pipelines") or {}
        if not isinstance(pipelines, dict):
            raise doc.error(f"{where}.pipelines", "expected a mapping of pipeline name to options")
        beamlines[key] = Beamline(
            key=key,
            transfer_check=_transfer_check(entry.get("transfer_check"), values, where, doc, endpoint_names),
            file_suffixes=_suffixes(entry.get("file_suffixes", [".h5"]), f"{where}.file_suffixes", doc),
            beamline=number,
            description=str(entry.get("description") or f"beamline {number}"),
            pipelines={
                str(kind): _pipeline(str(kind), options, f"{where}.pipelines.{kind}", doc, endpoint_names)
                for kind, options in pipelines.items()
            },
            **values,
        )
        _check_retention(values, beamlines[key].pipeline("hpss_archive"), where, doc)
    tomography = _tomography(document.get("tomography") or {}, doc, endpoint_names)
    for key in set(tomography) & set(beamlines):
        raise doc.error(f"tomography.{key}", "the key is also in beamlines; keys name DAGs, pick another")
    return Beamlines(beamlines, doc.source, tomography)


_TOMOGRAPHY_ENDPOINTS = ("source", "storage", "raw", "scratch", "long_term")
_TOMOGRAPHY_KEYS = {
    "beamline",
    "description",
    "owner",
    "dag_prefix",
    "endpoints",
    "raw_folder",
    "retention",
    "results",
    "scicat",
}


def _tomography(section: object, doc: ConfigDocument, endpoint_names: set[str]) -> dict[str, Tomography]:
    """The ``tomography`` section: each entry's endpoints exist, its retention locations are those of
    retention.yaml, its long-term endpoint is long-term there."""
    from include.scicat_ingesters import ingester_name

    if not isinstance(section, dict):
        raise doc.error("tomography", "expected a mapping of beamline key to its settings")
    found: dict[str, Tomography] = {}
    table, _ = retention_map()
    for key, entry in section.items():
        where, number = _entry_frame("tomography", key, entry, _TOMOGRAPHY_KEYS, "8.3.2", doc)
        endpoints = _mapping(entry, "endpoints", _TOMOGRAPHY_ENDPOINTS, where, doc)
        for name, value in endpoints.items():
            _check_endpoint(value, f"{where}.endpoints.{name}", doc, endpoint_names)
        if endpoints["long_term"] not in long_term_endpoints():
            raise doc.error(
                f"{where}.endpoints.long_term", f"{endpoints['long_term']!r} is not long_term in retention.yaml"
            )
        retention = _mapping(entry, "retention", ("source", "raw", "scratch"), where, doc)
        for name, endpoint in (("source", "source"), ("raw", "storage"), ("scratch", "scratch")):
            expected = table.get(endpoints[endpoint])
            if retention[name] != expected:
                raise doc.error(
                    f"{where}.retention.{name}",
                    f"{retention[name]!r}, but retention.yaml gives "
                    f"endpoints.{endpoints[endpoint]} {expected!r}; make them equal",
                )
        results = entry.get("results") or {}
        if not isinstance(results, dict) or set(results) - {"primary_site"}:
            raise doc.error(f"{where}.results", "expected a mapping with primary_site (a site or null)")
        primary = results.get("primary_site")
        if primary is not None and (not isinstance(primary, str) or not _NAME.match(primary)):
            raise doc.error(f"{where}.results.primary_site", f"a site name or null, got {primary!r}")
        scicat = entry.get("scicat") or {}
        if not isinstance(scicat, dict) or set(scicat) - {"ingester", "source_folder_root"}:
            raise doc.error(f"{where}.scicat", "expected a mapping with ingester and source_folder_root")
        try:
            ingester = ingester_name(scicat.get("ingester", "als_832_dx_4"))
        except ValueError as exc:
            raise doc.error(f"{where}.scicat.ingester", str(exc)) from None
        root = scicat.get("source_folder_root")
        if root is not None and (
            not isinstance(root, str) or not root.startswith("/") or "//" in root or "/." in root or root == "/"
        ):
            raise doc.error(f"{where}.scicat.source_folder_root", f"an absolute folder or null, got {root!r}")
        prefix = entry.get("dag_prefix", key)
        if not isinstance(prefix, str) or not _NAME.match(prefix):
            raise doc.error(f"{where}.dag_prefix", f"a lower-case identifier, got {prefix!r}")
        raw_folder = _string(entry, "raw_folder", where, doc) if "raw_folder" in entry else "raw"
        if raw_folder.startswith(("/", ".")) or "//" in raw_folder:
            raise doc.error(f"{where}.raw_folder", f"a relative folder, got {raw_folder!r}")
        found[key] = Tomography(
            key=key,
            beamline=number,
            description=str(entry.get("description") or f"beamline {number}"),
            owner=_string(entry, "owner", where, doc),
            dag_prefix=prefix,
            **{f"{name}_endpoint": value for name, value in endpoints.items()},
            raw_folder=raw_folder,
            **{f"{name}_retention": value for name, value in retention.items()},
            primary_site=primary,
            ingester=ingester,
            source_folder_root=root.rstrip("/") if root else None,
        )
    return found


def _mapping(entry: dict, key: str, names: tuple[str, ...], where: str, doc: ConfigDocument) -> dict[str, str]:
    """``entry[key]``: a mapping of exactly ``names`` to non-empty strings."""
    value = entry.get(key)
    if not isinstance(value, dict) or set(value) != set(names):
        raise doc.error(f"{where}.{key}", f"expected a mapping of {', '.join(names)}, got {value!r}")
    return {name: _string(value, name, f"{where}.{key}", doc) for name in names}


def default_tomography() -> Tomography:
    """The tomography beamline of :data:`DEFAULT_TOMOGRAPHY`."""
    return load_beamlines().tomography_beamline(DEFAULT_TOMOGRAPHY)


def load_beamlines(path: Path | None = None) -> Beamlines:
    """Load and validate the beamlines file (cached per path)."""
    return _load_cached(Path(path or BEAMLINES_FILE).resolve())


@functools.lru_cache(maxsize=4)
def _load_cached(path: Path) -> Beamlines:
    names = set(load_endpoints("production").endpoints)
    return parse_beamlines(load_config(path, SCHEMA), source=path, endpoint_names=names)
