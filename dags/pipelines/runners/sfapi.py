"""The ``sfapi`` runner, steps side: the two Slurm jobs through SFAPI, the first staging the scan itself and
reconstructing, across ``num_nodes`` nodes when asked (its ``#SBATCH --nodes`` from the plan; plan side:
include/runners/sfapi.py). SciCat records the options asked (the plan's ``recon``)."""

from __future__ import annotations

from als_provider.operators.sfapi import EXIT_DATA_ERROR, SFAPIJobOperator
from dags.pipelines.plan_args import from_plan, plan_text
from dags.pipelines.runners.base import RunSteps
from include.runners.sfapi import JOBS
from include.runtime import load_runtime
from include.sites import Site

#: The exit status of a job's data error (a bad scan or option fails once, never retried).
DATA_ERROR = {"reconstruct": EXIT_DATA_ERROR}


def run_steps(site: Site, planned) -> RunSteps:
    name = site.name
    reconstruct, multiscale = (
        SFAPIJobOperator(
            task_id=step,
            template=template,
            values=from_plan(planned, name, step),
            job_name=plan_text(name, "job_names", step),
            directives=from_plan(planned, name, f"{step}_directives"),  # across nodes: --nodes
            poll_interval=load_runtime().poll("sfapi"),
            data_error_exit_status=DATA_ERROR.get(step),
        )
        for step, (template, _) in JOBS.items()
    )
    reconstruct >> multiscale
    return RunSteps([reconstruct, multiscale], multiscale, parameters=from_plan(planned, name, "recon"), reported=None)
