"""Reconstruction steps at NERSC (Perlmutter) through SFAPI, for ``bl832_nersc_recon`` and the dispatcher.

Two Slurm jobs (include/jobs/tomo_recon.sh.j2, tomo_multiscale.sh.j2; defaults in include/config/nersc.yaml),
then Globus copies of the results home and to NERSC CFS, deletion-manifest entries, and the outputs.
"""

from __future__ import annotations

from airflow.sdk import task

from als_provider.operators.globus_transfer import GlobusTransferOperator
from als_provider.operators.scicat import SciCatIngestDerivedOperator
from als_provider.operators.sfapi import SFAPIJobOperator
from include.dag_params import ENGINES, recon_options
from include.endpoints import default_profile

DAG_ID = "bl832_nersc_recon"
#: Where the scan is at NERSC (copied there by the new-scan flow), where jobs work, where results go.
CFS_RAW = "nersc832_alsdev_raw"
PSCRATCH_RAW = "nersc832_alsdev_pscratch_raw"
PSCRATCH_SCRATCH = "nersc832_alsdev_pscratch_scratch"
CFS_SCRATCH = "nersc832_alsdev_scratch"
HOME_SCRATCH = "data832_scratch"
#: Results go under <folder>/<RESULTS_FOLDER>/ everywhere, so sites never overwrite each other.
RESULTS_FOLDER = "nersc"
PSCRATCH_LOCATION = "nersc_pscratch"
HOME_LOCATION = "data832"
LOCAL = default_profile() == "local"
POLL_SECONDS = 1.0 if LOCAL else 30.0
TRANSFER_POLL_SECONDS = 1.0 if LOCAL else 15.0

DOC = f"""
### Reconstruction at NERSC (beamline 8.3.2)
Runs the reconstruction of one scan as Slurm jobs on Perlmutter, submitted through the Superfacility API
(connection `sfapi_default`).

**Conf**: `file_path` — the scan, `/global/raw/<folder>/<file>.h5` or `<folder>/<file>.h5`, already on
NERSC CFS (`{CFS_RAW}`; the new-scan flow copies it there); optional `recon` — `rows` ("A:B"), `center`
(columns), `ring_removal` (bool), `engine` ({", ".join(ENGINES)}), `binning` (1 to 8). Unknown keys are refused.

**Steps**: plan → job `tomo_recon_<folder>_<scan>` (copies the scan CFS → pscratch, reconstructs into
`{PSCRATCH_SCRATCH}:<folder>/{RESULTS_FOLDER}/rec<ds>/`) → job `tomo_multiscale_<folder>_<scan>` (only if the
first COMPLETED; writes `rec<ds>.zarr/` beside) → Globus copies of both to `{HOME_SCRATCH}` and to NERSC
CFS scratch (`{CFS_SCRATCH}`), same relative paths → deletion-manifest entries → outputs.

**Jobs**: `#SBATCH` defaults of SPEC §3 in include/config/nersc.yaml (realtime, als, 1 exclusive CPU node,
64 cpus, 15 min), logs `tomo_recon_logs/%x_%j.{{out,err}}` on pscratch; image pinned by digest. A job
that ends FAILED, TIMEOUT, OUT_OF_MEMORY, CANCELLED, PREEMPTED or NODE_FAIL fails its task with the state
and the tail of its error log. A retry re-attaches to the job it already submitted; marking the task
failed cancels the job.

**Results**: `{HOME_SCRATCH}:<folder>/{RESULTS_FOLDER}/rec<ds>/` and `rec<ds>.zarr/`, published as the
run's outputs (XCom key `outputs`).

**Cleanup** (recorded even when a step fails): pscratch raw (check `{CFS_RAW}`) and pscratch results
(check `{HOME_SCRATCH}`), location `{PSCRATCH_LOCATION}`; data832 results (check `{CFS_SCRATCH}`),
location `{HOME_LOCATION}`.
"""


