"""The steps side of each runner (include/runners/ holds the plan side): the operators that run a site's
reconstruction, built from its plan. One module per runner, registered here by the runner's name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dags.pipelines.runners import globus_compute, sfapi
from dags.pipelines.runners.base import RunSteps
from include.runners import GLOBUS_COMPUTE, SFAPI, get_runner
from include.sites import Site

BUILDERS: dict[str, Callable[[Site, Any], RunSteps]] = {
    GLOBUS_COMPUTE.name: globus_compute.run_steps,
    SFAPI.name: sfapi.run_steps,
}


def run_steps(site: Site, planned) -> RunSteps:
    """The steps of ``site``'s runner."""
    return BUILDERS[get_runner(site.runner).name](site, planned)
