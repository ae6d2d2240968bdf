"""The conf every scan DAG takes, as Params with JSON schema, and the checks Params cannot express.

Params refuse bad types, patterns and bounds before any task runs (UI form, REST API, CLI and
``dag.test`` alike). Airflow lets unknown top-level conf keys through, so every scan DAG starts with a
task that calls :func:`effective_params` (unknown keys refused; the upstream callers' ``is_export_control``
and ``config`` read as include/callers.py says), parses the scan path strictly, settles export control with
:func:`export_control` (recorded per scan, never downgraded: include/export_control.py) and checks the
reconstruction options with :func:`recon_options`, before anything moves.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from airflow.sdk import Param

from dags.pipelines.defaults import with_default
from include.compute_registry import recon_options as _recon_options
from include.paths import FILE_PATH_PATTERN

if TYPE_CHECKING:
    from include.plans import Plan

_OPTIONS = _recon_options()  # the science's option schema, through the registry (no Airflow there)
ENGINES, RECON_SCHEMA = _OPTIONS.ENGINES, _OPTIONS.RECON_SCHEMA
check_value, validate_options = _OPTIONS.check_value, _OPTIONS.validate_options

__all__ = [
    "ENGINES",
    "RECON_SCHEMA",
    "conf_refusal",
    "effective_params",
    "export_control",
    "file_path_param",
    "force_param",
    "keep_on_site",
    "new_scan_params",
    "num_nodes",
    "num_nodes_param",
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


def force_param() -> Param:
    return with_default(
        False,
        type="boolean",
        title="Reconstruct again",
        description="Reconstruct again even when complete results exist; they are never replaced by incomplete "
        "ones: complete results at home stay as they are and the new ones go to a rerun-<run> folder beside them "
        "(docs/exactly-once.md, Reconstruct again).",
    )


#: The most nodes a run may ask for (compute_functions/slabs.py ``MAX_SLABS``: one slab per node).
MAX_NODES = 64


def num_nodes_param() -> Param:
    return with_default(
        1,
        type="integer",
        minimum=1,
        maximum=MAX_NODES,
        title="Nodes",
        description="Nodes of each reconstruction (upstream's num_nodes): at NERSC one Slurm job of this many "
        "nodes, one srun task per node; at ALCF, OLCF and locally this many Compute tasks; each reconstructs a "
        "slab of the slices, then the slabs are put together (docs/compute.md, Across nodes).",
    )


def num_nodes(params: dict[str, Any]) -> int:
    """The run's ``num_nodes`` (1 when absent), checked in one line: a whole number from 1 to :data:`MAX_NODES`."""
    value = params.get("num_nodes", 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_NODES:
        raise ValueError(
            f'num_nodes: {json.dumps(value)}: must be a whole number from 1 to {MAX_NODES}; e.g. "num_nodes": 2'
        )
    return value


def recon_param() -> Param:
    return with_default(
        {},
        title="Reconstruction options",
        description=None,  # the form shows description_md only where there is no description
        description_md=recon_help(),
        **RECON_SCHEMA,
    )


def recon_help() -> str:
    """The form's help for ``recon`` (markdown): every option, what it takes, its default and its meaning."""
    lines = [
        'A JSON object of the options to change, e.g. `{"binning": 2, "ring_method": "fw"}`; omitted options take '
        "their defaults, and every site runs them unchanged. The options:",
        "",
    ]
    for key, spec in RECON_SCHEMA["properties"].items():
        default = f", default {json.dumps(spec['default'])}" if spec.get("default") is not None else ""
        lines.append(f"- `{key}` ({_takes(spec)}{default}): {spec.get('description', '')}")
    return "\n".join(lines)


def _takes(spec: dict[str, Any]) -> str:
    """``integer 1 to 8``, ``one of a, b``, ``list of integer``... (what an option's schema accepts)."""
    kind = spec.get("type", "value")
    if "enum" in spec:
        return "one of " + ", ".join(map(str, spec["enum"]))
    if kind == "array":
        return f"list of {spec.get('items', {}).get('type', 'values')}"
    low, high = spec.get("minimum", spec.get("exclusiveMinimum")), spec.get("maximum")
    if low is not None and high is not None:
        return f"{kind} {'above ' if 'exclusiveMinimum' in spec else ''}{low} to {high}"
    if low is not None:
        return f"{kind} {'>' if 'exclusiveMinimum' in spec else '>='} {low}"
    return "true/false" if kind == "boolean" else kind


def new_scan_params() -> dict[str, Param]:
    return {
        "file_path": file_path_param(),
        "is_export_controlled": with_default(
            False,
            type="boolean",
            title="Export controlled",
            description="An export-controlled scan never leaves the beamline: no NERSC, ALCF or SciCat.",
        ),
        "send_to_nersc": with_default(
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
        text = str(exc)
        raise ValueError(text if text.startswith("recon:") else f"recon.{text}") from None


#: What :data:`FILE_PATH_PATTERN` means, for the one-line refusal (the regex itself helps nobody).
FILE_PATH_HELP = (
    "must be <folder>/<file>.h5, optionally under /global/raw/; "
    'e.g. "file_path": "BLS-00564_dyparkinson/20230224_132553_sea_shell.h5"'
)


def conf_refusal(conf: dict[str, Any] | None, params: Any) -> str | None:
    """Why the DAG's Params refuse ``conf``, as one line ``<key path>: <value>: <what is wrong>; <fix>``, or None.

    Airflow's own refusal (jsonschema's) prints the regex or the whole recon schema and, for a nested key,
    not its name; show this line instead. ``params``: the DAG's ``params`` (a ParamsDict).
    """
    for key, value in (conf or {}).items():
        param = params.get_param(key) if hasattr(params, "get_param") and key in params else None
        schema = getattr(param, "schema", None) or {}
        if isinstance(schema.get("type"), list):  # a field with a default admits null for the form only
            schema = {**schema, "type": next(kind for kind in schema["type"] if kind != "null")}
        if value is None and "not" in schema:
            return f"{key}: null: leave {key} out to take its default ({json.dumps(param.value)})"
        if value is None or "type" not in schema:
            continue
        try:
            if key == "recon":
                recon_options(value)
            elif schema.get("pattern") == FILE_PATH_PATTERN:
                if not isinstance(value, str) or not re.match(FILE_PATH_PATTERN, value):
                    return f"{key}: {json.dumps(value)}: {FILE_PATH_HELP}"
            elif schema["type"] in ("boolean", "string", "integer", "number") or (
                schema["type"] == "array" and "type" in schema.get("items", {})
            ):
                check_value(key, value, schema)
        except ValueError as exc:
            return str(exc)
    return None


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


#: The catalogue steps of every pipeline: an export-controlled scan gets none of them.
CATALOGUE_STEPS = ("scicat_ingest", "scicat_derived")


def export_control(params: dict[str, Any], scans: list, pipelines: list[str], *, source: str) -> bool:
    """Whether the run's scans are export-controlled, settled before anything moves.

    ``is_export_controlled: true`` records each scan (a signed Variable, include/export_control.py; an existing
    record is kept). Without it, a record of any of the scans makes the run export-controlled anyway (a later
    ``false`` never downgrades a scan): ``params["is_export_controlled"]`` becomes true where the DAG has
    that setting; a DAG without one (a reconstruction site or beamline that is off-site) is refused."""
    from include.export_control import find_controlled, mark_controlled
    from include.sites import load_sites

    if params.get("is_export_controlled"):
        for scan in scans:
            print(f"export-controlled: {scan}: {mark_controlled(scan, source=source).describe()}")
        return True
    found = find_controlled([str(scan.relative_path) for scan in scans])
    if not found:
        return False
    for record in found:
        print(f"export-controlled: {record.folder}/{record.dataset}: {record.describe()}; this run's conf is ignored")
    if "is_export_controlled" in params:
        params["is_export_controlled"] = True
        return True
    sites = load_sites().sites
    offsite = [name for name in pipelines if name not in sites or sites[name].offsite]
    if offsite:
        record = found[0]
        raise ValueError(
            f"{record.folder}/{record.dataset} is export-controlled ({record.describe()}): {', '.join(offsite)} "
            "would take it off site; nothing was started (docs/security.md)"
        )
    return True


def keep_on_site(planned: Plan) -> Plan:
    """An on-site pipeline's plan for an export-controlled scan: no catalogue step, results written private
    (folders 2770, files 660: compute_functions/permissions.py; by the site's runner)."""
    import dataclasses

    from include.plans import SitePlan
    from include.runners import get_runner

    planned = dataclasses.replace(
        planned,
        skip_steps=tuple(sorted({*planned.skip_steps, *CATALOGUE_STEPS})),
        notes=(*planned.notes, "export-controlled: no SciCat record; results 2770/660"),
    )
    if isinstance(planned, SitePlan):
        planned = dataclasses.replace(planned, steps=get_runner(planned.runner).private(planned.steps))
    return planned
