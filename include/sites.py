"""Reconstruction sites as configuration: load and validate include/config/sites.yaml.

A site is where reconstructions run: a runner (include/runners/: a Globus Compute endpoint, or Slurm jobs
through SFAPI), the tomography beamline it works for (include/config/beamlines.yaml ``tomography``: where scans
come from and results go home), the endpoints it reads scans from and writes results to, where results are
copied, whether it is off-site, and the retention of the copies made there. Every site is one :class:`Site`;
nothing is special-cased by name or by runner. Errors name the file, the line and the key.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from include.beamlines import DEFAULT_TOMOGRAPHY, Beamlines, Tomography, load_beamlines
from include.config_files import ConfigDocument, check_schema, load_config, named
from include.endpoints import REPO_ROOT, default_profile, load_endpoints
from include.errors import ConfigError
from include.runners import RUNNER_KEYS, RUNNERS, Runner, get_runner

SITES_FILE = REPO_ROOT / "include" / "config" / "sites.yaml"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
_REQUIRED = ("runner", "raw_endpoint", "scratch_endpoint", "retention_location")
_STRINGS = ("description", "beamline", "source_endpoint", "archive_endpoint", "results_folder", *_REQUIRED)
#: Every key of a site and its JSON type (a runner checks its own keys: include/runners/).
_KEYS = {
    **{key: {"type": "string"} for key in _STRINGS},
    "enabled": {"type": "boolean"},
    "offsite": {"type": "boolean"},
    **{key: {} for key in RUNNER_KEYS},
}
#: The shape of sites.yaml (include/config_files.py); the rules between keys are :func:`parse_sites`'s.
SCHEMA = {
    "type": "object",
    "required": ["sites"],
    "additionalProperties": False,
    "properties": {
        "sites": {
            "type": "object",
            "additionalProperties": {"type": "object", "properties": _KEYS},
        }
    },
}


@dataclass(frozen=True)
class Site:
    """One reconstruction site of a tomography ``beamline``.

    The scan is at ``source_endpoint`` when the site starts (the beamline's raw endpoint, or the NERSC copy the
    new-scan pipeline makes); it is staged to ``raw_endpoint`` (by its runner's ``stages_by``) if that differs;
    results are written to ``scratch_endpoint`` under ``<folder>/<results_folder>/``, copied home to the
    beamline's scratch endpoint and, if set, to ``archive_endpoint``.
    """

    name: str
    description: str
    enabled: bool
    runner: str
    beamline: Tomography
    raw_endpoint: str
    scratch_endpoint: str
    results_folder: str
    retention_location: str
    source_endpoint: str
    compute_endpoint_id: str | None = None
    archive_endpoint: str | None = None
    offsite: bool = True
    function_ids: dict[str, str] = field(default_factory=dict)
    task_timeout_minutes: int = 120
    #: Whether ``compute_endpoint_id`` is a placeholder (refused by the production profile).
    placeholder: bool = False

    @property
    def dag_id(self) -> str:
        return self.beamline.recon_dag_id(self.name)

    @property
    def run(self) -> Runner:
        """The site's runner (include/runners/)."""
        return get_runner(self.runner)

    @property
    def stages_raw(self) -> bool:
        """Whether the scan must be copied from ``source_endpoint`` to ``raw_endpoint`` first."""
        return self.raw_endpoint != self.source_endpoint

    @property
    def copies_back(self) -> bool:
        """Whether results must be copied from the site to the beamline's scratch endpoint."""
        return self.scratch_endpoint != self.beamline.scratch_endpoint

    @property
    def needs_nersc_copy(self) -> bool:
        """Whether the site reads the scan's long-term copy (made by the new-scan pipeline), not the beamline's."""
        return self.source_endpoint != self.beamline.raw_endpoint

    def result_destinations(self) -> list[str]:
        """Where results are copied from ``scratch_endpoint``: home first, then the archive copy."""
        destinations = [self.beamline.scratch_endpoint] if self.copies_back else []
        return destinations + ([self.archive_endpoint] if self.archive_endpoint else [])


@dataclass(frozen=True)
class Sites:
    sites: dict[str, Site]
    source: Path

    def __getitem__(self, name: str) -> Site:
        return named(self.sites, name, "site", self.source)

    def enabled(self, beamline: str | None = None) -> list[Site]:
        """The enabled sites (of the tomography ``beamline`` when given)."""
        return [
            site for site in self.sites.values() if site.enabled and (beamline is None or site.beamline.key == beamline)
        ]

    def check_compute_endpoint(self, endpoint_id: str, profile: str | None = None) -> str:
        """``endpoint_id``, unless the production profile must refuse it as a site's placeholder id
        (:class:`~include.errors.ConfigError`, raised before anything is submitted)."""
        if (profile or default_profile()) == "production":
            for site in self.sites.values():
                if site.placeholder and site.compute_endpoint_id == endpoint_id:
                    raise ConfigError(
                        f"{self.source}: sites.{site.name}.compute_endpoint_id {endpoint_id} is a PLACEHOLDER: "
                        "the production profile submits nothing to it (fill in the real endpoint id and drop "
                        "`placeholder: true`)"
                    )
        return endpoint_id


def parse_sites(
    document: object,
    *,
    source: Path,
    endpoint_names: set[str],
    beamlines: Beamlines | None = None,
) -> Sites:
    """Validate a sites document (parsed data, or a :class:`ConfigDocument` that knows each key's line); enabled
    sites must name endpoints of endpoints.yaml, every site a known runner and tomography beamline."""
    doc = document if isinstance(document, ConfigDocument) else ConfigDocument(document, Path(source))
    check_schema(doc, SCHEMA)
    data = doc.data
    if not data["sites"]:
        raise doc.error(("sites",), "missing or empty")
    beamlines = beamlines or load_beamlines()
    sites = {name: _site(doc, name, entry, endpoint_names, beamlines) for name, entry in data["sites"].items()}
    return Sites(sites, Path(source))


def _site(doc: ConfigDocument, name: object, entry: object, endpoint_names: set[str], beamlines: Beamlines) -> Site:
    where = ("sites", name)

    def fail(key: str, message: str) -> ConfigError:
        return doc.error((*where, *key.split(".")), message)

    if not isinstance(name, str) or not _NAME.match(name):
        raise doc.error(where, "site names are lower-case identifiers (they name DAGs and folders)")
    unknown = set(entry) - set(_KEYS)
    if unknown:
        raise doc.error(where, f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    values = {key: _string(entry, key, fail) for key in _REQUIRED}
    for key in ("source_endpoint", "archive_endpoint"):
        if entry.get(key) is not None:
            values[key] = _string(entry, key, fail)
    flags = {key: entry.get(key, default) for key, default in (("enabled", True), ("offsite", True))}
    runner = get_runner(values["runner"], key=doc.where((*where, "runner")))
    for key in sorted((set(entry) & RUNNER_KEYS) - runner.keys):
        owners = ", ".join(r.name for r in RUNNERS.values() if key in r.keys)
        raise fail(key, f"a key of runner {owners}, not of {runner.name} (include/runners/)")
    values.update(runner.validate(entry, fail))
    key = entry.get("beamline", DEFAULT_TOMOGRAPHY)
    if key not in beamlines.tomography:
        known = ", ".join(sorted(beamlines.tomography))
        raise fail("beamline", f"{key!r} is not a tomography beamline of beamlines.yaml (known: {known})")
    beamline = beamlines.tomography[key]
    values.setdefault("source_endpoint", beamline.raw_endpoint)
    if flags["enabled"]:
        for key in ("source_endpoint", "raw_endpoint", "scratch_endpoint", "archive_endpoint"):
            if key in values and values[key] not in endpoint_names:
                raise fail(key, f"unknown endpoint {values[key]!r} (see endpoints.yaml)")
    results_folder = beamline.results_folder(name, entry.get("results_folder"))
    if not isinstance(results_folder, str) or not (results_folder == "" or _NAME.match(results_folder)):
        raise fail("results_folder", "must be a lower-case identifier")
    if results_folder == "" and name != beamline.primary_site:
        raise fail("results_folder", f"only the primary site of {beamline.key} writes directly into the scan's folder")
    if beamline.primary_site and results_folder.startswith("rec"):  # <folder>/rec<x>/ is the primary's rec<dataset>
        raise fail("results_folder", f"{results_folder!r} could be the primary site's rec<dataset> folder; rename it")
    return Site(
        name=name,
        description=str(entry.get("description") or name),
        beamline=beamline,
        results_folder=results_folder,
        **flags,
        **values,
    )


def _string(entry: dict, key: str, fail) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise fail(key, "missing or not a non-empty string")
    return value.strip()


def load_sites(path: Path | None = None) -> Sites:
    """Load and validate the sites file (cached per path)."""
    return _load_cached(Path(path or SITES_FILE).resolve())


@functools.lru_cache(maxsize=4)
def _load_cached(path: Path) -> Sites:
    names = set(load_endpoints("production").endpoints)
    return parse_sites(load_config(path, SCHEMA), source=path, endpoint_names=names)
