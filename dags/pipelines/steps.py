"""The pipelines as task builders: one ``plan`` task, each pipeline's steps, one ``finish`` per pipeline.

Every scan DAG has the same shape:

- ``plan`` (a branch) refuses bad conf before anything moves, decides which pipelines run (the dispatcher's
  settings Variable, export control, existing results) and pushes each pipeline's plan
  (include/plans.py) as XComs ``<pipeline>.<field>``; it follows only the chosen pipelines' first steps,
  so the others are skipped without a task of their own;
- each pipeline's steps are the provider's operators, reading their arguments from the plan;
- ``finish`` records the copies the pipeline made in the deletion manifests (whatever the steps did), then
  fails if a step failed, else publishes the outputs (XCom key ``outputs``).

A pipeline is new-scan (``new_file``), a reconstruction at a site of include/config/sites.yaml (by its
runner, never by its name), or a configured beamline (include/config/beamlines.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, DownstreamTasksSkipped

from als_provider.operators.globus_transfer import GlobusTransferOperator
from als_provider.operators.scicat import SciCatIngestDerivedOperator, SciCatIngestRawOperator
from als_provider.operators.sfapi import SFAPIJobOperator
from dags.pipelines.dag_ids import SCICAT_CATCHUP_DAG_ID
from dags.pipelines.plan_args import PLAN_TASK, copy_scan, from_plan, plan_text
from dags.pipelines.runners import run_steps
from include.beamlines import Beamline, Tomography
from include.plans import (
    ARCHIVE_CHECK,
    MOVE_TO_NERSC,
    NEW_FILE,
    PTYCHO_CHECK,
    RESULTS_CHECK,
    SCICAT_INGEST,
    TO_DATA832,
    TO_NERSC,
)
from include.runtime import load_runtime
from include.sites import Site

FINISH_TASK = "finish"


@dataclass
class Pipeline:
    """A pipeline's tasks in a DAG: its ``steps``, the copies later pipelines wait for (``inputs``, the
    new-scan copies in the dispatcher), the raw SciCat ingest derived datasets wait for (``catalogue``) and
    its ``finish``. Its first steps and its finish follow ``plan`` directly, so ``plan`` skips a pipeline it
    does not choose, or a step its plan lists in ``skip_steps``."""

    name: str
    inputs: list[Any] = field(default_factory=list)
    catalogue: Any = None
    steps: list[Any] = field(default_factory=list)
    finish: Any = None


# -- plan ---------------------------------------------------------------------------------------------
#: XCom key of plan's refusal (its one line), which finish and report repeat as their own last line.
REFUSAL_KEY = "refusal"


@task(task_id=PLAN_TASK, retries=0)
def plan(
    pipelines: list[str], dispatch: bool, beamline: str | None = None, params=None, dag_run=None, dag=None, ti=None
) -> list[str]:
    """:func:`_plan`; a refusal's one line is also pushed (XCom ``refusal``) for the tasks that end the run."""
    try:
        return _plan(pipelines, dispatch, beamline, params=params, dag_run=dag_run, dag=dag, ti=ti)
    except (DownstreamTasksSkipped, AirflowSkipException):
        raise
    except Exception as exc:
        from als_provider.operators.base import failure_line

        ti.xcom_push(key=REFUSAL_KEY, value=failure_line(exc))
        raise


def _refused(ti, name: str) -> str:
    """The line finish/report fail with when plan failed: plan's own refusal, and that ``name`` started nothing."""
    refusal = ti.xcom_pull(task_ids=PLAN_TASK, key=REFUSAL_KEY)
    return (
        f"{PLAN_TASK} refused: {refusal}; {name} started nothing"
        if refusal
        else (f"{PLAN_TASK} refused the conf or the settings: {name} started nothing")
    )


