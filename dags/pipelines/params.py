"""The conf every scan DAG takes, as Params with JSON schema, and the checks Params cannot express.

Params refuse bad types, patterns and bounds before any task runs (UI form, REST API, CLI and
``dag.test`` alike). Airflow lets unknown top-level conf keys through, so every scan DAG starts with a
task that calls :func:`effective_params` (unknown keys refused; the upstream callers' ``is_export_control``
and ``config`` read as include/callers.py says), parses the scan path strictly and checks the
reconstruction options with :func:`recon_options`, before anything moves.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param

from compute_functions.options import ENGINES, RECON_SCHEMA, validate_options
from include.paths import FILE_PATH_PATTERN

__all__ = [
    "ENGINES",
    "RECON_SCHEMA",
    "effective_params",
    "file_path_param",
    "new_scan_params",
    "recon_options",
    "recon_param",
]


def file_path_param() -> Param:
    return Param(
        type="string",
        pattern=FILE_PATH_PATTERN,
        title="Scan",
        description="The scan as the beamline reports it: /global/raw/<folder>/<file>.h5 or <folder>/<file>.h5",
    )


def recon_param() -> Param:
    return Param(
        {},
        title="Reconstruction options",
        description="Per-scan options of the reconstruction (docs/recon-options.md: each with its upstream name); "
        "omitted keys take the defaults. Every site runs them unchanged.",
        **RECON_SCHEMA,
    )


def new_scan_params() -> dict[str, Param]:
    return {
        "file_path": file_path_param(),
        "is_export_controlled": Param(
            False,
            type="boolean",
            title="Export controlled",
            description="An export-controlled scan never leaves the beamline: no NERSC, ALCF or SciCat.",
        ),
        "send_to_nersc": Param(
            True,
            type="boolean",
            title="Send to NERSC",
            description="Copy the scan to NERSC (long-term copy) and register it in SciCat.",
        ),
    }


def recon_options(recon: dict[str, Any] | None) -> dict[str, Any]:
    """The reconstruction options, checked beyond what JSON schema can (ranges, exclusive pairs, unknown
    keys): compute_functions.options, the same code every site runs."""
    try:
        return validate_options(recon)
    except ValueError as exc:
        raise ValueError(f"recon.{exc}") from None


def effective_params(
    conf: dict[str, Any] | None, params: dict[str, Any], declared: set[str] | frozenset[str]
) -> tuple[dict[str, Any], list[str]]:
    """The run's settings (``params`` of the ``declared`` keys, with the upstream callers' names mapped) and
    the lines to log; refuses unknown keys (upstream's ``is_export_control`` and ``config`` are known)."""
    from include.callers import UPSTREAM_KEYS, read_config, read_export_control
    from include.endpoints import load_endpoints

    conf = dict(conf or {})
    unknown = set(conf) - set(declared) - UPSTREAM_KEYS
    if unknown:
        raise ValueError(
            f"unknown conf key(s) {', '.join(sorted(unknown))}; this DAG takes {', '.join(sorted(declared))} "
            f"(and upstream's {', '.join(sorted(UPSTREAM_KEYS))})"
        )
    settings = {key: params[key] for key in declared if key in params}
    export_controlled, notes = read_export_control(conf, declared)
    if export_controlled is not None:
        settings["is_export_controlled"] = export_controlled
    if "config" in conf:
        notes += read_config(conf["config"], load_endpoints())
    return settings, notes
