"""Paths as typed values: endpoint-relative paths and the identity of a scan.

Every path a user or a beamline hands us goes through :func:`endpoint_relative` or
:func:`parse_scan` once, when conf is parsed; nothing else does string surgery on paths. The scan-name
rules of SPEC §1 (which names in a raw tree are scans, :func:`scan_from_names`) and a scan's dispatcher
run id (:func:`scan_run_id`) live here too: this is the only module that parses scan names.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol

from include.errors import InvalidPathError

#: Where the beamline reports new scans (SPEC §1); the part after it is the scan's identity.
BEAMLINE_RAW_PREFIX = PurePosixPath("/global/raw")
#: Where spot832 keeps scans (over SFTP too) unless configured otherwise.
DEFAULT_RAW_ROOT = str(BEAMLINE_RAW_PREFIX)
SCAN_FILE_RE = re.compile(r"^(?P<stem>[^/\x00]+)\.h5$")
#: What a scan file ends with, by default (8.3.2, 7.0.1.2); a beamline may list others (beamlines.yaml).
SCAN_SUFFIXES = (".h5",)
#: The scan DAGs' ``file_path`` Param pattern: ``/global/raw/<folder>/<file>.h5`` or ``<folder>/<file>.h5``;
#: no ``.``/``..`` names (:func:`parse_scan` checks the rest).
FILE_PATH_PATTERN = r"^(/global/raw/)?(?!\.\.?/)[^/]+/(?!\.)[^/]+\.h5$"
#: SPEC §1: experiment folder ``<Prefix>-<5 digits>_<email user>``.
FOLDER_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9]*-\d{5}_[A-Za-z0-9][A-Za-z0-9._-]*$"
#: SPEC §1: scan ``<YYYYMMDD>_<HHMMSS>_<free text>.h5`` (a mosaic tile ends ``_x<##>y<##>.h5``).
SCAN_NAME_PATTERN = r"^\d{8}_\d{6}_[^/\x00-\x1f]+\.h5$"
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
_RUN_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


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


class _HasResultsFolder(Protocol):
    results_folder: str


@dataclass(frozen=True)
class Results:
    """A scan's results at a site, relative to any endpoint that holds them (site scratch, data832_scratch)."""

    folder: PurePosixPath
    dataset: str

    @property
    def tiff(self) -> PurePosixPath:
        """The TIFF stack folder ``rec<dataset>/``."""
        return self.folder / f"rec{self.dataset}"

    @property
    def zarr(self) -> PurePosixPath:
        """The multiscale OME-Zarr ``rec<dataset>.zarr/``."""
        return self.folder / f"rec{self.dataset}.zarr"

    @property
    def preview(self) -> PurePosixPath:
        return self.zarr / "preview.png"

    def folders(self) -> tuple[PurePosixPath, PurePosixPath]:
        """The two folders a reconstruction produces: the TIFF stack and the Zarr."""
        return self.tiff, self.zarr


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
        return self.file_name.rpartition(".")[0]

    @property
    def recon_dir_name(self) -> str:
        """``rec<dataset>``: the TIFF folder's name (:class:`Results`)."""
        return Results(PurePosixPath(), self.dataset).tiff.name

    @property
    def zarr_dir_name(self) -> str:
        """``rec<dataset>.zarr``: the OME-Zarr folder's name (:class:`Results`)."""
        return Results(PurePosixPath(), self.dataset).zarr.name

    def results(self, site: _HasResultsFolder) -> Results:
        """Where ``site`` puts this scan's results: ``<folder>/<site.results_folder>/rec<dataset>/`` and ``.zarr``
        (a dataset whose result names would be another scan's is refused: :func:`check_result_names`)."""
        return self.results_under(site.results_folder)

    def results_under(self, name: str) -> Results:
        """This scan's results in ``<folder>/<name>/`` (``name`` empty: in the scan's folder itself)."""
        check_result_names(self)
        return Results(PurePosixPath(self.folder, name), self.dataset)

    def __str__(self) -> str:
        return str(self.relative_path)