def _plan(
    pipelines: list[str], dispatch: bool, beamline: str | None = None, params=None, dag_run=None, dag=None, ti=None
) -> list[str]:
    """Refuse bad conf, choose the pipelines, push their plans; skip what does not run. ``beamline``: the
    tomography beamline of the DAG (include/config/beamlines.yaml ``tomography``), if any.

    A task directly after ``plan`` belongs to the pipeline of its task group (or, in a DAG of one
    pipeline, to that one); ``plan`` skips it unless its pipeline is chosen and its plan does not list
    the step in ``skip_steps``. (Not a branch operator: a branch also follows every task below a
    followed one, and every reconstruction waits for the new-scan copies.)"""
    from dags.pipelines.params import effective_params, export_control, keep_on_site, num_nodes, recon_options
    from include.plans import rerun_folder

    # the DAG's declared params; the run's also hold unknown keys
    params, notes = effective_params(dag_run.conf, params, set(dag.params))
    for note in notes:
        print(note)
    scans = _scans(params["file_path"], pipelines)  # a beamline takes a list
    scan = scans[0]
    recon = recon_options(params.get("recon")) if "recon" in params else {}
    nodes = num_nodes(params)  # upstream's num_nodes: each reconstruction runs across that many nodes
    controlled = export_control(params, scans, pipelines, source=f"{dag.dag_id} run {dag_run.run_id}")  # issue 26
    offsite = not controlled and params.get("send_to_nersc", True)
    rerun = rerun_folder(dag_run.run_id) if params.get("force") else None  # the same for every try and Clear
    if dispatch:
        chosen, skipped, reruns = _choose(pipelines, scan, params, beamline, rerun)
    else:
        chosen, skipped, reruns = _forced_alone(pipelines, scan, rerun)
    for name, reason in skipped.items():
        print(f"skipping {name}: {reason}")
    print(f"running: {', '.join(chosen) or 'nothing'}")
    skip_steps = {}
    for name in chosen:
        planned = _plan_of(
            name,
            scans,
            recon,
            beamline,
            offsite=offsite,
            check_input=not dispatch,
            rerun=reruns.get(name),
            nodes=nodes,
        )
        planned = keep_on_site(planned) if controlled else planned
        skip_steps[name] = set(planned.skip_steps)
        for reason in planned.notes:
            print(f"{name}: {reason}")
        for key, value in planned.to_dict().items():  # the plan's one serialised form, a field per XCom
            ti.xcom_push(key=f"{name}.{key}", value=value)
    ti.xcom_push(key="chosen", value=chosen)
    ti.xcom_push(key="skipped", value=skipped)
    skip = []
    for task_id in sorted(ti.task.downstream_task_ids):
        group, _, step = task_id.rpartition(".")
        name = group or pipelines[0]
        if name not in skip_steps or step in skip_steps[name]:
            skip.append(task_id)
    if skip:
        raise DownstreamTasksSkipped(tasks=skip)
    return chosen


def _scans(file_path: object, pipelines: list[str]) -> list:
    """The run's scans: a configured beamline's files (nested folders, absolute paths on its source endpoint:
    include.paths.parse_files), else the tomography beamline's scan paths (include.paths.parse_scans)."""
    from include.beamlines import load_beamlines
    from include.endpoints import load_endpoints
    from include.paths import parse_files, parse_scans

    beamlines = load_beamlines().beamlines
    if pipelines and pipelines[0] in beamlines:
        beamline = beamlines[pipelines[0]]
        root = load_endpoints()[beamline.source_endpoint].root
        return parse_files(file_path, suffixes=beamline.file_suffixes, root=root)
    return parse_scans(file_path)


