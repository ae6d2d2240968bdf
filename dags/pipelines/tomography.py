"""The DAGs of a tomography beamline (include/config/beamlines.yaml ``tomography``; 8.3.2): its new-scan DAG
``<prefix>_new_file``, its dispatcher ``<prefix>_dispatcher`` and one reconstruction DAG ``<prefix>_<site>_recon``
per enabled site of include/config/sites.yaml that names it. The DAG files (dags/bl832_*.py) each call one
builder here; the steps are built by dags/pipelines/steps.py, the plans by include/plans.py.
"""

from __future__ import annotations

from airflow.sdk import DAG, TaskGroup

from dags.pipelines.defaults import dag_defaults
from dags.pipelines.params import (
    ENGINES,
    file_path_param,
    force_param,
    new_scan_params,
    num_nodes_param,
    recon_param,
)
from dags.pipelines.steps import new_file_steps, plan, report, site_steps
from include.beamlines import Tomography
from include.plans import NEW_FILE
from include.sites import Site, load_sites

EXPORT_CONTROL = {
    True: "a scan recorded export-controlled is refused by `plan` (this site is off-site), and by every step",
    False: "a scan recorded export-controlled runs here (on site) with no SciCat step, its results 2770/660",
}


def new_file_doc(beamline: Tomography) -> str:
    b = beamline
    return f"""
### New scan (beamline {b.beamline})
**Conf**: `file_path` — `/global/raw/<folder>/<file>.h5` or `<folder>/<file>.h5`; `is_export_controlled`
(default false); `send_to_nersc` (default true). Unknown keys, `..`, absolute paths outside
`/global/raw/`, non-`.h5` names are refused by `plan` before anything moves.

**Steps**: {b.source_endpoint} `{b.raw_folder}/<folder>/<file>` → {b.storage_endpoint}
(`{b.raw_endpoint}:<folder>/<file>`); then, only if the scan is not export-controlled and sending is on,
→ {b.long_term_endpoint} (`{b.raw_folder}/<folder>/<file>`, the long-term copy) and SciCat ingestion
(raw dataset, datablock, thumbnail; mapping `{b.ingester}`). An export-controlled scan never leaves the
beamline: `plan` skips the off-site steps and its log says why. Export control is a property of the scan:
`is_export_controlled: true` records it (signed Variable `als_export_control/…`) before anything moves, a
later `false` changes nothing, and every off-site step refuses it (docs/security.md).

**Deletion manifests** (`finish`): {b.source_endpoint} (checked against {b.storage_endpoint}) once the storage's
copy exists; {b.storage_endpoint} (checked against {b.long_term_endpoint}) once the long-term copy exists — never
for a scan whose only copy is at the beamline.

**Idempotent**: a scan already at a destination (same size and mtime) is not copied again; SciCat finds
the dataset it made instead of creating a second.
"""


def make_new_file_dag(beamline: Tomography) -> DAG:
    """``<prefix>_new_file``: a new scan, source → storage → long-term, SciCat, deletion manifests."""
    with DAG(
        dag_id=beamline.new_file_dag_id,
        description=f"Move a new scan {beamline.source_endpoint} → {beamline.storage_endpoint} → "
        f"{beamline.long_term_endpoint} and register it in SciCat",
        doc_md=new_file_doc(beamline),
        tags=[beamline.dag_prefix, "new-scan", "globus", "scicat"],
        params=new_scan_params(),
        **dag_defaults(owner=beamline.owner),
    ) as dag:
        new_file_steps(beamline, plan([NEW_FILE], False, beamline.key))
    return dag


def dispatcher_doc(beamline: Tomography, sites: list[Site], pipelines: list[str]) -> str:
    home = beamline.scratch_endpoint
    return f"""
### Dispatcher (beamline {beamline.beamline})
The one DAG a beamline triggers for a new scan. **Conf**: `file_path`, `is_export_controlled`,
`send_to_nersc` (as `{beamline.new_file_dag_id}`), optional `recon` options (as the reconstruction DAGs) and
`num_nodes` (upstream's): each reconstruction runs across that many nodes (NERSC: one Slurm job of n nodes, one
srun task each; Globus Compute sites: n `reconstruct_slab` tasks), each a slab of the slices, put together before
the Zarr; the same TIFFs as one node.

**Steps**: `plan` refuses bad conf before anything moves, reads the Airflow Variable `{beamline.settings_variable}`
(which of {", ".join(pipelines)} run; defaults in airflow_settings.yaml), logs why each pipeline is
skipped and follows only the chosen ones (include/dispatch.py); the new-scan steps run first (task group
`new_file`); then the chosen reconstructions run in parallel (one task group per site of
include/config/sites.yaml: {", ".join(site.name for site in sites)}), every wait deferred; each pipeline ends
with `finish` (deletion manifests, outputs); `report` fails the run if any chosen pipeline failed, naming it and
its failed tasks.

**Never off-site when export-controlled**: such a scan runs only `new_file` (which keeps it at the beamline)
and the sites that are not off-site ({", ".join(s.name for s in sites if not s.offsite) or "none"}). With
`send_to_nersc` off, sites that read the NERSC copy ({", ".join(s.name for s in sites if s.needs_nersc_copy)})
are skipped. Export control is a property of the scan (docs/security.md): `true` is recorded (signed) before
anything moves and a later `false` changes nothing; every off-site step refuses a recorded scan; no SciCat
step runs for it; its on-site results are written 2770/660.

**Idempotent per scan**: the new-scan copies skip a file already at its destination (same size and mtime),
SciCat finds the dataset it made, and a reconstruction whose results are already complete on {home} is skipped
(trigger with `{{"force": true}}` to reconstruct again: the new results go to a `rerun-<run>/` folder beside the
old ones, which stay as they are).

**Results never overwrite each other**: each site writes `{home}:<folder>/<site>/rec<dataset>/`
and `rec<dataset>.zarr/`{f" (`{beamline.primary_site}`: `<folder>/rec<dataset>/`)" if beamline.primary_site else ""}.
"""


