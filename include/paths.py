"""Paths as typed values: endpoint-relative paths and the identity of a scan.

Every path a user or a beamline hands us goes through :func:`endpoint_relative` or
:func:`parse_scan` once, when conf is parsed; nothing else does string surgery on paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from include.errors import InvalidPathError

#: Where the beamline reports new scans (SPEC §1); the part after it is the scan's identity.
BEAMLINE_RAW_PREFIX = PurePosixPath("/global/raw")
SCAN_FILE_RE = re.compile(r"^(?P<stem>[^/\x00]+)\.h5$")
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def endpoint_relative(path: str, *, allow_root: bool = False) -> PurePosixPath:
    """Turn a user path into a clean endpoint-relative path.

    Refuses absolute paths, ``..``, empty names (``a//b``), ``.`` components, control characters and
    backslashes. ``allow_root`` accepts ``""``/``"."`` as the endpoint root itself.
    """
    if not isinstance(path, str):
        raise InvalidPathError(f"path must be a string, got {type(path).__name__}")
    if path in ("", ".") and allow_root:
        return PurePosixPath(".")
    if not path:
        raise InvalidPathError("path is empty")
    if path.startswith("/"):
        raise InvalidPathError(f"path {path!r} is absolute; give it relative to the endpoint root")
    if _FORBIDDEN_CHARS.search(path):
        raise InvalidPathError(f"path {path!r} contains a control character or a backslash")
    parts = path.rstrip("/").split("/")
    for part in parts:
        if part == "":
            raise InvalidPathError(f"path {path!r} has an empty name")
        if part in (".", ".."):
            raise InvalidPathError(f"path {path!r} contains {part!r}")
    return PurePosixPath(*parts)


@dataclass(frozen=True)
class EndpointPath:
    """A path relative to a named endpoint's root."""

    endpoint: str
    path: PurePosixPath

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", endpoint_relative(str(self.path), allow_root=True))

    def __str__(self) -> str:
        return f"{self.endpoint}:{self.path}"

    def child(self, name: str) -> EndpointPath:
        return EndpointPath(self.endpoint, self.path / endpoint_relative(name))

    def to_dict(self) -> dict[str, str]:
        return {"endpoint": self.endpoint, "path": str(self.path)}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> EndpointPath:
        return cls(data["endpoint"], PurePosixPath(data["path"]))


@dataclass(frozen=True)
class Scan:
    """A scan's identity: ``<folder>/<file>.h5`` relative to a beamline's raw tree."""

    folder: str
    file_name: str

    @property
    def relative_path(self) -> PurePosixPath:
        return PurePosixPath(self.folder, self.file_name)

    @property
    def dataset(self) -> str:
        """The dataset name: the file stem (SPEC §1)."""
        return self.file_name[: -len(".h5")]

    @property
    def recon_dir_name(self) -> str:
        return f"rec{self.dataset}"

    @property
    def zarr_dir_name(self) -> str:
        return f"rec{self.dataset}.zarr"

    def __str__(self) -> str:
        return str(self.relative_path)


def parse_scan(file_path: str) -> Scan:
    """Parse a scan path as the beamline reports it.

    Accepts ``/global/raw/<folder>/<file>.h5`` (exactly that prefix, compared component by
    component, so a folder named ``global…`` is never mistaken for it) or ``<folder>/<file>.h5``.
    """
    if not isinstance(file_path, str) or not file_path.strip():
        raise InvalidPathError("file_path is empty")
    raw = file_path
    if raw.startswith("/"):
        absolute = PurePosixPath(raw)
        prefix = BEAMLINE_RAW_PREFIX.parts
        if absolute.parts[: len(prefix)] != prefix or raw.rstrip("/") == str(BEAMLINE_RAW_PREFIX):
            raise InvalidPathError(
                f"file_path {file_path!r} is absolute but not under {BEAMLINE_RAW_PREFIX}/; "
                "give /global/raw/<folder>/<file>.h5 or <folder>/<file>.h5"
            )
        raw = raw[len(str(BEAMLINE_RAW_PREFIX)) + 1 :]
    relative = endpoint_relative(raw)
    if len(relative.parts) != 2:
        raise InvalidPathError(
            f"file_path {file_path!r} must name exactly <folder>/<file>.h5, got {len(relative.parts)} part(s)"
        )
    folder, file_name = relative.parts
    if not SCAN_FILE_RE.match(file_name):
        raise InvalidPathError(f"file_path {file_path!r} does not name an HDF5 scan (<name>.h5)")
    return Scan(folder=folder, file_name=file_name)
