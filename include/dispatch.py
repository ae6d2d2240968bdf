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

#: How a skip for complete results says to reconstruct again (the ``force`` conf key).
FORCE_HINT = 'to reconstruct again, trigger with {"force": true}'
#: How the dispatcher looks at results: the completeness of a folder (include.results.completeness over a hook).
ResultsLookup = Callable[[EndpointPath], Completeness]


@dataclass(frozen=True)
class Choice:
    """The pipelines that run, in order; why each other one does not; what is worth a line in the log."""

    chosen: list[str]
    skipped: dict[str, str]
    notes: list[str] = field(default_factory=list)
    #: The chosen sites that write a forced re-run's folder (include/plans.py ``rerun_folder``), by name.
    reruns: dict[str, str] = field(default_factory=dict)


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
    rerun: str | None = None,
) -> Choice:
    """Which of ``names`` run for ``scan``: on in the ``settings`` (the value of the Variable ``variable``);
    a site (every name of ``sites``; the others are pipelines without a site) never off-site for an
    export-controlled scan, never reading the long-term copy when ``send_to_nersc`` is off, and not again when
    its results at home are complete (``results`` looks at them), unless forced: ``rerun`` (a forced run's
    re-run folder) sends such a site's new results there (:func:`forced`)."""
    settings = check_settings(settings, names, variable)
    chosen, skipped, notes, reruns = [], {}, [], {}
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
        else:
            why, folder = complete_at_home(site, scan, results, rerun, notes)
            if why is not None:
                skipped[name] = why
            else:
                chosen.append(name)
                if folder:
                    reruns[name] = folder
    return Choice(chosen, skipped, notes, reruns)


def complete_at_home(
    site: Site, scan: Scan, lookup: ResultsLookup, rerun: str | None, notes: list[str]
) -> tuple[str | None, str | None]:
    """Whether ``site`` runs again for ``scan``, by its results at home: ``(why not, None)`` when they are complete
    and the run is not forced (``rerun`` None) or its forced re-run already finished; ``(None, rerun)`` when forced
    over complete results (the new ones go to the re-run folder, :func:`forced`); ``(None, None)`` when they are
    not complete (it runs in place)."""
    if (done := results_at_home(site, scan.results(site), lookup, notes)) is None:
        return None, None
    if not rerun:
        return done, None
    again = forced(site, scan, lookup, rerun, notes)
    return (again, None) if again is not None else (None, rerun)


def forced(site: Site, scan: Scan, lookup: ResultsLookup, rerun: str, notes: list[str]) -> str | None:
    """A forced run of ``site`` whose results at home are complete: they stay as they are (a copy home or an
    archive copy is never written over) and the new results go to the run's re-run folder ``rerun``; None (run
    it, with a line in ``notes``), or why not: that folder is complete already (this run finished it: a retry or
    a Clear of the run does not reconstruct again)."""
    from include.plans import rerun_site

    results = scan.results(rerun_site(site, rerun))
    if (done := results_at_home(site, results, lookup)) is not None:
        return f"this forced run's {done.partition('; ')[0]} (a Clear of the run does not reconstruct again)"
    home = site.beamline.scratch_endpoint
    notes.append(
        f"{site.name}: force: the complete results at {home}:{scan.results(site).tiff}/ stay as they are; "
        f"reconstructing into {home}:{results.tiff}/"
    )
    return None


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
        return f"results already complete at {home}:{results.tiff}/; {FORCE_HINT}"
    return None
