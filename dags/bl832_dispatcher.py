"""The one entry point a beamline calls for a new scan: new-scan first, then the reconstructions in parallel."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import DAG, TaskGroup, task

from include.dag_params import new_scan_params, recon_param, validate_conf
from include.pipelines.compute_site import recon_steps
from include.pipelines.nersc import RESULTS_FOLDER as NERSC_RESULTS_FOLDER
from include.pipelines.nersc import nersc_recon_steps
from include.pipelines.new_file import new_file_steps
from include.sites import load_sites

DAG_ID = "bl832_dispatcher"
SETTINGS_VARIABLE = "bl832_dispatcher_settings"
SITES = {site.name: site for site in load_sites().enabled()}
#: Pipeline → where its results go under <folder>/ on data832_scratch (None: new-scan, no results).
PIPELINES: dict[str, str | None] = {
    "new_file": None,
    **{name: site.results_folder for name, site in SITES.items()},
    "nersc": NERSC_RESULTS_FOLDER,
}
#: Pipelines that send the scan off-site: never for an export-controlled scan.
OFFSITE = frozenset(name for name in PIPELINES if name not in ("new_file", "local"))

DOC = f"""
### Dispatcher (beamline 8.3.2)
The one DAG a beamline triggers for a new scan. **Conf**: `file_path`, `is_export_controlled`,
`send_to_nersc` (as `bl832_new_file`) and optional `recon` options (as the reconstruction DAGs).

**Steps**: `validate_conf` refuses bad conf before anything moves; `choose` reads the Airflow Variable
`{SETTINGS_VARIABLE}` (which of {", ".join(PIPELINES)} run; defaults in airflow_settings.yaml) and logs why
each pipeline is skipped; the new-scan steps run first (task group `new_file`); then the enabled
reconstructions run in parallel (task groups {", ".join(n for n in PIPELINES if n != "new_file")}), every
wait deferred; `report` fails the run if any chosen pipeline failed, naming it.

**Never off-site when export-controlled**: such a scan runs only `new_file` (which keeps it at data832)
and `local`. With `send_to_nersc` off, the NERSC reconstruction (which reads the NERSC copy) is skipped.

**Idempotent per scan**: the new-scan copies skip a file already at its destination (same size and mtime),
SciCat finds the dataset it made, and a reconstruction whose results are already on data832 is skipped
(trigger its own DAG, e.g. `bl832_alcf_recon`, to reconstruct again).

**Results never overwrite each other**: each site writes `data832_scratch:<folder>/<site>/rec<dataset>/`
and `rec<dataset>.zarr/` (`<site>` = {", ".join(f"`{v}`" for v in PIPELINES.values() if v)}).
"""


@task(multiple_outputs=False)
def choose(params: dict | None = None, ti=None) -> list[str]:
    """Pick the pipelines to run from the settings Variable, the scan's export control and existing results."""
    from airflow.sdk import Variable

    from als_provider.hooks.globus_transfer import GlobusTransferHook
    from include.paths import EndpointPath, parse_scan

    settings = Variable.get(SETTINGS_VARIABLE, default=None, deserialize_json=True)
    if not isinstance(settings, dict):
        raise ValueError(f"Variable {SETTINGS_VARIABLE} must be a JSON object like {{'new_file': true, ...}}")
    unknown = set(settings) - set(PIPELINES)
    if unknown or not all(isinstance(v, bool) for v in settings.values()):
        raise ValueError(
            f"Variable {SETTINGS_VARIABLE}: keys must be among {', '.join(PIPELINES)} with true/false values; "
            f"got {settings}"
        )
    scan = parse_scan(params["file_path"])
    hook = GlobusTransferHook()
    chosen, skipped = [], {}
    for name, results_folder in PIPELINES.items():
        if not settings.get(name, False):
            skipped[name] = f"off in {SETTINGS_VARIABLE}"
        elif params["is_export_controlled"] and name in OFFSITE:
            skipped[name] = "export-controlled: the scan never leaves the beamline"
        elif name == "nersc" and not params["send_to_nersc"]:
            skipped[name] = "send_to_nersc is off: there is no NERSC copy to reconstruct"
        elif results_folder and hook.stat(
            EndpointPath("data832_scratch", f"{scan.folder}/{results_folder}/{scan.zarr_dir_name}")
        ):
            skipped[name] = f"results already on data832_scratch:{scan.folder}/{results_folder}/"
        else:
            chosen.append(name)
    for name, reason in skipped.items():
        print(f"skipping {name}: {reason}")
    ti.xcom_push(key="skipped", value=skipped)
    print(f"running: {', '.join(chosen) or 'nothing'}")
    return chosen


@task.short_circuit(ignore_downstream_trigger_rules=False, trigger_rule="none_failed_min_one_success")
def run_pipeline(chosen: list[str], name: str) -> bool:
    """Gate of one pipeline's task group: open if ``choose`` chose it (new-scan, if it runs, finished first)."""
    return name in chosen


@task(trigger_rule="all_done", retries=0, multiple_outputs=False)
def report(finals: dict[str, str], ti=None, dag_run=None) -> dict:
    """Fail the run if any chosen pipeline failed, naming it and its failed tasks; else summarise the outputs."""
    chosen = ti.xcom_pull(task_ids="choose")
    if chosen is None:
        raise RuntimeError("the conf or the settings were refused (validate_conf / choose): nothing was dispatched")
    failed = {}
    for name in chosen:
        states = ti.get_task_states(dag_id=dag_run.dag_id, task_group_id=name, run_ids=[dag_run.run_id])
        bad = sorted(t for t, state in states.get(dag_run.run_id, {}).items() if state in ("failed", "upstream_failed"))
        if bad:
            failed[name] = bad
    if failed:
        detail = "; ".join(f"{name} ({', '.join(tasks)})" for name, tasks in failed.items())
        raise RuntimeError(f"pipeline(s) failed: {detail}")
    outputs = [o for name in chosen for o in ti.xcom_pull(task_ids=finals[name], key="outputs") or []]
    print(f"all chosen pipelines succeeded: {', '.join(chosen) or 'none'}")
    return {"pipelines": chosen, "outputs": outputs}


with DAG(
    dag_id=DAG_ID,
    description="New scan of 8.3.2: move, catalogue, then reconstruct at the enabled sites in parallel",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=16,
    doc_md=DOC,
    tags=["bl832", "dispatcher", "new-scan", "reconstruction"],
    default_args={"owner": "bl832-computing", "retries": 2, "retry_delay": timedelta(seconds=30)},
    params={**new_scan_params(), "recon": recon_param()},
) as dag:
    chosen = choose()
    validate_conf() >> chosen
    finals = {}
    gates = {}
    for name in PIPELINES:
        gates[name] = run_pipeline.override(task_id=f"run_{name}")(chosen, name)
        with TaskGroup(name):
            if name == "new_file":
                first, last = new_file_steps()
            elif name == "nersc":
                first, last = nersc_recon_steps()
            else:
                first, last = recon_steps(SITES[name])
        gates[name] >> first
        finals[name] = last.operator.task_id if hasattr(last, "operator") else last.task_id
        if name != "new_file":
            new_file_last = finals["new_file"]
            dag.get_task(new_file_last) >> gates[name]
    # every pipeline task feeds report, except short-circuit gates inside groups: they skip their direct
    # downstream tasks, and a skipped report would let a failed pipeline pass as success
    report(finals) << [
        task
        for task in dag.tasks
        if task.task_group and task.task_group.group_id in PIPELINES and not isinstance(task, ShortCircuitOperator)
    ]