def _plan_of(
    name: str,
    scans: list,
    recon: dict,
    beamline: str | None,
    *,
    offsite: bool,
    check_input: bool,
    rerun=None,
    nodes: int = 1,
):
    from dags.pipelines.scan_check import check_new_scan
    from include.beamlines import load_beamlines
    from include.plans import beamline_plan, new_file_plan, site_plan
    from include.sites import load_sites

    sites, beamlines = load_sites(), load_beamlines()
    if name not in beamlines.beamlines and len(scans) != 1:
        raise ValueError(f"{name} takes one scan per run; file_path lists {len(scans)}")
    scan = scans[0]
    if name == NEW_FILE:
        tomography = beamlines.tomography_beamline(beamline)
        check_new_scan(tomography, scan)  # missing, not complete HDF5 or growing: one line before anything moves
        return new_file_plan(scan, offsite=offsite, beamline=tomography)
    if name in sites.sites:
        site = sites[name]
        if check_input:  # alone, the reconstruction reads a copy an earlier run made: say so before anything
            _require(site.source_endpoint, str(scan.relative_path))
        return site_plan(site, scan, recon, rerun=rerun, nodes=nodes)
    return beamline_plan(beamlines[name], scans, hpss_mode=load_runtime().hpss_mode)


def _require(endpoint: str, path: str) -> None:
    from als_provider.hooks.globus_transfer import GlobusTransferHook
    from include.paths import EndpointPath

    where = EndpointPath(endpoint, path)
    if GlobusTransferHook().stat(where) is None:
        raise FileNotFoundError(f"the scan is not at {where}; nothing was started")


def _choose(names: list[str], scan, params: dict, beamline: str, rerun: str | None):
    """The dispatcher's choice (include/dispatch.py) from its settings Variable and the results at home: the
    chosen, the skipped (why) and the forced re-runs (``rerun``: the run's re-run folder when forced)."""
    from airflow.sdk import Variable

    from include.beamlines import load_beamlines
    from include.dispatch import choose
    from include.sites import load_sites

    variable = load_beamlines().tomography_beamline(beamline).settings_variable
    choice = choose(
        names,
        load_sites().sites,
        scan,
        params,
        Variable.get(variable, default=None, deserialize_json=True),
        _results_lookup(),
        variable=variable,
        rerun=rerun,
    )
    for note in choice.notes:
        print(note)
    return choice.chosen, choice.skipped, choice.reruns


def _results_lookup():
    """How plan looks at results (include.dispatch ``ResultsLookup``): their completeness, through Globus."""
    from als_provider.hooks.globus_transfer import GlobusTransferHook
    from include.results import completeness

    hook = GlobusTransferHook()
    return lambda where: completeness(hook, where)


def _forced_alone(names: list[str], scan, rerun: str | None):
    """A site's own DAG: always runs, in place (a copy that differs is replaced whole, by the copies' swap), unless
    forced over complete results at home: then into the run's re-run folder (include/dispatch.py ``forced``)."""
    from include.dispatch import complete_at_home
    from include.sites import load_sites

    sites = load_sites().sites
    [name] = names
    if not rerun or name not in sites:
        return list(names), {}, {}
    notes: list[str] = []
    why, folder = complete_at_home(sites[name], scan, _results_lookup(), rerun, notes)
    for note in notes:
        print(note)
    if why is not None:
        return [], {name: why}, {}
    return list(names), {}, ({name: folder} if folder else {})


