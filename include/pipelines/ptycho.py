"""Ptychography steps at NERSC (beamline 7.0.1.2): one Slurm job through SFAPI on the scan's NERSC CFS copy,
then a check that the results are there (Globus). Options: include/config/beamlines.yaml, ``pipelines.ptycho``."""

from __future__ import annotations

from airflow.sdk import task

from als_provider.operators.sfapi import SFAPIJobOperator
from include.beamlines import Beamline
from include.endpoints import default_profile

#: Results go to <results_endpoint>:<folder>/<RESULTS_FOLDER>/rec<dataset>/.
RESULTS_FOLDER = "ptycho"
LOCAL = default_profile() == "local"
POLL_SECONDS = 1.0 if LOCAL else 30.0


def job_launcher(volumes: list[str]) -> list[str]:
    """The words before ``python -m ...``: the configured container with ``volumes`` also mounted (production)."""
    from include.slurm import load_nersc_config

    config = load_nersc_config()
    if config.runtime == "none":
        return []
    mounts = [f"--volume={v}:{v}" for v in dict.fromkeys([*config.volumes, *volumes])]
    return ["srun", "podman-hpc", "run", "--rm", "--gpu", *mounts, str(config.image)]


@task(multiple_outputs=True)
def plan_ptycho(beamline_key: str, params: dict | None = None) -> dict:
    """The scan at NERSC, where its results go, and the job's name and values."""
    from include.beamlines import load_beamlines
    from include.endpoints import load_endpoints
    from include.paths import parse_scan

    beamline = load_beamlines()[beamline_key]
    options = beamline.pipeline("ptycho")
    scan = parse_scan(params["file_path"])
    endpoints = load_endpoints()
    raw, results = endpoints[beamline.nersc_endpoint], endpoints[options["results_endpoint"]]
    source = raw.posix_path(str(scan.relative_path))
    if LOCAL and not source.is_file():
        raise FileNotFoundError(f"the scan is not at {beamline.nersc_endpoint}:{scan.relative_path} ({source})")
    results_path = f"{scan.folder}/{RESULTS_FOLDER}/{scan.recon_dir_name}"
    return {
        "results_path": results_path,
        "job_name": f"ptycho_{scan.folder}_{scan.dataset}",
        "values": {
            "scan": str(source),
            "out_dir": str(results.posix_path(results_path)),
            "launcher": job_launcher([str(raw.posix_root), str(results.posix_root)]),
        },
    }


@task
def check_ptycho_results(beamline_key: str, results_path: str) -> list[dict]:
    """Check through Globus that the job left a TIFF in the results folder; return the outputs."""
    from als_provider.hooks.globus_transfer import GlobusTransferHook
    from include.beamlines import load_beamlines
    from include.paths import EndpointPath

    where = EndpointPath(load_beamlines()[beamline_key].pipeline("ptycho")["results_endpoint"], results_path)
    hook = GlobusTransferHook()
    if hook.stat(where) is None:
        raise FileNotFoundError(f"{where} is missing after the job reported COMPLETED")
    tiffs = [e["name"] for e in hook.ls(where) if e.get("name", "").endswith(".tiff")]
    if not tiffs:
        raise ValueError(f"{where} holds no TIFF after the job reported COMPLETED")
    print(f"{where}: {', '.join(sorted(tiffs))}")
    return [where.to_dict()]


def ptycho_steps(beamline: Beamline):
    """The ptychography steps in the current DAG; returns (first, last); ``last`` returns the outputs."""
    options = beamline.pipeline("ptycho")
    planned = plan_ptycho(beamline.key)
    job = SFAPIJobOperator(
        task_id="ptycho_reconstruct",
        template=options["template"],
        values=planned["values"],
        job_name=planned["job_name"],
        directives=options["directives"] or None,
        poll_interval=POLL_SECONDS,
    )
    checked = check_ptycho_results(beamline.key, planned["results_path"])
    job >> checked
    return planned.operator, checked


def ptycho_doc(beamline: Beamline) -> str:
    options = beamline.pipeline("ptycho")
    return (
        f"**ptycho**: Slurm job `ptycho_<folder>_<dataset>` at NERSC (SFAPI; `{options['template']}`) reads "
        f"`{beamline.nersc_endpoint}:<folder>/<file>` and writes `{options['results_endpoint']}:<folder>/"
        f"{RESULTS_FOLDER}/rec<dataset>/` (checked through Globus). The job's step is a placeholder "
        "(compute_functions.ptycho, a STXM map) for the real ptychography code."
    )