#: What a result folder name may not end with: ``rec<dataset>.zarr`` is the OME-Zarr of another dataset.
RESULT_SUFFIXES = (".zarr",)


def check_result_names(scan: Scan) -> None:
    """Refuse a scan whose result names could be another scan's (:class:`InvalidPathError`, one line).

    Results are ``rec<dataset>`` (TIFFs) and ``rec<dataset>.zarr`` side by side, so a dataset ending with
    ``.zarr`` (any case: some file systems fold it) would take the Zarr folder of the dataset without it."""
    for suffix in RESULT_SUFFIXES:
        if scan.dataset.lower().endswith(suffix):
            base = scan.dataset[: -len(suffix)]
            ending = scan.file_name[len(scan.dataset) :]
            raise InvalidPathError(
                f"{scan}: the dataset name {scan.dataset!r} ends with {suffix!r}, so its TIFF folder "
                f"rec{scan.dataset} would be the OME-Zarr folder of {base}{ending}; rename the file "
                f"(e.g. {base}_{suffix.lstrip('.')}{ending}) and dispatch it again"
            )


def parse_scan(file_path: str, *, suffixes: tuple[str, ...] = SCAN_SUFFIXES) -> Scan:
    """Parse a scan path as the beamline reports it.

    Accepts ``/global/raw/<folder>/<file>.h5`` (exactly that prefix, compared component by
    component, so a folder named ``global…`` is never mistaken for it) or ``<folder>/<file>.h5``;
    ``suffixes``: what the file may end with (a beamline's ``file_suffixes``; default ``.h5``).
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
    if suffixes == SCAN_SUFFIXES and not SCAN_FILE_RE.match(file_name):
        raise InvalidPathError(f"file_path {file_path!r} does not name an HDF5 scan (<name>.h5)")
    if not any(file_name.endswith(suffix) and len(file_name) > len(suffix) for suffix in suffixes):
        raise InvalidPathError(f"file_path {file_path!r} does not end with {' or '.join(suffixes)}")
    return Scan(folder=folder, file_name=file_name)


def parse_scans(file_path: object, *, suffixes: tuple[str, ...] = SCAN_SUFFIXES) -> list[Scan]:
    """The scans of ``file_path``: one path, or a non-empty list of them, each checked by :func:`parse_scan`;
    an error names the bad entry by its index."""
    return _each(file_path, lambda entry: parse_scan(entry, suffixes=suffixes))


def parse_file(file_path: str, *, suffixes: tuple[str, ...], root: str | PurePosixPath = "/") -> Scan:
    """A configured beamline's file (include/config/beamlines.yaml), as its upstream caller names it:
    ``<folder>/…/<file><suffix>`` relative to the source endpoint (folders may nest: 7.0.1.2's
    ``2023/02/230216/NS_…_0_0.cxi``), or absolute on that endpoint, i.e. under its ``root`` (7.3.3's paths on
    data733, whose root is ``/``). The scan's folder is everything before the file's name. Refuses ``..``,
    ``.``, empty and hidden names and a path outside ``root``."""
    if not isinstance(file_path, str) or not file_path.strip():
        raise InvalidPathError("file_path is empty")
    raw = file_path
    if raw.startswith("/"):
        prefix = str(root).rstrip("/") + "/"
        if not raw.startswith(prefix):
            raise InvalidPathError(
                f"file_path {file_path!r} is absolute but outside the source endpoint's root {root}; "
                f"give a path under {prefix} or relative to it"
            )
        raw = raw[len(prefix) :]
    parts = endpoint_relative(raw).parts
    hidden = [part for part in parts if part.startswith(".")]
    if hidden:
        raise InvalidPathError(
            f"file_path {file_path!r} has the hidden name {hidden[0]!r}; hidden names are not moved, rename it"
        )
    if len(parts) < 2:
        raise InvalidPathError(f"file_path {file_path!r} must name <folder>/<file>, not a file at the root")
    *folders, file_name = parts
    if not any(file_name.endswith(suffix) and len(file_name) > len(suffix) for suffix in suffixes):
        raise InvalidPathError(f"file_path {file_path!r} does not end with {' or '.join(suffixes)}")
    return Scan(folder="/".join(folders), file_name=file_name)


def parse_files(file_path: object, *, suffixes: tuple[str, ...], root: str | PurePosixPath = "/") -> list[Scan]:
    """A configured beamline's files: one path, or a non-empty list of them (upstream's shape for 7.3.3), each
    checked by :func:`parse_file`; an error names the bad entry by its index."""
    return _each(file_path, lambda entry: parse_file(entry, suffixes=suffixes, root=root))


def _each(file_path: object, parse: Callable[[str], Scan]) -> list[Scan]:
    """``parse`` applied to ``file_path`` (a path) or to each entry of it (a non-empty list)."""
    if isinstance(file_path, str):
        return [parse(file_path)]
    if not isinstance(file_path, list | tuple) or not file_path:
        raise InvalidPathError(
            f"file_path must be <folder>/<file> or a non-empty list of them, got {type(file_path).__name__}"
            + (" (empty)" if isinstance(file_path, list | tuple) else "")
        )
    scans = []
    for index, entry in enumerate(file_path):
        try:
            scans.append(parse(entry))
        except InvalidPathError as exc:
            raise InvalidPathError(f"file_path[{index}] {entry!r}: {exc}") from None
    return scans


def beamline_file_pattern(suffixes: tuple[str, ...] = SCAN_SUFFIXES) -> str:
    """The Param pattern of a configured beamline's file (:func:`parse_file`): ``<folder>/…/<file><suffix>``,
    optionally absolute; no empty, ``.``/``..`` or hidden names."""
    ends = "|".join(re.escape(suffix) for suffix in suffixes)
    return rf"^/?((?!\.)[^/]+/)+(?!\.)[^/]+({ends})$"


def beamline_path(scan: Scan) -> str:
    """The scan as the beamline reports it: ``/global/raw/<folder>/<file>.h5`` (the dispatcher's ``file_path``)."""
    return f"{BEAMLINE_RAW_PREFIX}/{scan.relative_path}"


def is_scan_folder(name: str, *, folder_pattern: str = FOLDER_NAME_PATTERN) -> bool:
    """Whether a folder of a raw tree named ``name`` may hold scans (an experiment folder, SPEC §1)."""
    return re.match(folder_pattern, name) is not None


def scan_from_names(
    folder: str, file_name: str, *, folder_pattern: str = FOLDER_NAME_PATTERN, file_pattern: str = SCAN_NAME_PATTERN
) -> Scan | None:
    """The scan named ``<folder>/<file_name>`` in a raw tree, or ``None`` when the names are not a scan's.

    Both names must match their patterns (SPEC §1 by default), :func:`parse_scan` must accept them, and the
    scan's :func:`beamline_path` must pass :data:`FILE_PATH_PATTERN` (so the dispatcher's Params accept it).
    """
    if not is_scan_folder(folder, folder_pattern=folder_pattern) or not re.match(file_pattern, file_name):
        return None
    try:
        scan = parse_scan(f"{folder}/{file_name}")
    except InvalidPathError:
        return None
    return scan if re.match(FILE_PATH_PATTERN, beamline_path(scan)) else None


def scan_run_id(scan: Scan) -> str:
    """The dispatcher run id of a scan: ``scan__<folder>__<dataset>__<hash>``, the same on every call.

    Names are sanitised to Airflow's run-id characters and shortened; the hash of the exact scan path keeps
    two scans whose sanitised names collide apart.
    """
    digest = hashlib.sha256(str(scan.relative_path).encode()).hexdigest()[:12]
    folder = _RUN_ID_UNSAFE.sub("-", scan.folder)[:80]
    dataset = _RUN_ID_UNSAFE.sub("-", scan.dataset)[:120]
    return f"scan__{folder}__{dataset}__{digest}"
