"""Tomography reconstruction at a site: one DAG ``bl832_<site>_recon`` per enabled site of
include/config/sites.yaml (ALCF and OLCF through Globus Compute, NERSC through SFAPI, the Airflow worker
host ``local``); a new site is configuration. Built by dags/pipelines/steps.py (``site_steps``)."""

from __future__ import annotations

from airflow.sdk import DAG

from dags.pipelines.defaults import dag_defaults
from dags.pipelines.params import ENGINES, file_path_param, recon_param
from dags.pipelines.steps import plan, site_steps
from include.sites import HOME_SCRATCH, Site, load_sites

RUNNERS = {"globus_compute": "Globus Compute", "sfapi": "Slurm jobs on Perlmutter through SFAPI"}
EXPORT_CONTROL = {
    True: "a scan recorded export-controlled is refused by `plan` (this site is off-site), and by every step",
    False: "a scan recorded export-controlled runs here (on site) with no SciCat step, its results 2770/660",
}


def site_doc(site: Site) -> str:
    """The doc_md of a site's reconstruction DAG."""
    steps = [f"`plan` (checks the scan is at `{site.source_endpoint}`)"]
    if site.stages_raw:
        by = "the first job" if site.runner == "sfapi" else "Globus"
        steps.append(f"copy the scan {site.source_endpoint} → {site.raw_endpoint} ({by})")
    steps.append(f"reconstruct and write the Zarr at {site.name} ({RUNNERS[site.runner]})")
    for destination in site.result_destinations():
        steps.append(f"copy `rec<ds>/` and `rec<ds>.zarr/` {site.scratch_endpoint} → {destination}")
    steps += ["check the results", "SciCat derived dataset", "`finish` (deletion manifests, outputs)"]
    return f"""
### Reconstruction at {site.name.upper()} (beamline 8.3.2)
{site.description}.

**Conf**: `file_path` — the scan, `/global/raw/<folder>/<file>.h5` or `<folder>/<file>.h5`;
optional `recon` — `rows` ("A:B"), `center` (columns), `ring_removal` (bool), `engine`
({", ".join(ENGINES)}), `binning` (1 to 8). Unknown keys are refused.

**Steps**: {"; ".join(steps)}.

**Export control** (docs/security.md): {EXPORT_CONTROL[site.offsite]}.

**Results**: `{HOME_SCRATCH}:<folder>/{site.results_folder}/rec<dataset>/` (one float32 TIFF per detector row)
and `rec<dataset>.zarr/` beside it; each site writes under its own folder, so sites never overwrite each
other. They are published as the run's outputs (XCom key `outputs`).

**Cleanup**: every copy made at the site is recorded in the deletion manifests (location
`{site.retention_location}`), also when a step fails, so nothing is orphaned. A retry re-attaches to the
remote work it started instead of starting it again (task state store).
"""


def make_recon_dag(site: Site) -> DAG:
    """The reconstruction DAG of one site."""
    with DAG(
        dag_id=site.dag_id,
        description=f"Reconstruct a scan at {site.name} and bring rec<ds>/ and rec<ds>.zarr/ to {HOME_SCRATCH}",
        doc_md=site_doc(site),
        tags=["bl832", "reconstruction", site.name, site.runner.replace("_", "-")],
        params={"file_path": file_path_param(), "recon": recon_param()},
        **dag_defaults(max_active_runs=8),
    ) as dag:
        site_steps(site, plan([site.name], False))
    return dag


for _site in load_sites().enabled():
    globals()[_site.dag_id] = make_recon_dag(_site)