# -- finish and checks --------------------------------------------------------------------------------
@task(task_id=FINISH_TASK, trigger_rule="all_done", multiple_outputs=False)
def finish(name: str, steps: list[str], ti=None, dag_run=None) -> dict:
    """Record the copies that exist in the deletion manifests, each with what it holds (a listing right after
    the copies: every file's size and time); fail if a step failed; else publish outputs."""

    from als_provider.hooks.globus_transfer import GlobusTransferHook
    from include.errors import ConfigError, InvalidPathError
    from include.manifests import ManifestError, schedule_deletions
    from include.plans import Plan, due_outputs, due_requests, job_log_requests
    from include.pruning import record_copies
    from include.records import TreeTooLarge

    # Deterministic failures raise AirflowFailException (a retry would fail the same way); a service's error
    # (Globus listing, the Variables' database) propagates and is retried.
    keys = ("pipeline", "scan", "deletions", "outputs", "job_logs")
    pulled = {key: ti.xcom_pull(task_ids=PLAN_TASK, key=f"{name}.{key}") for key in keys}
    if pulled["deletions"] is None:  # a chosen pipeline always has a plan: plan itself failed
        raise AirflowFailException(_refused(ti, name))
    planned = Plan.from_dict(pulled)
    states = ti.get_task_states(dag_id=dag_run.dag_id, task_ids=steps, run_ids=[dag_run.run_id])
    states = states.get(dag_run.run_id, {})
    succeeded = {task_id.rpartition(".")[2] for task_id, state in states.items() if state == "success"}
    try:
        hook = GlobusTransferHook()  # the copies, and the Slurm logs of the jobs (issue 21 finding 12)
        copies = record_copies(hook, due_requests(planned, succeeded) + job_log_requests(hook, planned))
        recorded = schedule_deletions(copies, dag_id=dag_run.dag_id, run_id=dag_run.run_id, since=dag_run.run_after)
    except (ConfigError, InvalidPathError, ManifestError, TreeTooLarge) as exc:
        raise AirflowFailException(f"{name}: its copies could not be recorded for pruning: {exc}") from exc
    failed = sorted(t for t, state in states.items() if state in ("failed", "upstream_failed"))
    dag = ti.task.dag
    unregistered, others = split_catalogue(dag, failed, ti)
    if others:
        errors = {**failures(ti, others), **input_errors(dag, ti, others)}
        why = "".join(f"; {task_id}: {errors[task_id]}" for task_id in others if task_id in errors)
        raise AirflowFailException(
            f"{name} failed: {', '.join(failed)}{why} (copies made so far are recorded for pruning)"
        )
    outputs = publish_outputs(ti, [o.to_dict() for o in due_outputs(planned, succeeded)])
    if unregistered:  # the data and the reconstruction are done; only the catalogue is owed
        owed = _owe_registrations(dag, unregistered, dag_run)
        raise AirflowFailException(  # no retry: what is owed is recorded
            f"{name}: SciCat could not register {'; '.join(o.describe() for o in owed)}. Everything else "
            f"finished (outputs published); the {SCICAT_CATCHUP_DAG_ID} DAG registers them once SciCat answers "
            "(daily, or trigger it)"
        )
    return {"outputs": outputs, "recorded": recorded}


def publish_outputs(ti, outputs: list[dict]) -> list[dict]:
    """Push ``outputs`` (``{"endpoint", "path"}`` each) as XCom ``outputs`` and list them in the task's log, the
    log the UI opens on a task, one ``output: <endpoint>:<path>`` line each (as ``make dags-test`` prints)."""
    ti.xcom_push(key="outputs", value=outputs)
    print("\n".join([f"outputs: {len(outputs)}", *output_lines(outputs)]))
    return outputs


def output_lines(outputs: list[dict]) -> list[str]:
    return [f"output: {output['endpoint']}:{output['path']}" for output in outputs]


def split_catalogue(dag, task_ids: list[str], ti) -> tuple[list[str], list[str]]:
    """``task_ids`` split into the SciCat steps owed to the catch-up (a run never waits for SciCat) and the others,
    in order. A SciCat step that failed on its own input (:func:`input_errors`) is among the others: a data
    error is never blamed on SciCat."""
    errors = input_errors(dag, ti, task_ids)
    catalogue = [t for t in task_ids if catalogue_kind(dag.get_task(t)) is not None and t not in errors]
    return catalogue, [t for t in task_ids if t not in catalogue]


def _lines(ti, task_ids: list[str], key: str) -> dict[str, str]:
    """The non-empty XCom ``key`` of each of ``task_ids``, by task id."""
    errors = {t: ti.xcom_pull(task_ids=t, key=key) for t in task_ids}
    return {t: error for t, error in errors.items() if error}


