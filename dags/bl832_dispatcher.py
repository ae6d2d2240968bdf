"""The one entry point a beamline calls for a new scan: new-scan first, then the reconstructions in parallel."""

from __future__ import annotations

from airflow.sdk import DAG, TaskGroup

from dags.pipelines.dag_ids import DISPATCHER_DAG_ID
from dags.pipelines.defaults import dag_defaults
from dags.pipelines.params import new_scan_params, recon_param
from dags.pipelines.steps import SETTINGS_VARIABLE, new_file_steps, plan, report, site_steps
from include.plans import NEW_FILE
from include.sites import HOME_SCRATCH, load_sites

SITES = load_sites().enabled()
PIPELINES = [NEW_FILE, *(site.name for site in SITES)]

DOC = f"""
### Dispatcher (beamline 8.3.2)
The one DAG a beamline triggers for a new scan. **Conf**: `file_path`, `is_export_controlled`,
`send_to_nersc` (as `bl832_new_file`) and optional `recon` options (as the reconstruction DAGs).

**Steps**: `plan` refuses bad conf before anything moves, reads the Airflow Variable `{SETTINGS_VARIABLE}`
(which of {", ".join(PIPELINES)} run; defaults in airflow_settings.yaml), logs why each pipeline is
skipped and follows only the chosen ones; the new-scan steps run first (task group `new_file`); then the
chosen reconstructions run in parallel (one task group per site of include/config/sites.yaml:
{", ".join(site.name for site in SITES)}), every wait deferred; each pipeline ends with `finish` (deletion
manifests, outputs); `report` fails the run if any chosen pipeline failed, naming it and its failed tasks.

**Never off-site when export-controlled**: such a scan runs only `new_file` (which keeps it at data832)
and the sites that are not off-site ({", ".join(s.name for s in SITES if not s.offsite) or "none"}). With
`send_to_nersc` off, sites that read the NERSC copy ({", ".join(s.name for s in SITES if s.needs_nersc_copy)})
are skipped. Export control is a property of the scan (docs/security.md): `true` is recorded (signed) before
anything moves and a later `false` changes nothing; every off-site step refuses a recorded scan; no SciCat
step runs for it; its on-site results are written 2770/660.

**Idempotent per scan**: the new-scan copies skip a file already at its destination (same size and mtime),
SciCat finds the dataset it made, and a reconstruction whose results are already on {HOME_SCRATCH} is skipped
(trigger its own DAG, e.g. `bl832_alcf_recon`, to reconstruct again).

**Results never overwrite each other**: each site writes `{HOME_SCRATCH}:<folder>/<site>/rec<dataset>/`
and `rec<dataset>.zarr/`.
"""

with DAG(
    dag_id=DISPATCHER_DAG_ID,
    description="New scan of 8.3.2: move, catalogue, then reconstruct at the enabled sites in parallel",
    doc_md=DOC,
    tags=["bl832", "dispatcher", "new-scan", "reconstruction"],
    params={**new_scan_params(), "recon": recon_param()},
    **dag_defaults(notify=True),
) as dag:
    planned = plan(PIPELINES, True)
    with TaskGroup(NEW_FILE):
        new_file = new_file_steps(planned)
    finishes = [new_file.finish]
    for site in SITES:
        with TaskGroup(site.name):
            finishes.append(site_steps(site, planned, after=new_file).finish)
    finishes >> report(PIPELINES)
