"""The conf every scan DAG takes, as Params with JSON schema, and the checks Params cannot express.

Params refuse bad types, patterns and bounds before any task runs (UI form, REST API, CLI and
``dag.test`` alike). Airflow lets unknown top-level conf keys through, so every scan DAG starts with a
task that calls :func:`check_conf` (unknown keys), parses the scan path strictly and checks the
reconstruction options with :func:`recon_options`, before anything moves.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param

from include.paths import FILE_PATH_PATTERN

#: Reconstruction engines of compute_functions.engines (kept here: DAG files must not import numpy).
ENGINES = ["auto", "nufft", "fbp", "dfi", "tomopy"]
RECON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "rows": {"type": "string", "pattern": r"^\d+:\d+$", "description": "detector rows A:B (half-open)"},
        "center": {"type": "number", "minimum": 0, "description": "rotation axis, in detector columns"},
        "ring_removal": {"type": "boolean", "description": "remove ring (stripe) artefacts"},
        "engine": {"type": "string", "enum": ENGINES, "description": "reconstruction engine"},
        "binning": {"type": "integer", "minimum": 1, "maximum": 8, "description": "bin pixels for previews"},
    },
}


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
        description="rows 'A:B', center (columns), ring_removal, engine, binning 1-8; omitted keys: defaults",
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
    """The reconstruction options, with what JSON schema cannot check (``rows`` A < B)."""
    options = dict(recon or {})
    unknown = set(options) - set(RECON_SCHEMA["properties"])
    if unknown:
        raise ValueError(f"recon: unknown option(s) {', '.join(sorted(unknown))}")
    if "rows" in options:
        start, stop = (int(v) for v in str(options["rows"]).split(":"))
        if start >= stop:
            raise ValueError(f"recon.rows {options['rows']!r}: A must be smaller than B")
    return options


def check_conf(conf: dict[str, Any] | None, allowed: set[str] | frozenset[str]) -> None:
    unknown = set(conf or {}) - set(allowed)
    if unknown:
        raise ValueError(
            f"unknown conf key(s) {', '.join(sorted(unknown))}; this DAG takes {', '.join(sorted(allowed))}"
        )