def failures(ti, task_ids: list[str]) -> dict[str, str]:
    """The one-line errors remote-work steps of ``task_ids`` failed with for good (XCom ``failure``)."""
    from als_provider.operators.base import FAILURE_KEY

    return _lines(ti, task_ids, FAILURE_KEY)


def input_errors(dag, ti, task_ids: list[str]) -> dict[str, str]:
    """The SciCat steps of ``task_ids`` that failed on their input, with their errors (XCom ``input_error``)."""
    from als_provider.operators.scicat import INPUT_ERROR_KEY

    return _lines(ti, [t for t in task_ids if catalogue_kind(dag.get_task(t)) is not None], INPUT_ERROR_KEY)


def catalogue_kind(task) -> str | None:
    """``raw``/``derived`` for a SciCat step, else None: the steps a run never waits for (SciCat may be down)."""
    if isinstance(task, SciCatIngestRawOperator):
        return "raw"
    if isinstance(task, SciCatIngestDerivedOperator):
        return "derived"
    return None


def _owe_registrations(dag, task_ids: list[str], dag_run) -> list:
    """Record each failed SciCat step, with its arguments rendered as in this run, for the catch-up."""
    from airflow.sdk import get_current_context

    from include.catalogue_backlog import OwedRegistration, record

    context = get_current_context()
    owed = []
    for task_id in task_ids:
        task = dag.get_task(task_id)
        task.render_template_fields(context)  # plan XComs and the reconstruction's summary, as the step saw them
        kwargs = {field: getattr(task, field) for field in task.template_fields}
        if isinstance(task, SciCatIngestDerivedOperator):
            kwargs["skip_uncatalogued"] = False  # owed means its raw dataset must exist: fail, never skip
        owed.append(
            OwedRegistration(
                kind=catalogue_kind(task), kwargs=kwargs, dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id
            )
        )
    record(owed)
    return owed


@task
def check(name: str, step: str, reported: dict | None = None, ti=None) -> list[str]:
    """Check through Globus that the results of ``name`` are where and what its plan says (``checks``).

    ``reported``: the results of the steps that write them, by step (a TIFF check compares its count
    with the ``n_slices`` its step reported)."""
    from als_provider.hooks.globus_transfer import GlobusTransferHook
    from include.plans import Check, verify_results

    checks = [Check.from_dict(c) for c in ti.xcom_pull(task_ids=PLAN_TASK, key=f"{name}.checks")[step]]
    counts = {step: (result or {}).get("n_slices") for step, result in (reported or {}).items()}
    lines = verify_results(GlobusTransferHook(), checks, counts)
    for line in lines:
        print(line)
    return lines


def _finish(pipeline: Pipeline, planned) -> Pipeline:
    steps = [t.task_id for t in pipeline.steps]
    done = finish.override()(pipeline.name, steps)
    planned >> done
    pipeline.steps >> done
    pipeline.finish = done
    return pipeline


# -- new scan -----------------------------------------------------------------------------------------
def new_file_steps(beamline: Tomography, planned) -> Pipeline:
    """source → storage (raw), then (when the scan may leave the beamline) → the long-term copy and SciCat."""
    scan, source_path = plan_text(NEW_FILE, "scan"), plan_text(NEW_FILE, "source_path")
    raw, long_term = beamline.raw_endpoint, beamline.long_term_endpoint
    to_data832 = copy_scan(TO_DATA832, (beamline.source_endpoint, source_path), (raw, scan))
    to_nersc = copy_scan(TO_NERSC, (raw, scan), (long_term, source_path))
    ingest = SciCatIngestRawOperator(
        task_id=SCICAT_INGEST,
        file_path=scan,
        endpoint=raw,
        source_folder=plan_text(NEW_FILE, "scicat_source_folder"),
        long_term_endpoint=long_term,  # read there by a catch-up once the storage's copy is pruned
        long_term_path=source_path,
        ingester=beamline.ingester,
        **load_runtime().disk_queue(raw),  # reads the scan on raw's host (docs/operations.md)
    )
    planned >> [to_data832, to_nersc, ingest]
    to_data832 >> to_nersc >> ingest  # catalogued once the long-term copy exists (plan skips both, or neither)
    pipeline = Pipeline(NEW_FILE, inputs=[to_data832, to_nersc], catalogue=ingest, steps=[to_data832, to_nersc, ingest])
    return _finish(pipeline, planned)


