"""The ``globus_compute`` runner, steps side: stage the scan by Globus (when the site reads another endpoint),
then the ``reconstruct`` and ``multiscale`` functions at the site's Compute endpoint (plan side:
include/runners/globus_compute.py). SciCat records the options the reconstruction used (its summary)."""

from __future__ import annotations

import itertools
from datetime import timedelta

from als_provider.operators.globus_compute import GlobusComputeOperator
from dags.pipelines.plan_args import copy_scan, from_plan, plan_text
from dags.pipelines.runners.base import RunSteps
from include.runners import STEPS
from include.runtime import load_runtime
from include.sites import Site


def run_steps(site: Site, planned) -> RunSteps:
    name = site.name
    first = []
    if site.stages_raw:
        scan = plan_text(name, "scan")
        first = [copy_scan("stage_raw", (site.source_endpoint, scan), (site.raw_endpoint, scan))]
    reconstruct, multiscale = (
        GlobusComputeOperator(
            task_id=function,
            function_name=function,
            function_kwargs=from_plan(planned, name, function),
            site=name,
            poll_interval=load_runtime().poll("compute"),
            task_timeout=timedelta(minutes=site.task_timeout_minutes),
        )
        for function in STEPS
    )
    steps = [*first, reconstruct, multiscale]
    for before, after in itertools.pairwise(steps):
        before >> after
    return RunSteps(steps, multiscale, parameters=reconstruct.output, reported={"reconstruct": reconstruct.output})
