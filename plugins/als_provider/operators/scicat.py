"""SciCat operators: catalogue a scan (raw dataset) and a reconstruction (derived dataset).

Thin: parse the scan path, resolve endpoint names, call :class:`~als_provider.hooks.scicat.SciCatHook`.
Both are idempotent (a retry or re-run finds the dataset it made), so plain task retries are safe.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

if TYPE_CHECKING:
    from airflow.sdk import Context


class SciCatIngestRawOperator(BaseOperator):
    """Ingest a scan that is on ``endpoint`` as a SciCat raw dataset (SPEC §4 mapping, datablock, thumbnail).

    :param file_path: the scan as the beamline reports it (``/global/raw/<folder>/<file>.h5`` or
        ``<folder>/<file>.h5``); read at ``endpoint``. Templated.
    :param endpoint: endpoint name holding the raw tree (default ``data832_raw``). Templated.
    :param scicat_conn_id: SciCat connection.

    Returns (XCom) ``{"pid": ..., "dataset_name": ..., "source_folder": ...}``.
    """

    template_fields: Sequence[str] = ("file_path", "endpoint")
    ui_color = "#d9e7ff"

    def __init__(
        self, *, file_path: str, endpoint: str = "data832_raw", scicat_conn_id: str = "scicat_default", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.file_path = file_path
        self.endpoint = endpoint
        self.scicat_conn_id = scicat_conn_id

    def execute(self, context: Context) -> dict[str, str]:
        from als_provider.hooks.scicat import SciCatHook
        from include.endpoints import load_endpoints
        from include.paths import parse_scan

        scan = parse_scan(self.file_path)
        endpoint = load_endpoints()[self.endpoint]
        local = endpoint.posix_path(scan.relative_path)
        if not local.is_file():
            raise FileNotFoundError(f"scan {scan} is not on {self.endpoint} ({local}); nothing catalogued")
        source_folder = endpoint.globus_path(scan.folder)
        pid = SciCatHook(self.scicat_conn_id).ingest_raw(local, source_folder)
        return {"pid": pid, "dataset_name": scan.dataset, "source_folder": source_folder}


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
    :param endpoint: where the results are (default ``data832_scratch``).
    :param raw_endpoint: where the raw scan is (default ``data832_raw``).

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
        scicat_conn_id: str = "scicat_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.file_path, self.results_folder, self.site = file_path, results_folder, site
        self.parameters, self.preview_path, self.raw_pid = parameters, preview_path, raw_pid
        self.endpoint, self.raw_endpoint, self.scicat_conn_id = endpoint, raw_endpoint, scicat_conn_id
        self.skip_uncatalogued = skip_uncatalogued

    def execute(self, context: Context) -> dict[str, str]:
        from als_provider.hooks.scicat import SciCatHook
        from include.endpoints import load_endpoints
        from include.paths import endpoint_relative, parse_scan

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
            raw_folder = endpoints[self.raw_endpoint].globus_path(scan.folder)
            raw_pid = hook.find_raw(raw_folder, scan.dataset)
            if raw_pid is None and self.skip_uncatalogued:
                raise AirflowSkipException(f"{scan} is not in SciCat (export-controlled?): no derived dataset")
            if raw_pid is None:
                raise LookupError(f"no SciCat raw dataset for {scan} ({raw_folder}); ingest the scan first")
        source_folder = results.globus_path(folder)
        dataset_name = f"{scan.recon_dir_name}_{self.site}"
        preview = results.posix_path(endpoint_relative(self.preview_path)) if self.preview_path else None
        pid = hook.ingest_derived(
            raw_pid,
            dataset_name=dataset_name,
            source_folder=source_folder,
            tiff_location=results.globus_path(folder / scan.recon_dir_name),
            zarr_location=results.globus_path(folder / scan.zarr_dir_name),
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