# -- reconstruction at a site -------------------------------------------------------------------------
def site_steps(site: Site, planned, *, after: Pipeline | None = None) -> Pipeline:
    """The reconstruction at ``site`` by its runner (dags/pipelines/runners/), results copied home (and
    archived), checked, catalogued. ``after``: the new-scan pipeline of the same run: the reconstruction waits
    for its copies (not for SciCat), the derived dataset for its raw ingest (which may be retrying while the
    site works)."""
    name, runtime, home = site.name, load_runtime(), site.beamline.scratch_endpoint
    run = run_steps(site, planned)
    copies = [
        GlobusTransferOperator(
            task_id=f"{'copy' if destination == home else 'archive'}_{kind}",
            source_endpoint=site.scratch_endpoint,
            source_path=plan_text(name, key),
            destination_endpoint=destination,
            destination_path=plan_text(name, key),
            recursive=True,
            replace_destination=True,  # a re-run's results replace the earlier ones, never mix with them
            poll_interval=runtime.poll("transfer"),
        )
        for destination in site.result_destinations()
        for kind, key in (("tiff", "tiff_path"), ("zarr", "zarr_path"))
    ]
    run.multiscale >> copies
    checked = check.override(task_id=RESULTS_CHECK)(name, RESULTS_CHECK, run.reported)
    (copies or [run.multiscale]) >> checked
    derived = SciCatIngestDerivedOperator(
        task_id="scicat_derived",
        file_path=plan_text(name, "scan"),
        results_folder=plan_text(name, "results_folder"),
        site=name,
        parameters=run.parameters,
        preview_path=plan_text(name, "preview_path"),
        source_folder=plan_text(name, "scicat_source_folder"),
        raw_source_folder=plan_text(name, "scicat_raw_source_folder"),
        skip_uncatalogued=True,
        **runtime.disk_queue("data832_scratch", "data832_raw"),  # reads the results and the scan there
    )
    checked >> derived
    planned >> derived  # plan skips it for an export-controlled scan (no SciCat step of any kind)
    entry = run.steps[0]
    planned >> entry
    if after:
        after.inputs >> entry
        entry.trigger_rule = "none_failed_min_one_success"
        if after.catalogue is not None:  # a failed raw ingest fails this step (named by the report), no other
            after.catalogue >> derived
            derived.trigger_rule = "none_failed_min_one_success"
    pipeline = Pipeline(name, steps=[*run.steps, *copies, checked.operator, derived])
    return _finish(pipeline, planned)


