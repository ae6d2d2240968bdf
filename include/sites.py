"""Compute sites as configuration: load and validate include/config/sites.yaml.

A site is where reconstructions run: a Globus Compute endpoint, the endpoints it reads scans from and
writes results to, and the retention of the copies made there. Errors name the file and the key.
"""

from __future__ import annotations

import functools
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from include.compute_registry import FUNCTIONS
from include.endpoints import REPO_ROOT, load_endpoints
from include.errors import ConfigError

SITES_FILE = REPO_ROOT / "include" / "config" / "sites.yaml"
#: How a site runs functions. ``globus_compute``: compute_functions/remote.py at a Compute endpoint.
RUNNERS = ("globus_compute",)
#: Where scans come from and results go back to (beamline storage).
HOME_RAW = "data832_raw"
HOME_SCRATCH = "data832_scratch"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
_KEYS = {
    "description",
    "enabled",
    "runner",
    "compute_endpoint_id",
    "raw_endpoint",
    "scratch_endpoint",
    "results_folder",
    "retention_location",
    "function_ids",
    "task_timeout_minutes",
}
_REQUIRED = ("runner", "compute_endpoint_id", "raw_endpoint", "scratch_endpoint", "retention_location")


@dataclass(frozen=True)
class Site:
    """One compute site."""

    name: str
    description: str
    enabled: bool
    runner: str
    compute_endpoint_id: str
    raw_endpoint: str
    scratch_endpoint: str
    results_folder: str
    retention_location: str
    function_ids: dict[str, str] = field(default_factory=dict)
    task_timeout_minutes: int = 120

    @property
    def dag_id(self) -> str:
        return f"bl832_{self.name}_recon"

    @property
    def stages_raw(self) -> bool:
        """Whether the scan must be copied from data832_raw to the site first."""
        return self.raw_endpoint != HOME_RAW

    @property
    def copies_back(self) -> bool:
        """Whether results must be copied from the site to data832_scratch."""
        return self.scratch_endpoint != HOME_SCRATCH


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
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{source}: {where}.enabled: must be true or false")
        if values["runner"] not in RUNNERS:
            raise ConfigError(f"{source}: {where}.runner: {values['runner']!r} is not one of {', '.join(RUNNERS)}")
        values["compute_endpoint_id"] = _uuid(values["compute_endpoint_id"], f"{where}.compute_endpoint_id", source)
        if enabled:
            for key in ("raw_endpoint", "scratch_endpoint"):
                if values[key] not in endpoint_names:
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
            results_folder=results_folder,
            function_ids=pinned,
            task_timeout_minutes=timeout,
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
