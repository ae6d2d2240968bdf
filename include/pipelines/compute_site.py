"""Reconstruction steps at a Globus Compute site (include/config/sites.yaml): stage the scan, reconstruct,
write the multiscale Zarr, bring the results home, record what may be deleted, publish the outputs."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import task

from als_provider.operators.globus_compute import GlobusComputeOperator
from als_provider.operators.globus_transfer import GlobusTransferOperator
from als_provider.operators.scicat import SciCatIngestDerivedOperator
from include.dag_params import ENGINES, recon_options
from include.endpoints import default_profile
from include.sites import HOME_RAW, HOME_SCRATCH, Site, load_sites

#: Seconds between polls of Compute and Transfer: the local facility answers at once.
POLL_SECONDS = 1.0 if default_profile() == "local" else 15.0

DOC = """
### Reconstruction at {name} (beamline 8.3.2)
{description}.

**Conf**: `file_path` — the scan, `/global/raw/<folder>/<file>.h5` or `<folder>/<file>.h5`;
optional `recon` — `rows` ("A:B"), `center` (columns), `ring_removal` (bool), `engine`
({engines}), `binning` (1 to 8). Unknown keys are refused.

**Steps**: {steps}

**Results**: `data832_scratch:<folder>/{folder}/rec<dataset>/` (one float32 TIFF per detector row) and
`rec<dataset>.zarr/` beside it; each site writes under its own folder (`{folder}`), so sites never
overwrite each other. They are published as the run's outputs (XCom key `outputs`).

**Cleanup**: every copy made at the site is recorded in the deletion manifests (location
`{retention}`, checked against data832), also when a step fails, so nothing is orphaned.
Compute tasks re-attach on retry instead of running again (task state store).
"""


@task(multiple_outputs=True)
def plan(site_name: str, params: dict | None = None) -> dict:
    """Parse the conf once: the scan, its paths at every endpoint, and each function's kwargs (one XCom each)."""
    from include.endpoints import load_endpoints
    from include.paths import parse_scan

    site = load_sites()[site_name]
    scan = parse_scan(params["file_path"])
    recon = recon_options(params.get("recon"))
    endpoints = load_endpoints()
    raw = endpoints[site.raw_endpoint]
    scratch = endpoints[site.scratch_endpoint]
    results = f"{scan.folder}/{site.results_folder}"
    tiff_path, zarr_path = f"{results}/{scan.recon_dir_name}", f"{results}/{scan.zarr_dir_name}"
    scan_posix = str(raw.posix_path(str(scan.relative_path)))
    return {
        "scan": str(scan.relative_path),
        "dataset": scan.dataset,
        "results_folder": results,
        "tiff_path": tiff_path,
        "zarr_path": zarr_path,
        "preview_path": f"{zarr_path}/preview.png",
        "reconstruct": {"scan_path": scan_posix, "out_dir": str(scratch.posix_path(results)), **recon},
        "multiscale": {
            "tiff_dir": str(scratch.posix_path(tiff_path)),
            "zarr_path": str(scratch.posix_path(zarr_path)),
            "raw": scan_posix,
        },
    }


@task(trigger_rule="all_done", multiple_outputs=False)
def record_deletions(site_name: str, plan_task_id: str, ti=None, dag_run=None) -> list[dict]:
    """Record every copy this run made at the site in the deletion manifests, whatever the other steps did."""
    from include.manifests import schedule_deletions
    from include.sites import load_sites

    site = load_sites()[site_name]
    planned = ti.xcom_pull(task_ids=plan_task_id)
    if not planned:
        print("The run stopped before planning: it made no copies.")
        return []
    copies = []
    if site.stages_raw:
        copies.append({"endpoint": site.raw_endpoint, "path": planned["scan"], "check_endpoint": HOME_RAW})
    if site.copies_back:
        copies += [
            {"endpoint": site.scratch_endpoint, "path": planned[key], "check_endpoint": HOME_SCRATCH}
            for key in ("tiff_path", "zarr_path")
        ]
    for copy in copies:
        copy["location"] = site.retention_location
    return schedule_deletions(copies, dag_id=dag_run.dag_id, run_id=dag_run.run_id)


