"""The ``globus_compute`` runner, steps side: stage the scan by Globus (when the site reads another endpoint),
then the ``reconstruct`` and ``multiscale`` functions at the site's Compute endpoint (plan side:
include/runners/globus_compute.py). SciCat records the options the reconstruction used (its summary).

Across ``num_nodes`` nodes, ``reconstruct_slab`` runs once per node first (a mapped task over the plan's
``slabs``: each its own Compute task, exactly once, retried alone), and ``reconstruct`` puts the slabs together;
on one node ``slabs`` is empty, so ``reconstruct_slab`` is skipped and ``reconstruct`` reconstructs."""

from __future__ import annotations

import itertools
from datetime import timedelta

from airflow.sdk import task

from als_provider.operators.globus_compute import GlobusComputeOperator
from dags.pipelines.plan_args import copy_scan, from_plan, plan_text
from dags.pipelines.runners.base import RunSteps
from include.runners import STEPS
from include.runtime import load_runtime
from include.sites import Site

#: The Compute function of one node's slab, and its mapped task.
SLAB_FUNCTION = "reconstruct_slab"


@task(task_id="slabs")
def slabs(kwargs: list, **context) -> list:
    """The arguments of each node's ``reconstruct_slab`` task, from the plan (none on one node), with the key
    of the one-pass store they all write (this task instance's: the same across retries, new after a Clear)."""
    from als_provider.operators.base import task_key

    key = task_key(context)
    return [{**slab, "store_key": key} for slab in kwargs]


def run_steps(site: Site, planned) -> RunSteps:
    name = site.name
    first = []
    if site.stages_raw:
        scan = plan_text(name, "scan")
        first = [copy_scan("stage_raw", (site.source_endpoint, scan), (site.raw_endpoint, scan))]
    common = {
        "site": name,
        "poll_interval": load_runtime().poll("compute"),
        "task_timeout": timedelta(minutes=site.task_timeout_minutes),
    }
    reconstruct, multiscale = (
        GlobusComputeOperator(
            task_id=function, function_name=function, function_kwargs=from_plan(planned, name, function), **common
        )
        for function in STEPS
    )
    listed = slabs(from_plan(planned, name, "slabs"))
    per_node = GlobusComputeOperator.partial(task_id=SLAB_FUNCTION, function_name=SLAB_FUNCTION, **common).expand(
        function_kwargs=listed
    )
    listed >> reconstruct  # on one node the slab task is skipped (nothing to map) and reconstruct still runs
    reconstruct.trigger_rule = "none_failed_min_one_success"
    steps = [*first, listed.operator, per_node, reconstruct, multiscale]
    for before, after in itertools.pairwise(steps):
        before >> after
    return RunSteps(steps, multiscale, parameters=reconstruct.output, reported={"reconstruct": reconstruct.output})
