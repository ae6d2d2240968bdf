"""Reconstruction sites as configuration: load and validate include/config/sites.yaml.

A site is where reconstructions run: a runner (a Globus Compute endpoint, or Slurm jobs through SFAPI),
the endpoints it reads scans from and writes results to, where results are copied, whether it is
off-site, and the retention of the copies made there. Every site is one :class:`Site`; nothing is
special-cased by name. Errors name the file and the key.
"""

from __future__ import annotations

import functools
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from include.compute_registry import FUNCTIONS
from include.endpoints import REPO_ROOT, default_profile, load_endpoints
from include.errors import ConfigError

SITES_FILE = REPO_ROOT / "include" / "config" / "sites.yaml"
#: How a site runs the reconstruction. ``globus_compute``: the functions of compute_functions/remote.py at a
#: Compute endpoint; ``sfapi``: Slurm jobs (include/jobs/tomo_recon.sh.j2, tomo_multiscale.sh.j2) through SFAPI.
RUNNERS = ("globus_compute", "sfapi")
#: Where scans come from and results go back to (beamline storage).
HOME_RAW = "data832_raw"
HOME_SCRATCH = "data832_scratch"
#: Deletion-manifest location of results on HOME_SCRATCH once an archive copy exists.
HOME_LOCATION = "data832"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
_KEYS = {
    "description",
    "enabled",
    "runner",
    "compute_endpoint_id",
    "source_endpoint",
    "raw_endpoint",
    "archive_endpoint",
    "offsite",
    "scratch_endpoint",
    "results_folder",
    "retention_location",
    "function_ids",
    "task_timeout_minutes",
    "placeholder",
}
_REQUIRED = ("runner", "raw_endpoint", "scratch_endpoint", "retention_location")


@dataclass(frozen=True)
class Site:
    """One reconstruction site.

    The scan is at ``source_endpoint`` when the site starts (data832_raw, or the NERSC copy the new-scan
    pipeline makes); it is staged to ``raw_endpoint`` (by Globus for ``globus_compute``, by the job itself
    for ``sfapi``) if that differs; results are written to ``scratch_endpoint`` under
    ``<folder>/<results_folder>/``, copied home to data832_scratch and, if set, to ``archive_endpoint``.
    """

    name: str
    description: str
    enabled: bool
    runner: str
    raw_endpoint: str
    scratch_endpoint: str
    results_folder: str
    retention_location: str
    compute_endpoint_id: str | None = None
    source_endpoint: str = HOME_RAW
    archive_endpoint: str | None = None
    offsite: bool = True
    function_ids: dict[str, str] = field(default_factory=dict)
    task_timeout_minutes: int = 120
    #: Whether ``compute_endpoint_id`` is a placeholder (refused by the production profile).
    placeholder: bool = False

    @property
    def dag_id(self) -> str:
        return f"bl832_{self.name}_recon"

    @property
    def stages_raw(self) -> bool:
        """Whether the scan must be copied from ``source_endpoint`` to ``raw_endpoint`` first."""
        return self.raw_endpoint != self.source_endpoint

    @property
    def copies_back(self) -> bool:
        """Whether results must be copied from the site to data832_scratch."""
        return self.scratch_endpoint != HOME_SCRATCH

    @property
    def needs_nersc_copy(self) -> bool:
        """Whether the site reads the scan's NERSC copy (made by the new-scan pipeline), not data832's."""
        return self.source_endpoint != HOME_RAW

    def result_destinations(self) -> list[str]:
        """Where results are copied from ``scratch_endpoint``: home first, then the archive copy."""
        destinations = [HOME_SCRATCH] if self.copies_back else []
        return destinations + ([self.archive_endpoint] if self.archive_endpoint else [])


@dataclass(frozen=True)
class Sites:
    sites: dict[str, Site]
    source: Path

    def __getitem__(self, name: str) -> Site:
        try:
            return self.sites[name]
        except KeyError:
            raise ConfigError(
                f"{self.source}: unknown site {name!r} (known: {', '.join(sorted(self.sites))})"
            ) from None

    def enabled(self) -> list[Site]:
        return [site for site in self.sites.values() if site.enabled]

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


