"""Globus endpoints as configuration: load, validate and resolve `include/config/endpoints.yaml`.

Two profiles share one file: ``production`` (the real collections) and ``local`` (every collection
served from a folder under one local root by the local facility). The profile comes from the
``ALS_ENDPOINT_PROFILE`` environment variable (default ``local``, the embedded default), the local
root from ``LOCAL_FACILITY_ROOT`` (default ``.facility/`` in the repository). A collection marked
``placeholder`` (its uuid is not the real one yet) is served by the local profile and refused by the production
profile before anything is sent (:meth:`Endpoints.sendable`).
"""

from __future__ import annotations

import functools
import os
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from include.errors import ConfigError
from include.paths import EndpointPath, endpoint_relative

REPO_ROOT = Path(__file__).resolve().parent.parent
ENDPOINTS_FILE = REPO_ROOT / "include" / "config" / "endpoints.yaml"
PROFILES = ("production", "local")


@dataclass(frozen=True)
class Collection:
    """A Globus collection; ``storage`` names the file system it serves (collections may share one)."""

    name: str
    uuid: str
    storage: str
    placeholder: bool = False


@dataclass(frozen=True)
class Endpoint:
    """A named place on a collection: the collection plus a root path inside it."""

    name: str
    collection: Collection
    root: PurePosixPath
    posix_root: Path

    @property
    def uuid(self) -> str:
        return self.collection.uuid

    def globus_path(self, relative: str | PurePosixPath) -> str:
        """The absolute path inside the collection for a path relative to this endpoint."""
        rel = endpoint_relative(str(relative), allow_root=True)
        return str(self.root / rel) if str(rel) != "." else str(self.root)

    def posix_path(self, relative: str | PurePosixPath) -> Path:
        """Where a path relative to this endpoint is, as a file, at the endpoint's own facility."""
        rel = endpoint_relative(str(relative), allow_root=True)
        return self.posix_root / rel

    def relative_of(self, globus_path: str) -> PurePosixPath:
        """The endpoint-relative form of an absolute collection path; refuses anything outside the root."""
        path = PurePosixPath(globus_path)
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            raise ConfigError(f"path {globus_path!r} is outside endpoint {self.name!r} (root {self.root})") from None
        return endpoint_relative(str(rel), allow_root=True)

    def at(self, relative: str | PurePosixPath) -> EndpointPath:
        return EndpointPath(self.name, endpoint_relative(str(relative)))


@dataclass(frozen=True)
class Endpoints:
    """All endpoints of one profile."""

    profile: str
    facility_root: Path | None
    collections: dict[str, Collection]
    endpoints: dict[str, Endpoint]
    source: Path

    def __getitem__(self, name: str) -> Endpoint:
        try:
            return self.endpoints[name]
        except KeyError:
            known = ", ".join(sorted(self.endpoints))
            raise ConfigError(f"{self.source}: unknown endpoint {name!r} (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self.endpoints

    def sendable(self, name: str) -> Endpoint:
        """The endpoint, if requests may be sent to it: the production profile refuses a placeholder collection
        (:class:`~include.errors.ConfigError`) before anything reaches Globus."""
        endpoint = self[name]
        if self.profile == "production" and endpoint.collection.placeholder:
            raise ConfigError(
                f"{self.source}: endpoint {name!r} is on collection {endpoint.collection.name!r}, whose uuid "
                f"{endpoint.uuid} is a PLACEHOLDER: the production profile sends nothing to it (fill in the real "
                "collection id and drop `placeholder: true`)"
            )
        return endpoint

    def collection_by_uuid(self, collection_uuid: str) -> Collection:
        for collection in self.collections.values():
            if collection.uuid == collection_uuid:
                return collection
        raise ConfigError(f"{self.source}: no collection with uuid {collection_uuid!r}")

    def posix(self, where: EndpointPath) -> Path:
        return self[where.endpoint].posix_path(where.path)


def default_profile() -> str:
    return os.environ.get("ALS_ENDPOINT_PROFILE", "local")


def default_facility_root() -> Path:
    return Path(os.environ.get("LOCAL_FACILITY_ROOT", REPO_ROOT / ".facility")).resolve()


def _field(mapping: dict, key: str, where: str, source: Path) -> str:
    value = mapping.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ConfigError(f"{source}: {where}.{key}: missing")
    if not isinstance(value, str):
        raise ConfigError(f"{source}: {where}.{key}: must be a string, got {type(value).__name__}")
    return value


def parse_endpoints(document: dict, *, profile: str, source: Path, facility_root: Path | None = None) -> Endpoints:
    """Validate a parsed endpoints document and resolve it for one profile."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown endpoint profile {profile!r} (known: {', '.join(PROFILES)})")
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    for section in ("collections", "endpoints"):
        if not isinstance(document.get(section), dict) or not document[section]:
            raise ConfigError(f"{source}: {section}: missing or empty")

    collections: dict[str, Collection] = {}
    for name, entry in document["collections"].items():
        where = f"collections.{name}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: {where}: expected a mapping")
        value = _field(entry, "uuid", where, source)
        try:
            uuid.UUID(value)
        except ValueError:
            raise ConfigError(f"{source}: {where}.uuid: {value!r} is not a UUID") from None
        storage = entry.get("storage", name)
        if not isinstance(storage, str) or not storage.strip() or "/" in storage or storage.startswith("."):
            raise ConfigError(f"{source}: {where}.storage: must be a plain folder name, got {storage!r}")
        placeholder = entry.get("placeholder", False)
        if not isinstance(placeholder, bool):
            raise ConfigError(f"{source}: {where}.placeholder: must be true or false")
        collections[name] = Collection(name=name, uuid=value, storage=storage, placeholder=placeholder)

    if profile == "local":
        facility_root = (facility_root or default_facility_root()).resolve()
    endpoints: dict[str, Endpoint] = {}
    for name, entry in document["endpoints"].items():
        where = f"endpoints.{name}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: {where}: expected a mapping")
        unknown = set(entry) - {"collection", "root", "posix_root", "description"}
        if unknown:
            raise ConfigError(f"{source}: {where}: unknown key(s) {', '.join(sorted(unknown))}")
        collection_name = _field(entry, "collection", where, source)
        if collection_name not in collections:
            raise ConfigError(f"{source}: {where}.collection: unknown collection {collection_name!r}")
        root = PurePosixPath(_field(entry, "root", where, source))
        if not root.is_absolute() or ".." in root.parts:
            raise ConfigError(f"{source}: {where}.root: must be an absolute path without '..', got {str(root)!r}")
        if profile == "local":
            assert facility_root is not None
            posix_root = facility_root / collections[collection_name].storage / str(root).lstrip("/")
        else:
            posix_root = Path(entry.get("posix_root") or str(root))
        endpoints[name] = Endpoint(name, collections[collection_name], root, posix_root)
    return Endpoints(profile, facility_root, collections, endpoints, source)


def load_endpoints(
    profile: str | None = None, *, path: Path | None = None, facility_root: Path | None = None
) -> Endpoints:
    """Load and validate the endpoints file for a profile (defaults from the environment)."""
    profile = profile or default_profile()
    path = Path(path or ENDPOINTS_FILE)
    root = facility_root or (default_facility_root() if profile == "local" else None)
    return _load_cached(profile, path.resolve(), root)


@functools.lru_cache(maxsize=8)
def _load_cached(profile: str, path: Path, facility_root: Path | None) -> Endpoints:
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: endpoints file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_endpoints(document, profile=profile, source=path, facility_root=facility_root)
