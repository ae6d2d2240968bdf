"""The one export-control check every off-site operator makes before anything moves (include/export_control.py).

``refuse_export_controlled(context, what, values)``: fails the task (no retry) when the run's conf says the
scan is export-controlled, or when a signed record (or an edited one) names a scan among ``values`` (the
step's paths and arguments) or the run's ``file_path``. A Clear, a re-run, ``airflow tasks test``, a site
DAG, a re-dispatch without the flag and the catch-up all pass through it.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

#: Conf keys that declare a run export-controlled (ours and upstream's).
_FLAGS = ("is_export_controlled", "is_export_control")


def refuse_export_controlled(
    context: Any,
    what: str,
    values: Any,
    *,
    endpoints: tuple[str, ...] = (),
    site: str | None = None,
    compute_endpoint: str | None = None,
    skip: bool = False,
) -> None:
    """Raise ``AirflowFailException`` (``AirflowSkipException`` with ``skip``: a catalogue step, which must
    never become an owed registration) naming the scan and its record, unless the step stays on site:
    every one of ``endpoints`` on the beamline's collections, or ``site``/``compute_endpoint`` a site that
    is not off-site. With none of them the step is off-site (SFAPI, SciCat)."""
    from include.export_control import find_controlled, is_on_site

    if endpoints and all(is_on_site(name) for name in endpoints):
        return
    if site is not None or compute_endpoint is not None:
        from include.sites import load_sites

        sites = load_sites().sites.values()
        if any(
            not s.offsite and (s.name == site or (site is None and s.compute_endpoint_id == compute_endpoint))
            for s in sites
        ):
            return
    dag_run = context.get("dag_run") if context else None
    conf = dict(getattr(dag_run, "conf", None) or {})
    exc = AirflowSkipException if skip else AirflowFailException
    flagged = [key for key in _FLAGS if conf.get(key) is True]
    file_path = conf.get("file_path")
    found = find_controlled([values, file_path])
    if found:
        record = found[0]
        raise exc(
            f"{what}: refused: {record.folder}/{record.dataset} is export-controlled ({record.describe()}); "
            "it never leaves the beamline (docs/security.md)"
        )
    if flagged:
        raise exc(
            f"{what}: refused: this run's conf has {flagged[0]}=true for {file_path!r}; an export-controlled scan "
            "never leaves the beamline (docs/security.md)"
        )