@task(multiple_outputs=True)
def plan(params: dict | None = None) -> dict:
    """Parse the conf once: the scan, its paths, each job's name and script values (one XCom each)."""
    from include.endpoints import load_endpoints
    from include.paths import parse_scan

    scan = parse_scan(params["file_path"])
    recon = recon_options(params.get("recon"))
    args: list[str] = []
    if "rows" in recon:
        args += ["--rows", recon["rows"]]
    if "center" in recon:
        args += ["--center", repr(float(recon["center"]))]
    if "engine" in recon:
        args += ["--engine", recon["engine"]]
    if "binning" in recon:
        args += ["--binning", str(int(recon["binning"]))]
    if recon.get("ring_removal") is False:
        args.append("--no-ring-removal")

    endpoints = load_endpoints()
    source = endpoints[CFS_RAW].posix_path(str(scan.relative_path))
    staged = endpoints[PSCRATCH_RAW].posix_path(str(scan.relative_path))
    results = f"{scan.folder}/{RESULTS_FOLDER}"
    tiff_path, zarr_path = f"{results}/{scan.recon_dir_name}", f"{results}/{scan.zarr_dir_name}"
    scratch = endpoints[PSCRATCH_SCRATCH]
    if LOCAL and not source.is_file():
        raise FileNotFoundError(f"the scan is not at {CFS_RAW}:{scan.relative_path} ({source})")
    return {
        "scan": str(scan.relative_path),
        "results_folder": results,
        "recon": recon,
        "tiff_path": tiff_path,
        "zarr_path": zarr_path,
        "preview_path": f"{zarr_path}/preview.png",
        "recon_job_name": f"tomo_recon_{scan.folder}_{scan.dataset}",
        "multiscale_job_name": f"tomo_multiscale_{scan.folder}_{scan.dataset}",
        "recon_values": {
            "scan_source": str(source),
            "scan": str(staged),
            "out_dir": str(scratch.posix_path(results)),
            "recon_args": args,
        },
        "multiscale_values": {
            "tiff_dir": str(scratch.posix_path(tiff_path)),
            "zarr": str(scratch.posix_path(zarr_path)),
            "scan": str(staged),
        },
    }


@task(trigger_rule="all_done")
def record_deletions(plan_task_id: str, ti=None, dag_run=None) -> list[dict]:
    """Record every copy this run may have made, in the deletion manifests, whatever the other steps did."""
    from include.manifests import schedule_deletions

    planned = ti.xcom_pull(task_ids=plan_task_id)
    if not planned:
        print("The run stopped before planning: it made no copies.")
        return []
    copies = [
        {"endpoint": PSCRATCH_RAW, "path": planned["scan"], "check_endpoint": CFS_RAW, "location": PSCRATCH_LOCATION}
    ]
    for key in ("tiff_path", "zarr_path"):
        copies.append(
            {
                "endpoint": PSCRATCH_SCRATCH,
                "path": planned[key],
                "check_endpoint": HOME_SCRATCH,
                "location": PSCRATCH_LOCATION,
            }
        )
        copies.append(
            {"endpoint": HOME_SCRATCH, "path": planned[key], "check_endpoint": CFS_SCRATCH, "location": HOME_LOCATION}
        )
    return schedule_deletions(copies, dag_id=dag_run.dag_id, run_id=dag_run.run_id)


@task
def publish_outputs(planned: dict, ti=None) -> list[dict]:
    """Check the results are on data832_scratch and publish them (XCom key ``outputs``)."""
    from als_provider.hooks.globus_transfer import GlobusTransferHook
    from include.paths import EndpointPath

    hook = GlobusTransferHook()
    outputs = [EndpointPath(HOME_SCRATCH, planned[key]) for key in ("tiff_path", "zarr_path")]
    for where in outputs:
        if hook.stat(where) is None:
            raise FileNotFoundError(f"{where} is missing after the run reported success")
    if not any(e.get("name", "").endswith(".tiff") for e in hook.ls(outputs[0])):
        raise ValueError(f"{outputs[0]} holds no TIFF")
    published = [o.to_dict() for o in outputs]
    ti.xcom_push(key="outputs", value=published)
    return published


def nersc_recon_steps():
    """The NERSC reconstruction steps in the current DAG or task group; returns (first, last)."""
    planned = plan()
    reconstruct = SFAPIJobOperator(
        task_id="reconstruct",
        template="tomo_recon.sh.j2",
        values=planned["recon_values"],
        job_name=planned["recon_job_name"],
        poll_interval=POLL_SECONDS,
    )
    multiscale = SFAPIJobOperator(
        task_id="multiscale",
        template="tomo_multiscale.sh.j2",
        values=planned["multiscale_values"],
        job_name=planned["multiscale_job_name"],
        poll_interval=POLL_SECONDS,
    )
    copies = [
        GlobusTransferOperator(
            task_id=f"copy_{kind}_{where}",
            source_endpoint=PSCRATCH_SCRATCH,
            source_path=planned[f"{kind}_path"],
            destination_endpoint=destination,
            destination_path=planned[f"{kind}_path"],
            recursive=True,
            poll_interval=TRANSFER_POLL_SECONDS,
        )
        for kind in ("tiff", "zarr")
        for where, destination in (("home", HOME_SCRATCH), ("cfs", CFS_SCRATCH))
    ]
    reconstruct >> multiscale >> copies
    [planned, reconstruct, multiscale, *copies] >> record_deletions(planned.operator.task_id)
    published = publish_outputs(planned)
    copies >> published
    derived = SciCatIngestDerivedOperator(
        task_id="scicat_derived",
        file_path=planned["scan"],
        results_folder=planned["results_folder"],
        site=RESULTS_FOLDER,
        parameters=planned["recon"],
        preview_path=planned["preview_path"],
        skip_uncatalogued=True,
    )
    published >> derived
    return planned.operator, published
