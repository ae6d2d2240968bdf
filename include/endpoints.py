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

from include.config_files import ConfigDocument, load_config, named
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
        return named(self.endpoints, name, "endpoint", self.source)

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

    def storage_folder(self, collection: Collection) -> Path:
        """The folder the local facility serves ``collection``'s file system from (local profile only):
        ``<facility_root>/<storage>``; collections sharing a file system share it, their paths lie below it.
        The one statement of that layout: the local profile's posix roots and the facility both use it."""
        if self.facility_root is None:
            raise ConfigError(f"{self.source}: the {self.profile} profile has no local facility")
        return _storage_folder(self.facility_root, collection)


def _storage_folder(facility_root: Path, collection: Collection) -> Path:
    return facility_root / collection.storage


def default_profile() -> str:
    return os.environ.get("ALS_ENDPOINT_PROFILE", "local")


def default_facility_root() -> Path:
    return Path(os.environ.get("LOCAL_FACILITY_ROOT", REPO_ROOT / ".facility")).resolve()


_NAME = {"type": "string", "minLength": 1}
#: The shape of endpoints.yaml; :func:`parse_endpoints` checks the rest (uuids, names, roots).
SCHEMA: dict = {
    "type": "object",
    "required": ["collections", "endpoints"],
    "additionalProperties": False,
    "properties": {
        "collections": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "required": ["uuid"],
                "additionalProperties": False,
                "properties": {
                    "uuid": _NAME,
                    "storage": {"type": "string", "pattern": "^[^/.][^/]*$", "description": "a plain folder name"},
                    "placeholder": {"type": "boolean"},
                    "description": {"type": "string"},
                },
            },
        },
        "endpoints": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "required": ["collection", "root"],
                "additionalProperties": False,
                "properties": {
                    "collection": _NAME,
                    "root": _NAME,
                    "posix_root": _NAME,
                    "description": {"type": "string"},
                },
            },
        },
    },
}


def parse_endpoints(document: ConfigDocument, *, profile: str, facility_root: Path | None = None) -> Endpoints:
    """Check a parsed endpoints document (already schema-checked) and resolve it for one profile."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown endpoint profile {profile!r} (known: {', '.join(PROFILES)})")
    data = document.data
    collections: dict[str, Collection] = {}
    for name, entry in data["collections"].items():
        try:
            uuid.UUID(entry["uuid"])
        except ValueError:
            raise document.error(("collections", name, "uuid"), f"{entry['uuid']!r} is not a UUID") from None
        collections[name] = Collection(
            name=name,
            uuid=entry["uuid"],
            storage=entry.get("storage", name),
            placeholder=entry.get("placeholder", False),
        )

    if profile == "local":
        facility_root = (facility_root or default_facility_root()).resolve()
    endpoints: dict[str, Endpoint] = {}
    for name, entry in data["endpoints"].items():
        collection_name = entry["collection"]
        if collection_name not in collections:
            known = ", ".join(sorted(collections))
            raise document.error(
                ("endpoints", name, "collection"), f"unknown collection {collection_name!r} (known: {known})"
            )
        root = PurePosixPath(entry["root"])
        if not root.is_absolute() or ".." in root.parts:
            raise document.error(
                ("endpoints", name, "root"), f"must be an absolute path without '..', got {str(root)!r}"
            )
        if profile == "local":
            assert facility_root is not None
            posix_root = _storage_folder(facility_root, collections[collection_name]) / root.relative_to("/")
        else:
            posix_root = Path(entry.get("posix_root") or str(root))
        endpoints[name] = Endpoint(name, collections[collection_name], root, posix_root)
    return Endpoints(profile, facility_root, collections, endpoints, document.source)


def load_endpoints(
    profile: str | None = None, *, path: Path | None = None, facility_root: Path | None = None
) -> Endpoints:
    """Load and check the endpoints file for a profile (defaults from the environment)."""
    profile = profile or default_profile()
    path = Path(path or ENDPOINTS_FILE)
    root = facility_root or (default_facility_root() if profile == "local" else None)
    return _load_cached(profile, path.resolve(), root)


@functools.lru_cache(maxsize=8)
def _load_cached(profile: str, path: Path, facility_root: Path | None) -> Endpoints:
    return parse_endpoints(load_config(path, SCHEMA), profile=profile, facility_root=facility_root)