@task(multiple_outputs=False)
def publish_outputs(planned: dict, recon: dict, ti=None) -> dict:
    """Check the results are on data832_scratch and publish them (XCom key ``outputs``)."""
    from als_provider.hooks.globus_transfer import GlobusTransferHook
    from include.paths import EndpointPath

    hook = GlobusTransferHook()
    outputs = [EndpointPath(HOME_SCRATCH, planned[key]) for key in ("tiff_path", "zarr_path")]
    for where in outputs:
        if hook.stat(where) is None:
            raise FileNotFoundError(f"{where} is missing after the run reported success")
    tiffs = [e for e in hook.ls(outputs[0]) if e.get("name", "").endswith(".tiff")]
    if len(tiffs) != recon["n_slices"]:
        raise ValueError(f"{outputs[0]} holds {len(tiffs)} TIFFs, the reconstruction wrote {recon['n_slices']}")
    ti.xcom_push(key="outputs", value=[o.to_dict() for o in outputs])
    return {"results": [str(o) for o in outputs], "n_slices": recon["n_slices"], "center": recon.get("center")}


def recon_steps(site: Site):
    """The reconstruction steps of one site in the current DAG or task group; returns (first, last)."""
    timeout = timedelta(minutes=site.task_timeout_minutes)
    planned = plan(site.name)
    first = planned
    if site.stages_raw:
        first = GlobusTransferOperator(
            task_id="stage_raw",
            source_endpoint=HOME_RAW,
            source_path=planned["scan"],
            destination_endpoint=site.raw_endpoint,
            destination_path=planned["scan"],
            recursive=False,
            skip_if_present=True,
            poll_interval=POLL_SECONDS,
        )
    reconstruct = GlobusComputeOperator(
        task_id="reconstruct",
        site=site.name,
        function_name="reconstruct",
        function_kwargs=planned["reconstruct"],
        poll_interval=POLL_SECONDS,
        task_timeout=timeout,
    )
    multiscale = GlobusComputeOperator(
        task_id="multiscale",
        site=site.name,
        function_name="multiscale",
        function_kwargs=planned["multiscale"],
        poll_interval=POLL_SECONDS,
        task_timeout=timeout,
    )
    first >> reconstruct >> multiscale
    last = [multiscale]
    if site.copies_back:
        last = [
            GlobusTransferOperator(
                task_id=f"copy_{kind}",
                source_endpoint=site.scratch_endpoint,
                source_path=planned[f"{kind}_path"],
                destination_endpoint=HOME_SCRATCH,
                destination_path=planned[f"{kind}_path"],
                recursive=True,
                poll_interval=POLL_SECONDS,
            )
            for kind in ("tiff", "zarr")
        ]
        multiscale >> last
        record = record_deletions(site.name, planned.operator.task_id)
        [planned, first, reconstruct, multiscale, *last] >> record
    published = publish_outputs(planned, reconstruct.output)
    last >> published
    derived = SciCatIngestDerivedOperator(
        task_id="scicat_derived",
        file_path=planned["scan"],
        results_folder=planned["results_folder"],
        site=site.name,
        parameters=reconstruct.output,
        preview_path=planned["preview_path"],
        skip_uncatalogued=True,
    )
    published >> derived
    return planned.operator, published


def site_doc(site: Site) -> str:
    """The doc_md of a site's reconstruction DAG."""
    steps = ["plan"]
    if site.stages_raw:
        steps.append(f"copy the scan {HOME_RAW} → {site.raw_endpoint}")
    steps += [f"reconstruct and write the Zarr at {site.name} (Globus Compute)"]
    if site.copies_back:
        steps += [f"copy `rec<ds>/` and `rec<ds>.zarr/` {site.scratch_endpoint} → {HOME_SCRATCH}", "record deletions"]
    steps.append("publish outputs")
    return DOC.format(
        name=site.name.upper(),
        description=site.description,
        engines=", ".join(ENGINES),
        steps="; ".join(steps) + ".",
        folder=site.results_folder,
        retention=site.retention_location,
    )
