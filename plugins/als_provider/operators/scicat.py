"""SciCat operators: catalogue a scan (raw dataset) and a reconstruction (derived dataset).

Thin: parse the scan path, resolve endpoint names, call :class:`~als_provider.hooks.scicat.SciCatHook`.
Both are idempotent (a retry or re-run finds the dataset it made), so plain task retries are safe.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from als_provider.export_control import refuse_export_controlled

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

#: XCom key of a SciCat step that failed for a reason of its own (the scan file, its metadata, a record SciCat
#: refuses), not because SciCat is unreachable or refuses the login: the run names that error and owes no
#: registration (the catch-up could not make it either). dags/pipelines/steps.py reads it.
INPUT_ERROR_KEY = "input_error"


def names_input_errors(execute: Any) -> Any:
    """``execute`` that, failing for any reason but SciCat being down (or refusing the login), leaves its one-line
    error in XCom :data:`INPUT_ERROR_KEY` before raising it (a skip, or a failure it raises as owed, leaves none)."""

    @functools.wraps(execute)
    def wrapper(self: BaseOperator, context: Context) -> Any:
        from als_provider.hooks.scicat import SciCatAuthError, SciCatError

        try:
            return execute(self, context)
        except (AirflowSkipException, AirflowFailException):
            raise
        except Exception as exc:
            if isinstance(exc, SciCatError) and (exc.transient or isinstance(exc, SciCatAuthError)):
                raise
            if (ti := context.get("ti")) is not None:
                text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
                ti.xcom_push(key=INPUT_ERROR_KEY, value=f"{type(exc).__name__}: {text}")
            raise

    return wrapper


def _paths(file_path: str | list[str]) -> list[str]:
    """The run's file(s): one path, a list, or a list's JSON text (a rendered template)."""
    value: Any = file_path
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"file_path is not a JSON list: {exc}") from None
    paths = [value] if isinstance(value, str) else value
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p.strip() for p in paths):
        raise ValueError(f"file_path must be a path or a non-empty list of paths, got {file_path!r}")
    return paths


def _relative(file_path: str) -> PurePosixPath:
    """``<folder>/<file>`` of any file of a run (``/global/raw/`` prefix accepted, as for scans)."""
    from include.paths import BEAMLINE_RAW_PREFIX, InvalidPathError, endpoint_relative

    raw = file_path
    if raw.startswith(f"{BEAMLINE_RAW_PREFIX}/"):
        raw = raw[len(str(BEAMLINE_RAW_PREFIX)) + 1 :]
    relative = endpoint_relative(raw)
    if len(relative.parts) < 2:
        raise InvalidPathError(f"file_path {file_path!r} must name <folder>/<file>")
    return relative


class SciCatIngestRawOperator(BaseOperator):
    """Ingest a scan that is on ``endpoint`` as SciCat raw dataset(s) (mapping, datablock, thumbnail).

    :param file_path: the scan as the beamline reports it (``/global/raw/<folder>/<file>.h5`` or
        ``<folder>/<file>.h5``), or for ``als_733_saxs`` a run's files (a path, a list, or a list's JSON
        text; each ``.txt``/``.edf`` pair is one dataset); read at ``endpoint``. Templated.
    :param endpoint: endpoint name holding the raw tree (default ``data832_raw``). Templated.
    :param source_folder: the ``sourceFolder`` to record (8.3.2: upstream's ``/global/raw/<folder>``, the plan's
        ``scicat_source_folder``), or a list of them, one per file of ``file_path`` (a configured beamline's
        ``scicat_source_folders``: files of several folders); default the folder at ``endpoint``. Templated.
    :param long_term_endpoint: where the scan's long-term copy is (e.g. nersc832), read when the scan is no
        longer on ``endpoint`` (a catch-up after that copy was pruned). Templated.
    :param long_term_path: the scan's path on ``long_term_endpoint`` (e.g. ``raw/<folder>/<file>.h5``; for
        several files a list, one per file of ``file_path``). Without them a missing scan is looked for in
        ``source_folder`` when that names a copy readable here (the configured beamlines' records, which
        name their NERSC copy). Templated.
    :param ingester: the mapping, ``als_832_dx_4`` (default) or ``als_733_saxs`` (upstream's ``als733_saxs``
        accepted); an unknown one raises ValueError before anything is sent. Templated.
    :param scicat_conn_id: SciCat connection.

    Returns (XCom) ``{"pid": ..., "dataset_name": ..., "source_folder": ..., "pids": [...],
    "dataset_names": [...]}`` (``pid``/``dataset_name``: the first dataset).
    """

    template_fields: Sequence[str] = (
        "file_path",
        "endpoint",
        "source_folder",
        "long_term_endpoint",
        "long_term_path",
        "ingester",
    )
    ui_color = "#d9e7ff"

    def __init__(
        self,
        *,
        file_path: str | list[str],
        endpoint: str = "data832_raw",
        source_folder: str | None = None,
        long_term_endpoint: str | None = None,
        long_term_path: str | list[str] | None = None,
        ingester: str = "als_832_dx_4",
        scicat_conn_id: str = "scicat_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(ingester, str) and "{{" not in ingester:
            from include.scicat_ingesters import ingester_name

            ingester_name(ingester)  # a typo fails when the DAG is parsed
        self.file_path = file_path
        self.endpoint = endpoint
        self.source_folder = source_folder
        self.long_term_endpoint, self.long_term_path = long_term_endpoint, long_term_path
        self.ingester = ingester
        self.scicat_conn_id = scicat_conn_id

    @names_input_errors
    def execute(self, context: Context) -> dict[str, Any]:
        from als_provider.hooks.scicat import SciCatHook
        from include.endpoints import load_endpoints
        from include.paths import parse_scan
        from include.scicat_ingesters import ingester_name

        refuse_export_controlled(context, self.task_id, self.file_path, skip=True)  # never catalogued (issue 26)
        ingester = ingester_name(self.ingester)
        endpoint = load_endpoints()[self.endpoint]
        if ingester == "als_832_dx_4":
            relatives = [parse_scan(p).relative_path for p in _paths(self.file_path)]
        else:
            relatives = [_relative(p) for p in _paths(self.file_path)]
        sources = self._source_folders(relatives)
        long_term = self._long_term_copies(len(relatives))
        locals_ = [
            _readable_copy(endpoint, relative, copy, source)
            for relative, copy, source in zip(relatives, long_term, sources, strict=True)
        ]
        source_of = {local.parent: source for local, source in zip(locals_, sources, strict=True)}
        if ingester == "als_733_saxs":
            from include.scicat_733 import exposures

            locals_ = exposures(locals_)
            if not locals_:
                raise ValueError(f"no exposure to catalogue in {self.file_path!r} (only beamline test shots)")
        hook = SciCatHook(self.scicat_conn_id)
        pids, names, folders = [], [], []
        for local in locals_:
            source_folder = source_of.get(local.parent) or endpoint.globus_path(
                PurePosixPath(*local.parent.relative_to(endpoint.posix_root).parts)
            )
            pids.append(hook.ingest_raw(local, source_folder, ingester=ingester))
            names.append(hook.last_dataset_name)
            folders.append(source_folder)
        return {
            "pid": pids[0],
            "dataset_name": names[0],
            "source_folder": folders[0],
            "pids": pids,
            "dataset_names": names,
            "source_folders": folders,
        }

    def _source_folders(self, relatives: list[PurePosixPath]) -> list[str | None]:
        """Each file's ``sourceFolder``: ``source_folder`` as one per file (a list), or one for files of one folder
        (a path), or None each (the folder at ``endpoint``)."""
        if isinstance(self.source_folder, list | tuple):
            if len(self.source_folder) != len(relatives):
                raise ValueError(f"{len(self.source_folder)} source_folder(s) for {len(relatives)} file(s)")
            seen: dict[PurePosixPath, str] = {}
            for relative, source in zip(relatives, self.source_folder, strict=True):
                if seen.setdefault(relative.parent, source) != source:  # a folder's files share its sourceFolder
                    raise ValueError(f"files of {relative.parent} given different source_folders")
            return [str(source) for source in self.source_folder]
        folders = {r.parent for r in relatives}
        if self.source_folder and len(folders) > 1:
            raise ValueError(f"files in several folders ({sorted(map(str, folders))}) but one source_folder")
        return [self.source_folder or None] * len(relatives)

    def _long_term_copies(self, count: int) -> list[Path | None]:
        """Where each of the ``count`` files' long-term copy is readable here (None each without one)."""
        from include.endpoints import load_endpoints

        if not self.long_term_path:
            return [None] * count
        if not self.long_term_endpoint:
            raise ValueError("long_term_path without long_term_endpoint")
        paths = _paths(self.long_term_path)
        if len(paths) != count:
            raise ValueError(f"{len(paths)} long_term_path(s) for {count} file(s); give one per file")
        long_term = load_endpoints()[self.long_term_endpoint]
        return [long_term.posix_path(path) for path in paths]


