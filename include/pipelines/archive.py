"""A configured beamline's steps (include/config/beamlines.yaml): move each new scan to NERSC CFS, then its
pipelines in parallel (SciCat, ptychography, an HPSS tape archive), the deletion-manifest entries of the
copies it made, and the run's outputs. :func:`include.beamlines.make_beamline_dag` wires them into a DAG."""

from __future__ import annotations

import re

from airflow.sdk import Param, task

from als_provider.operators.globus_transfer import GlobusTransferOperator
from als_provider.operators.scicat import SciCatIngestRawOperator
from als_provider.operators.sfapi import SFAPIJobOperator
from include.beamlines import Beamline
from include.endpoints import default_profile

LOCAL = default_profile() == "local"
POLL_SECONDS = 1.0 if LOCAL else 10.0
JOB_POLL_SECONDS = 1.0 if LOCAL else 60.0
#: The scan's identity, <folder>/<file>.h5, as validated by the DAG's first task.
SCAN = "{{ ti.xcom_pull(task_ids='validate_conf')['scan'] }}"
MOVE_TASK = "move_to_nersc"
SCICAT_TASK = "scicat_ingest"
ARCHIVE_VERIFY_TASK = "verify_archive"
#: Paths hsi gets inside its own command line: nothing it would split or interpret.
_HSI_SAFE = re.compile(r"^[A-Za-z0-9_.,+@=/-]+$")
FILE_PATTERN = r"^(?!\.\.?/)[^/]+/(?!\.)[^/]+\.h5$"


def beamline_params(beamline: Beamline) -> dict[str, Param]:
    return {
        "file_path": Param(
            type="string",
            pattern=FILE_PATTERN,
            title="Scan",
            description=f"The new scan, <folder>/<file>.h5 relative to {beamline.source_endpoint} (beamline storage)",
        )
    }


@task(multiple_outputs=True)
def plan_archive(beamline_key: str, params: dict | None = None) -> dict:
    """The CFS copy to archive, its place on HPSS, and the job's values (``hsi`` in production)."""
    from include.beamlines import load_beamlines
    from include.endpoints import load_endpoints
    from include.paths import parse_scan

    beamline = load_beamlines()[beamline_key]
    options = beamline.pipeline("hpss_archive")
    scan = parse_scan(params["file_path"])
    endpoints = load_endpoints()
    source = endpoints[beamline.nersc_endpoint].posix_path(str(scan.relative_path))
    destination = endpoints[options["archive_endpoint"]].posix_path(str(scan.relative_path))
    mode = "copy" if LOCAL else "hsi"
    if mode == "hsi":
        for path in (source, destination):
            if not _HSI_SAFE.match(str(path)):
                raise ValueError(f"{path}: characters hsi would split or interpret; archive it by hand")
    return {
        "job_name": f"hpss_archive_{scan.folder}_{scan.dataset}",
        "values": {"source": str(source), "destination": str(destination), "mode": mode},
    }


@task(task_id=ARCHIVE_VERIFY_TASK)
def verify_archive(beamline_key: str, scan: str) -> list[dict]:
    """Check through Globus that the HPSS copy exists with the CFS copy's size; return it as an output."""
    from als_provider.hooks.globus_transfer import GlobusTransferHook
    from include.beamlines import load_beamlines
    from include.paths import EndpointPath

    beamline = load_beamlines()[beamline_key]
    hook = GlobusTransferHook()
    original = EndpointPath(beamline.nersc_endpoint, scan)
    archived = EndpointPath(beamline.pipeline("hpss_archive")["archive_endpoint"], scan)
    want, got = hook.stat(original), hook.stat(archived)
    if got is None:
        raise FileNotFoundError(f"{archived} is missing after the archive job reported COMPLETED")
    if want is None or got.get("size") != want.get("size"):
        raise ValueError(f"{archived} has {got.get('size')} bytes, {original} {want and want.get('size')}")
    print(f"{archived}: {got['size']} bytes, same as {original}")
    return [archived.to_dict()]


def hpss_archive_steps(beamline: Beamline):
    """The HPSS archive steps in the current DAG; returns (first, last); ``last`` returns the outputs."""
    options = beamline.pipeline("hpss_archive")
    planned = plan_archive(beamline.key)
    job = SFAPIJobOperator(
        task_id="archive_to_hpss",
        template=options["template"],
        values=planned["values"],
        job_name=planned["job_name"],
        directives=options["directives"] or None,
        poll_interval=JOB_POLL_SECONDS,
    )
    verified = verify_archive(beamline.key, SCAN)
    job >> verified
    return planned.operator, verified