# -- a configured beamline ----------------------------------------------------------------------------
def beamline_steps(beamline: Beamline, planned) -> Pipeline:
    """Move the run's scans (one or several, the plan's ``scans``) to NERSC CFS, then in parallel: SciCat, the
    ptychography job, the HPSS archive job.

    Each step is one task instance for all the files, so ``finish`` and the exactly-once core see one state
    per step: the move is one Globus task holding every file (one submission id: a retry re-attaches to it;
    it succeeds only once every file arrived), SciCat makes one raw dataset per file (idempotent), each job
    works through the files in order and its check covers every file."""
    name, runtime = beamline.key, load_runtime()
    scans = from_plan(planned, name, "scans")
    move = GlobusTransferOperator(
        task_id=MOVE_TO_NERSC,
        source_endpoint=beamline.source_endpoint,
        source_path=scans,
        destination_endpoint=beamline.nersc_endpoint,
        destination_path=scans,
        recursive=False,
        skip_if_present=True,
        poll_interval=runtime.poll("transfer"),
    )
    planned >> move
    steps: list[Any] = [move]
    options = beamline.pipeline("scicat")
    if options is not None:
        ingest = SciCatIngestRawOperator(
            task_id=SCICAT_INGEST,
            file_path=scans,
            endpoint=beamline.source_endpoint,
            source_folder=from_plan(planned, name, "scicat_source_folders"),  # one per file
            ingester=options.get("ingester", "als_832_dx_4"),
            **runtime.disk_queue(beamline.source_endpoint),  # reads the files on the beamline's host
        )
        move >> ingest
        steps.append(ingest)
    for kind, job_task, check_step, poll in (
        ("ptycho", "ptycho_reconstruct", PTYCHO_CHECK, "sfapi"),
        ("hpss_archive", "archive_to_hpss", ARCHIVE_CHECK, "hpss"),
    ):
        options = beamline.pipeline(kind)
        if options is None:
            continue
        job = SFAPIJobOperator(
            task_id=job_task,
            template=options["template"],
            values=from_plan(planned, name, kind),
            job_name=plan_text(name, "job_names", kind),
            directives=options["directives"] or None,
            poll_interval=runtime.poll(poll),
        )
        checked = check.override(task_id=check_step)(name, check_step)
        move >> job >> checked
        steps += [job, checked.operator]
    return _finish(Pipeline(name, steps=steps), planned)


# -- the dispatcher's report --------------------------------------------------------------------------
@task(task_id="report", trigger_rule="all_done", retries=0, multiple_outputs=False)
def report(pipelines: list[str], ti=None, dag_run=None) -> dict:
    """Fail the run if any chosen pipeline failed, naming it and its failed tasks; else summarise the outputs."""
    chosen = ti.xcom_pull(task_ids=PLAN_TASK, key="chosen")
    if chosen is None:
        raise AirflowFailException(_refused(ti, "the run"))
    failed, unregistered = {}, {}
    dag = ti.task.dag
    for name in chosen:
        states = ti.get_task_states(dag_id=dag_run.dag_id, task_group_id=name, run_ids=[dag_run.run_id])
        bad = sorted(t for t, state in states.get(dag_run.run_id, {}).items() if state in ("failed", "upstream_failed"))
        catalogue, rest = split_catalogue(dag, bad, ti)
        if catalogue and rest == [f"{name}.{FINISH_TASK}"]:  # finish failed only to say SciCat is owed
            rest = []
        if rest:
            failed[name] = rest
        if catalogue:
            unregistered[name] = catalogue
    outputs = [o for name in chosen for o in ti.xcom_pull(task_ids=f"{name}.{FINISH_TASK}", key="outputs") or []]
    problems = []
    if failed:
        problems.append("pipeline(s) failed: " + "; ".join(f"{n} ({', '.join(t)})" for n, t in failed.items()))
        said = failures(ti, [t for ts in failed.values() for t in ts if not t.endswith(f".{FINISH_TASK}")])
        problems += [f"{task_id}: {line}" for task_id, line in said.items()]
    if unregistered:
        problems.append(
            "SciCat: not registered: "
            + "; ".join(f"{n} ({', '.join(t.rpartition('.')[2] for t in ts)})" for n, ts in unregistered.items())
            + f"; the {SCICAT_CATCHUP_DAG_ID} DAG registers them once SciCat answers"
        )
    for line in output_lines(outputs):  # the run's outputs in the log of its last task, not only in XComs
        print(line)
    if problems:
        print(f"outputs published: {len(outputs)}")
        raise RuntimeError(". ".join(problems))
    print(f"all chosen pipelines succeeded: {', '.join(chosen) or 'none'}")
    return {"pipelines": chosen, "outputs": outputs}