class SciCatIngestDerivedOperator(BaseOperator):
    """Ingest a reconstruction (``rec<ds>/`` TIFFs and ``rec<ds>.zarr/``) as a derived dataset of its scan.

    :param file_path: the scan, as for :class:`SciCatIngestRawOperator`. Templated.
    :param results_folder: folder on ``endpoint`` (relative to its root) that holds ``rec<ds>/`` and
        ``rec<ds>.zarr/`` for this site. Templated.
    :param site: where it was reconstructed (``alcf``, ``nersc``, ``local``...); part of the record. Templated.
    :param parameters: the reconstruction's summary (dict, or its JSON text). Templated.
    :param preview_path: a PNG on ``endpoint`` (relative path) attached as the preview; optional. Templated.
    :param raw_pid: the raw dataset's pid; when empty, the raw dataset is looked up by its key on
        ``raw_endpoint`` (fails if the scan was never catalogued, or skips with ``skip_uncatalogued``,
        for scans that are never catalogued, such as export-controlled ones). Templated.
    :param endpoint: where the results are read here (default ``data832_scratch``).
    :param raw_endpoint: where the raw scan is (default ``data832_raw``).
    :param source_folder: the ``sourceFolder`` to record: the results folder's long-term copy (e.g. the
        site's archive endpoint, same relative path); default ``results_folder`` on ``endpoint``. The
        TIFF and Zarr locations are recorded under it. Templated.
    :param raw_source_folder: the ``sourceFolder`` the raw ingest recorded (e.g. nersc832 ``raw/<folder>``),
        where the raw dataset is looked up; default the scan's folder on ``raw_endpoint``. Templated.

    Returns (XCom) ``{"pid": ..., "raw_pid": ..., "dataset_name": ..., "source_folder": ...}``.
    """

    template_fields: Sequence[str] = (
        "file_path",
        "results_folder",
        "site",
        "parameters",
        "preview_path",
        "raw_pid",
        "endpoint",
        "raw_endpoint",
        "source_folder",
        "raw_source_folder",
    )
    ui_color = "#d9e7ff"

    def __init__(
        self,
        *,
        file_path: str,
        results_folder: str,
        site: str,
        parameters: dict[str, Any] | str | None = None,
        preview_path: str | None = None,
        raw_pid: str | None = None,
        endpoint: str = "data832_scratch",
        raw_endpoint: str = "data832_raw",
        skip_uncatalogued: bool = False,
        source_folder: str | None = None,
        raw_source_folder: str | None = None,
        scicat_conn_id: str = "scicat_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_folder, self.raw_source_folder = source_folder, raw_source_folder
        self.file_path, self.results_folder, self.site = file_path, results_folder, site
        self.parameters, self.preview_path, self.raw_pid = parameters, preview_path, raw_pid
        self.endpoint, self.raw_endpoint, self.scicat_conn_id = endpoint, raw_endpoint, scicat_conn_id
        self.skip_uncatalogued = skip_uncatalogued

    @names_input_errors
    def execute(self, context: Context) -> dict[str, str]:
        from als_provider.hooks.scicat import SciCatHook
        from include.endpoints import load_endpoints
        from include.paths import endpoint_relative, parse_scan

        refuse_export_controlled(context, self.task_id, [self.file_path, self.results_folder], skip=True)
        scan = parse_scan(self.file_path)
        endpoints = load_endpoints()
        results = endpoints[self.endpoint]
        folder = endpoint_relative(self.results_folder)
        parameters = self.parameters
        if isinstance(parameters, str):
            try:
                parameters = json.loads(parameters) if parameters.strip() else None
            except ValueError as exc:
                raise ValueError(f"parameters is not a JSON object: {exc}") from None
        if parameters is not None and not isinstance(parameters, dict):
            raise ValueError(f"parameters must be a dict, got {type(parameters).__name__}")
        hook = SciCatHook(self.scicat_conn_id)
        raw_pid = self.raw_pid
        if not raw_pid:
            raw = endpoints[self.raw_endpoint]
            raw_folder = self.raw_source_folder or raw.globus_path(scan.folder)
            raw_pid = hook.find_raw(raw_folder, _raw_names(raw.posix_path(scan.relative_path), scan.dataset))
            if raw_pid is None and self.skip_uncatalogued:
                from include.catalogue_backlog import owed_raw

                if owed := owed_raw(str(scan.relative_path)):
                    raise AirflowFailException(  # no retry: finish records this one as owed too
                        f"the SciCat raw dataset of {scan} is still owed ({', '.join(owed)}): this derived dataset "
                        "is owed too; the scicat_catchup DAG registers both, raw first"
                    )
                raise AirflowSkipException(f"{scan} is not in SciCat (export-controlled?): no derived dataset")
            if raw_pid is None:
                raise LookupError(f"no SciCat raw dataset for {scan} ({raw_folder}); ingest the scan first")
        source_folder = self.source_folder or results.globus_path(folder)
        dataset_name = f"{scan.recon_dir_name}_{self.site}"
        preview = results.posix_path(endpoint_relative(self.preview_path)) if self.preview_path else None
        pid = hook.ingest_derived(
            raw_pid,
            dataset_name=dataset_name,
            source_folder=source_folder,
            tiff_location=str(PurePosixPath(source_folder, scan.recon_dir_name)),
            zarr_location=str(PurePosixPath(source_folder, scan.zarr_dir_name)),
            parameters=parameters,
            site=self.site,
            preview_path=preview,
            local_folder=results.posix_path(folder),
        )
        return {
            "pid": pid,
            "raw_pid": raw_pid,
            "dataset_name": dataset_name,
            "source_folder": source_folder,
        }


def _readable_copy(endpoint: Any, relative: PurePosixPath, long_term: Path | None, source_folder: str | None) -> Path:
    """The scan file at ``endpoint``, else its long-term copy ``long_term`` (a catch-up after the first copy was
    pruned), else, without one, its copy in ``source_folder`` when the record names one readable here;
    FileNotFoundError if none."""
    from include.endpoints import load_endpoints
    from include.errors import ConfigError

    local = endpoint.posix_path(relative)
    if local.is_file():
        return local
    candidates: list[tuple[str, Path]] = []
    if long_term is not None:
        candidates.append(("its long-term copy", long_term))
    elif source_folder:
        for other in sorted(load_endpoints().endpoints.values(), key=lambda e: -len(str(e.root))):
            try:
                candidates.append((other.name, other.posix_path(other.relative_of(source_folder) / relative.name)))
            except (ConfigError, ValueError):
                continue
    for where, candidate in candidates:
        if candidate.is_file():
            log.info("%s is not on %s; reading %s (%s)", relative, endpoint.name, where, candidate)
            return candidate
    if long_term is not None:
        elsewhere = f" nor at its long-term copy {long_term}"
    else:
        elsewhere = f" nor in {source_folder}" if source_folder else ""
    raise FileNotFoundError(f"{relative} is not on {endpoint.name} ({local}){elsewhere}; nothing catalogued")


def _raw_names(local: Path, stem: str) -> list[str]:
    """The datasetName(s) the raw ingest may have given a scan: its ``file_name`` when the scan is readable
    here, then its stem (the 8.3.2 mapping's fallback, and the usual ``file_name``)."""
    from include.scicat_metadata import raw_dataset_name

    names = []
    if local.is_file():
        with contextlib.suppress(OSError, ValueError):  # unreadable: the stem is the best guess
            names.append(raw_dataset_name(local))
    return [*names, stem]
