"""The runners: how a site of include/config/sites.yaml runs a reconstruction. The one place a runner's name
is looked up (:func:`get_runner`); add a runner with a module here (plan side), one in dags/pipelines/runners/
(steps side) and its provider parts (docs/DEVELOPING.md, "Add a runner")."""

from __future__ import annotations

from include.errors import ConfigError
from include.runners.base import STEPS, Runner
from include.runners.globus_compute import GLOBUS_COMPUTE
from include.runners.sfapi import SFAPI

#: Every runner by its sites.yaml name.
RUNNERS: dict[str, Runner] = {runner.name: runner for runner in (GLOBUS_COMPUTE, SFAPI)}
#: The sites.yaml keys some runner reads (a site may set only its own runner's).
RUNNER_KEYS = frozenset().union(*(runner.keys for runner in RUNNERS.values()))

__all__ = ["GLOBUS_COMPUTE", "RUNNERS", "RUNNER_KEYS", "SFAPI", "STEPS", "Runner", "get_runner"]


def get_runner(name: object, key: str = "runner") -> Runner:
    """The runner called ``name``; an unknown one is a :class:`ConfigError` naming ``key`` and the known ones."""
    try:
        return RUNNERS[name]  # type: ignore[index]
    except (KeyError, TypeError):
        raise ConfigError(f"{key}: {name!r} is not one of the known runners ({', '.join(RUNNERS)})") from None