def _string(entry: dict, key: str, where: str, source: Path) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{source}: {where}.{key}: missing or not a non-empty string")
    return value.strip()


def _uuid(value: str, key: str, source: Path) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ConfigError(f"{source}: {key}: {value!r} is not a UUID") from None


def parse_sites(document: object, *, source: Path, endpoint_names: set[str]) -> Sites:
    """Validate a parsed sites document; enabled sites must name endpoints of endpoints.yaml."""
    if not isinstance(document, dict) or not isinstance(document.get("sites"), dict) or not document["sites"]:
        raise ConfigError(f"{source}: sites: missing or empty")
    sites: dict[str, Site] = {}
    for name, entry in document["sites"].items():
        where = f"sites.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{source}: {where}: site names are lower-case identifiers (they name DAGs and folders)")
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: {where}: expected a mapping")
        unknown = set(entry) - _KEYS
        if unknown:
            raise ConfigError(f"{source}: {where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        values = {key: _string(entry, key, where, source) for key in _REQUIRED}
        for key in ("source_endpoint", "archive_endpoint", "compute_endpoint_id"):
            if entry.get(key) is not None:
                values[key] = _string(entry, key, where, source)
        enabled = entry.get("enabled", True)
        offsite = entry.get("offsite", True)
        placeholder = entry.get("placeholder", False)
        for key, flag in (("enabled", enabled), ("offsite", offsite), ("placeholder", placeholder)):
            if not isinstance(flag, bool):
                raise ConfigError(f"{source}: {where}.{key}: must be true or false")
        if values["runner"] not in RUNNERS:
            raise ConfigError(f"{source}: {where}.runner: {values['runner']!r} is not one of {', '.join(RUNNERS)}")
        if values["runner"] == "globus_compute":
            if "compute_endpoint_id" not in values:
                raise ConfigError(f"{source}: {where}.compute_endpoint_id: missing (runner globus_compute)")
            values["compute_endpoint_id"] = _uuid(values["compute_endpoint_id"], f"{where}.compute_endpoint_id", source)
        elif "compute_endpoint_id" in values or entry.get("function_ids"):
            raise ConfigError(f"{source}: {where}: compute_endpoint_id and function_ids need runner globus_compute")
        if enabled:
            for key in ("source_endpoint", "raw_endpoint", "scratch_endpoint", "archive_endpoint"):
                if key in values and values[key] not in endpoint_names:
                    raise ConfigError(f"{source}: {where}.{key}: unknown endpoint {values[key]!r} (see endpoints.yaml)")
        results_folder = entry.get("results_folder", name)
        if not isinstance(results_folder, str) or not _NAME.match(results_folder):
            raise ConfigError(f"{source}: {where}.results_folder: must be a lower-case identifier")
        function_ids = entry.get("function_ids") or {}
        if not isinstance(function_ids, dict):
            raise ConfigError(f"{source}: {where}.function_ids: expected a mapping of function name to id")
        unknown_functions = set(map(str, function_ids)) - set(FUNCTIONS)
        if unknown_functions:
            raise ConfigError(
                f"{source}: {where}.function_ids: unknown function(s) {', '.join(sorted(unknown_functions))} "
                f"(known: {', '.join(sorted(FUNCTIONS))})"
            )
        pinned = {str(fn): _uuid(str(fid), f"{where}.function_ids.{fn}", source) for fn, fid in function_ids.items()}
        timeout = entry.get("task_timeout_minutes", 120)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise ConfigError(f"{source}: {where}.task_timeout_minutes: must be a positive integer")
        sites[name] = Site(
            name=name,
            description=str(entry.get("description") or name),
            enabled=enabled,
            offsite=offsite,
            results_folder=results_folder,
            function_ids=pinned,
            task_timeout_minutes=timeout,
            placeholder=placeholder,
            **values,
        )
    return Sites(sites, source)


def load_sites(path: Path | None = None) -> Sites:
    """Load and validate the sites file (cached per path)."""
    return _load_cached(Path(path or SITES_FILE).resolve())


@functools.lru_cache(maxsize=4)
def _load_cached(path: Path) -> Sites:
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: sites file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    names = set(load_endpoints("production").endpoints)
    return parse_sites(document, source=path, endpoint_names=names)