@task(trigger_rule="all_done")
def record_deletions(beamline_key: str, ti=None, dag_run=None) -> list[dict]:
    """Record each copy that now has a verified copy elsewhere, whatever the other steps did.

    The beamline's copy once the NERSC copy exists (check: the NERSC copy); the NERSC copy once the tape
    copy is verified (check: the HPSS copy). Retention days per location: Variable als_retention_days.
    """
    from include.beamlines import load_beamlines
    from include.manifests import schedule_deletions

    beamline = load_beamlines()[beamline_key]
    validated = ti.xcom_pull(task_ids="validate_conf")
    if not validated:
        print("The conf was refused: this run made no copies.")
        return []
    scan = validated["scan"]
    copies = []
    if ti.xcom_pull(task_ids=MOVE_TASK):
        copies.append(
            {
                "endpoint": beamline.source_endpoint,
                "path": scan,
                "check_endpoint": beamline.nersc_endpoint,
                "location": beamline.source_retention,
            }
        )
    archive = beamline.pipeline("hpss_archive")
    if archive and ti.xcom_pull(task_ids=ARCHIVE_VERIFY_TASK):
        copies.append(
            {
                "endpoint": beamline.nersc_endpoint,
                "path": scan,
                "check_endpoint": archive["archive_endpoint"],
                "location": archive["retention_location"],
            }
        )
    return schedule_deletions(copies, dag_id=dag_run.dag_id, run_id=dag_run.run_id)


@task
def publish_outputs(beamline_key: str, scan: str, results: list, ti=None) -> dict:
    """Publish where the scan and its results now are (XCom key ``outputs``) and its SciCat pid."""
    from include.beamlines import load_beamlines

    outputs = [{"endpoint": load_beamlines()[beamline_key].nersc_endpoint, "path": scan}]
    outputs += [output for step in results for output in step or []]
    ti.xcom_push(key="outputs", value=outputs)
    ingest = ti.xcom_pull(task_ids=SCICAT_TASK)
    return {"outputs": outputs, "scicat": ingest}


def beamline_steps(beamline: Beamline):
    """Every step of a beamline's new-scan DAG, after ``validate_conf``; returns (first, last)."""
    from include.pipelines.ptycho import ptycho_steps

    move = GlobusTransferOperator(
        task_id=MOVE_TASK,
        source_endpoint=beamline.source_endpoint,
        source_path=SCAN,
        destination_endpoint=beamline.nersc_endpoint,
        destination_path=SCAN,
        recursive=False,
        skip_if_present=True,
        poll_interval=POLL_SECONDS,
    )
    lasts, results = [move], []
    if beamline.pipeline("scicat") is not None:
        ingest = SciCatIngestRawOperator(task_id=SCICAT_TASK, file_path=SCAN, endpoint=beamline.source_endpoint)
        move >> ingest
        lasts.append(ingest)
    for kind, steps in (("ptycho", ptycho_steps), ("hpss_archive", hpss_archive_steps)):
        if beamline.pipeline(kind) is not None:
            first, last = steps(beamline)
            move >> first
            lasts.append(last.operator)
            results.append(last)
    lasts >> record_deletions(beamline.key)
    published = publish_outputs(beamline.key, SCAN, results)
    lasts >> published
    return move, published


def beamline_doc(beamline: Beamline) -> str:
    """The doc_md of a beamline's new-scan DAG, from its configuration."""
    from include.pipelines.ptycho import ptycho_doc

    lines = [
        f"### New scan (beamline {beamline.beamline})",
        f"{beamline.description}. Configured in include/config/beamlines.yaml (`{beamline.key}`).",
        "",
        f"**Conf**: `file_path` — `<folder>/<file>.h5` on `{beamline.source_endpoint}`. Unknown keys, `..` and "
        "absolute paths are refused before anything moves.",
        "",
        f"**Move**: `{beamline.source_endpoint}` → `{beamline.nersc_endpoint}` (Globus, checksums verified; a scan "
        "already there with the same size and mtime is not copied again). Then, in parallel:",
    ]
    if beamline.pipeline("scicat") is not None:
        lines.append(f"- **scicat**: SciCat raw dataset of the scan (read at `{beamline.source_endpoint}`).")
    if beamline.pipeline("ptycho") is not None:
        lines.append(f"- {ptycho_doc(beamline)}")
    archive = beamline.pipeline("hpss_archive")
    if archive is not None:
        lines.append(
            f"- **hpss_archive**: Slurm job `hpss_archive_<folder>_<dataset>` at NERSC (SFAPI, `hsi put`; a plain "
            f"copy on the local profile) puts the CFS copy on tape at `{archive['archive_endpoint']}:<folder>/<file>`"
            "; its size is then checked through Globus."
        )
    lines += [
        "",
        f"**Deletion manifests** (recorded even when a step fails): `{beamline.source_endpoint}` once the NERSC "
        f"copy exists (location `{beamline.source_retention}`)"
        + (
            f"; `{beamline.nersc_endpoint}` once the tape copy is verified (location "
            f"`{archive['retention_location']}`, checked against `{archive['archive_endpoint']}`)"
            if archive
            else ""
        )
        + ". Days per location: Variable `als_retention_days`; the `prune` DAG deletes.",
        "",
        "**Outputs** (XCom key `outputs`): the NERSC copy and each pipeline's results.",
    ]
    return "\n".join(lines)
