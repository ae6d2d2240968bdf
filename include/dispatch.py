"""The dispatcher's choice of pipelines for one scan, without Airflow: which run and why the others do not.

The DAG layer (dags/pipelines/steps.py ``plan``) fetches the inputs (the settings Variable's value, the conf, a
way to look at results at home) and calls :func:`choose`; every rule lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from include.paths import EndpointPath, Results, Scan
from include.results import Completeness
from include.sites import Site

#: How the dispatcher looks at results: the completeness of a folder (include.results.completeness over a hook).
ResultsLookup = Callable[[EndpointPath], Completeness]


@dataclass(frozen=True)
class Choice:
    """The pipelines that run, in order; why each other one does not; what is worth a line in the log."""

    chosen: list[str]
    skipped: dict[str, str]
    notes: list[str] = field(default_factory=list)


def check_settings(settings: object, names: Sequence[str], variable: str) -> dict[str, bool]:
    """The settings Variable's value: a JSON object of ``names`` to true/false (ValueError naming it otherwise)."""
    if not isinstance(settings, dict):
        raise ValueError(f"Variable {variable} must be a JSON object like {{'new_file': true, ...}}")
    unknown = set(settings) - set(names)
    if unknown or not all(isinstance(v, bool) for v in settings.values()):
        raise ValueError(
            f"Variable {variable}: keys must be among {', '.join(names)} with true/false values; got {settings}"
        )
    return settings


def choose(
    names: Sequence[str],
    sites: Mapping[str, Site],
    scan: Scan,
    params: Mapping[str, Any],
    settings: object,
    results: ResultsLookup,
    *,
    variable: str,
) -> Choice:
    """Which of ``names`` run for ``scan``: on in the ``settings`` (the value of the Variable ``variable``);
    a site (every name of ``sites``; the others are pipelines without a site) never off-site for an
    export-controlled scan, never reading the long-term copy when ``send_to_nersc`` is off, and not again when
    its results at home are complete (``results`` looks at them)."""
    settings = check_settings(settings, names, variable)
    chosen, skipped, notes = [], {}, []
    for name in names:
        site = sites.get(name)
        if not settings.get(name, False):
            skipped[name] = f"off in {variable}"
        elif site is None:
            chosen.append(name)
        elif params["is_export_controlled"] and site.offsite:
            skipped[name] = "export-controlled: the scan never leaves the beamline"
        elif site.needs_nersc_copy and not params["send_to_nersc"]:
            skipped[name] = f"send_to_nersc is off: there is no NERSC copy at {site.source_endpoint} to reconstruct"
        elif (done := results_at_home(site, scan.results(site), results, notes)) is not None:
            skipped[name] = done
        else:
            chosen.append(name)
    return Choice(chosen, skipped, notes)


def results_at_home(site: Site, results: Results, lookup: ResultsLookup, notes: list[str] | None = None) -> str | None:
    """Why ``site`` need not run again: both result folders at home complete (their results manifests match the
    files, include/results.py); ``None`` if any is absent, partial, mixed or still being copied (each such
    folder adds a line to ``notes``)."""
    home = site.beamline.scratch_endpoint
    found = [lookup(EndpointPath(home, str(folder))) for folder in results.folders()]
    for f in found:
        if not f.complete and f.reason != "absent" and notes is not None:
            notes.append(f"{f.where} is incomplete ({f.reason}): reconstructing again")
    if all(f.complete for f in found):
        return f"results already complete on {home}:{results.folder}/"
    return None