def make_dispatcher_dag(beamline: Tomography) -> DAG:
    """``<prefix>_dispatcher``: new-scan first, then the reconstructions at the beamline's enabled sites in
    parallel."""
    sites = load_sites().enabled(beamline.key)
    pipelines = [NEW_FILE, *(site.name for site in sites)]
    with DAG(
        dag_id=beamline.dispatcher_dag_id,
        description=f"New scan of {beamline.beamline}: move, catalogue, then reconstruct at the enabled sites in "
        "parallel",
        doc_md=dispatcher_doc(beamline, sites, pipelines),
        tags=[beamline.dag_prefix, "dispatcher", "new-scan", "reconstruction"],
        params={**new_scan_params(), "recon": recon_param(), "force": force_param(), "num_nodes": num_nodes_param()},
        **dag_defaults(owner=beamline.owner, notify=True),
    ) as dag:
        planned = plan(pipelines, True, beamline.key)
        with TaskGroup(NEW_FILE):
            new_file = new_file_steps(beamline, planned)
        finishes = [new_file.finish]
        for site in sites:
            with TaskGroup(site.name):
                finishes.append(site_steps(site, planned, after=new_file).finish)
        finishes >> report(pipelines)
    return dag


def site_doc(site: Site) -> str:
    """The doc_md of a site's reconstruction DAG."""
    runner, home = site.run, site.beamline.scratch_endpoint
    steps = [f"`plan` (checks the scan is at `{site.source_endpoint}`)"]
    if site.stages_raw:
        steps.append(f"copy the scan {site.source_endpoint} → {site.raw_endpoint} ({runner.stages_by})")
    steps.append(f"reconstruct and write the Zarr at {site.name} ({runner.label})")
    for destination in site.result_destinations():
        steps.append(f"copy `rec<ds>/` and `rec<ds>.zarr/` {site.scratch_endpoint} → {destination}")
    steps += [
        "check the results",
        f"SciCat derived dataset (parameters: {runner.records})",
        "`finish` (deletion manifests, outputs)",
    ]
    results = "/".join(part for part in ("<folder>", site.results_folder, "rec<dataset>") if part)
    return f"""
### Reconstruction at {site.name.upper()} (beamline {site.beamline.beamline})
{site.description}.

**Conf**: `file_path` — the scan, `/global/raw/<folder>/<file>.h5` or `<folder>/<file>.h5`;
optional `recon` — `rows` ("A:B"), `center` (columns), `ring_removal` (bool), `engine`
({", ".join(ENGINES)}), `binning` (1 to 8). Unknown keys are refused. Optional `force`: when complete results
are already at home, reconstruct into a new `rerun-<run>/` folder beside them (they stay as they are). Optional
`num_nodes` (default 1): reconstruct across that many nodes, a slab of the slices each ({site.run.label}), then
put the slabs together: the same TIFFs as one node.

**Steps**: {"; ".join(steps)}.

**Export control** (docs/security.md): {EXPORT_CONTROL[site.offsite]}.

**Results**: `{home}:{results}/` (one float32 TIFF per detector row)
and `rec<dataset>.zarr/` beside it; each site writes under its own folder, so sites never overwrite each
other. They are published as the run's outputs (XCom key `outputs`).

**Cleanup**: every copy made at the site is recorded in the deletion manifests (location
`{site.retention_location}`), also when a step fails, so nothing is orphaned. A retry re-attaches to the
remote work it started instead of starting it again (task state store).
"""


def make_recon_dag(site: Site) -> DAG:
    """The reconstruction DAG of one site."""
    home = site.beamline.scratch_endpoint
    with DAG(
        dag_id=site.dag_id,
        description=f"Reconstruct a scan at {site.name} and bring rec<ds>/ and rec<ds>.zarr/ to {home}",
        doc_md=site_doc(site),
        tags=[site.beamline.dag_prefix, "reconstruction", site.name, site.runner.replace("_", "-")],
        params={
            "file_path": file_path_param(),
            "recon": recon_param(),
            "force": force_param(),
            "num_nodes": num_nodes_param(),
        },
        **dag_defaults(owner=site.beamline.owner, max_active_runs=8),
    ) as dag:
        site_steps(site, plan([site.name], False, site.beamline.key))
    return dag


def make_recon_dags(beamline: Tomography) -> dict[str, DAG]:
    """The reconstruction DAGs of the beamline's enabled sites, by DAG id (for a DAG file's ``globals()``)."""
    return {site.dag_id: make_recon_dag(site) for site in load_sites().enabled(beamline.key)}
