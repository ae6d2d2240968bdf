"""The new-scan DAG of a configured beamline (include/config/beamlines.yaml): ``<key>_new_file``.

The DAG files ``dags/bl7012_new_file.py`` (7.0.1.2, ptychography) and ``dags/bl733_new_file.py`` (7.3.3,
SAXS/WAXS) each call :func:`make_beamline_dag`; the steps are built by
:func:`dags.pipelines.steps.beamline_steps`, the plan by :func:`include.plans.beamline_plan`.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from dags.pipelines.defaults import dag_defaults
from dags.pipelines.steps import beamline_steps, plan
from include.beamlines import Beamline
from include.paths import beamline_file_pattern
from include.plans import PTYCHO_FOLDER


def file_path_schema(beamline: Beamline) -> dict:
    """The conf's ``file_path``: one file, or a non-empty list of files (upstream's shape), each
    ``<folder>/…/<file>`` (folders may nest; absolute on the source endpoint allowed) ending with one of the
    beamline's ``file_suffixes`` (include.paths.parse_file checks the rest)."""
    pattern = beamline_file_pattern(beamline.file_suffixes)
    return {
        "type": ["string", "array"],
        "anyOf": [
            {"type": "string", "pattern": pattern},
            {"type": "array", "items": {"type": "string", "pattern": pattern}, "minItems": 1},
        ],
    }


def make_beamline_dag(beamline: Beamline) -> DAG:
    """The DAG ``<key>_new_file`` of one beamline: plan, move to NERSC, then its pipelines in parallel."""
    with DAG(
        dag_id=beamline.dag_id,
        description=f"New scan of {beamline.beamline}: move to NERSC, then {', '.join(beamline.pipelines) or 'done'}",
        doc_md=beamline_doc(beamline),
        tags=[beamline.key, "new-scan", "globus", *beamline.pipelines],
        params={
            "file_path": Param(
                **file_path_schema(beamline),
                title="Scan(s)",
                description=f"The new scan, <folder>/…/<file>({'|'.join(beamline.file_suffixes)}) relative to "
                f"{beamline.source_endpoint} (beamline storage) or absolute on it, or a non-empty list of them "
                "(folders may differ) moved and processed in one run",
            )
        },
        **dag_defaults(owner=beamline.owner),
    ) as dag:
        beamline_steps(beamline, plan([beamline.key], False))
    return dag


def beamline_doc(beamline: Beamline) -> str:
    """The doc_md of a beamline's new-scan DAG, from its configuration."""
    lines = [
        f"### New scan (beamline {beamline.beamline})",
        f"{beamline.description}. Configured in include/config/beamlines.yaml (`{beamline.key}`); built by "
        "dags/pipelines/beamline.py.",
        "",
        f"**Conf**: `file_path` — `<folder>/…/<file>` ending {' or '.join(beamline.file_suffixes)} on "
        f"`{beamline.source_endpoint}` (folders may nest, e.g. 7.0.1.2's `2023/02/230216/NS_…_0_0.cxi`; an "
        f"absolute path is read under the endpoint's root, e.g. 7.3.3's `/<folder>/<file>` on data733), or a "
        "non-empty list of them, of one folder or several (one run for all; each entry checked, an error names "
        "it by index). Only the listed files are copied, each to the same relative path. Unknown keys, `..`, "
        "hidden names and absolute paths outside the endpoint's root are refused by `plan` before anything "
        "moves (docs/upstream-callers.md).",
        "",
        f"**Move**: `{beamline.source_endpoint}` → `{beamline.nersc_endpoint}`, every file in one Globus task "
        "(checksums verified; when every file is already there with the same size and mtime nothing is copied). "
        "Then, in parallel (each step once for all the files):",
    ]
    if beamline.pipeline("scicat") is not None:
        lines.append(
            f"- **scicat**: a SciCat raw dataset per file (mapping `{beamline.pipeline('scicat').get('ingester')}`; "
            f"read at `{beamline.source_endpoint}`, `sourceFolder` the `{beamline.nersc_endpoint}` copy of "
            "each file's folder)."
        )
    ptycho = beamline.pipeline("ptycho")
    if ptycho is not None:
        lines.append(
            f"- **ptycho**: Slurm job `ptycho_<folder>_<dataset>` at NERSC (SFAPI; `{ptycho['template']}`) reads "
            f"`{beamline.nersc_endpoint}:<folder>/<file>` and writes `{ptycho['results_endpoint']}:<folder>/"
            f"{PTYCHO_FOLDER}/rec<dataset>/` (checked through Globus). The job's step is a placeholder "
            "(compute_functions.ptycho, a STXM map) for the real ptychography code."
        )
    archive = beamline.pipeline("hpss_archive")
    if archive is not None:
        lines.append(
            f"- **hpss_archive**: Slurm job `hpss_archive_<folder>_<dataset>` at NERSC (SFAPI, `hsi put`; a plain "
            f"copy on the local profile) puts the CFS copy on tape at `{archive['archive_endpoint']}:<folder>/<file>`"
            "; its size is then checked through Globus."
        )
    lines += [
        "",
        f"**Deletion manifests** (recorded by `finish`, even when a step fails): `{beamline.source_endpoint}` once "
        f"the NERSC copy exists (location `{beamline.source_retention}`)"
        + (
            f"; `{beamline.nersc_endpoint}` once the tape copy is verified (location "
            f"`{archive['retention_location']}`, checked against `{archive['archive_endpoint']}`)"
            if archive
            else ""
        )
        + ". Days per location: Variable `als_retention_days`; the `prune` DAG deletes.",
        "",
        "**Outputs** (XCom key `outputs` of `finish`): the NERSC copy and each pipeline's results.",
    ]
    return "\n".join(lines)
