"""Issue 23 item 8: re-running with new options. Without ``force`` the skip says how to rerun; with it, the new
results go to the run's ``rerun-<run>/`` folder beside the complete ones (which stay as they are, as do their
copies home and at NERSC), once per run: a retry or a Clear of a forced run does not reconstruct again."""

from __future__ import annotations

import json
import uuid
from pathlib import PurePosixPath

import pytest

from include.dispatch import choose
from include.paths import EndpointPath, endpoint_relative, parse_scan
from include.plans import regeneration_problem, rerun_folder, site_plan
from include.results import Completeness
from include.sites import load_sites
from tests.dags.dag_helpers import load_dag, states, write_scan, xcom

FORCE = 'to reconstruct again, trigger with {"force": true}'
PARAMS = {"is_export_controlled": False, "send_to_nersc": True}
SCAN = parse_scan("BLS-00564_dyparkinson/20230224_132553_sea_shell.h5")


def _choice(complete: set[str], rerun: str | None = None):
    """The dispatcher's choice for ``local`` alone, where exactly the folders ``complete`` are complete at home."""

    def lookup(where: EndpointPath) -> Completeness:
        return Completeness(where, str(where.path) in complete, "complete" if str(where.path) in complete else "absent")

    return choose(
        ["local"], load_sites().sites, SCAN, PARAMS, {"local": True}, lookup, variable="settings", rerun=rerun
    )


def _folders(results) -> set[str]:
    return {str(folder) for folder in results.folders()}


def test_the_skip_for_complete_results_names_where_and_force():
    results = SCAN.results(load_sites()["local"])
    choice = _choice(_folders(results))
    assert choice.chosen == []
    assert choice.skipped["local"] == f"results already complete at data832_scratch:{results.tiff}/; {FORCE}"


def test_force_writes_a_rerun_folder_beside_complete_results_once_per_run():
    site = load_sites()["local"]
    old, rerun = SCAN.results(site), rerun_folder("manual__2026-12-07T17:10:43.123456+00:00")
    forced = _choice(_folders(old), rerun)
    assert forced.chosen == ["local"] and forced.reruns == {"local": rerun}
    planned = site_plan(site, SCAN, {"rows": "0:2"}, rerun=rerun)
    new = f"{SCAN.folder}/local/{rerun}/rec{SCAN.dataset}"
    assert planned.tiff_path == new and planned.zarr_path == f"{new}.zarr"
    assert planned.steps["reconstruct"]["options"] == {"rows": "0:2"}
    written = {d.path for d in planned.deletions} | {str(o.where.path) for o in planned.outputs}
    assert all(rerun in path for path in written), written  # nothing of the complete results is touched
    # a retry or a Clear of the same run: its own folder is complete, nothing runs again
    again = _choice(_folders(old) | _folders(SCAN.results_under(f"local/{rerun}")), rerun)
    assert again.chosen == [] and again.skipped["local"].startswith("this forced run's results already complete")
    # absent results: a forced run writes where an unforced one would
    assert _choice(set(), rerun).reruns == {}


def test_rerun_folders_are_per_run_and_prunable_as_the_runs_own():
    first, other = rerun_folder("manual__2026-12-07T17:10:43+00:00"), rerun_folder("manual__2026-12-07T17:10:44+00:00")
    assert first == rerun_folder("manual__2026-12-07T17:10:43+00:00") != other
    assert endpoint_relative(first) == PurePosixPath(first)  # one clean path component
    site = load_sites()["local"]  # opted in to regenerate_from_raw: finish records its results against raw
    planned = site_plan(site, SCAN, {}, rerun=first)
    checked = [d for d in planned.deletions if d.check_path]
    assert checked and all(first in d.path for d in checked)
    for d in checked:  # what finish validates before recording (include/manifests.py check_regeneration)
        assert regeneration_problem(d.endpoint, PurePosixPath(d.path), d.check_endpoint, d.check_path) is None


@pytest.mark.slow
@pytest.mark.usefixtures("airflow_db")
def test_a_forced_rerun_with_new_options_keeps_the_old_results_and_runs_once(facility, local_endpoints, capfd):
    from airflow.models import Variable

    from compute_functions.results_manifest import check
    from include.dispatch import results_at_home
    from include.results import completeness

    token = uuid.uuid4()
    folder, name = f"BLS-{token.int % 10**5:05d}_rerun{token.hex[:8]}", "20261122_101500_phantom.h5"
    write_scan(local_endpoints, "spot832", f"raw/{folder}/{name}")
    conf = {"file_path": f"/global/raw/{folder}/{name}"}
    scan, site = parse_scan(f"{folder}/{name}"), load_sites()["local"]
    home = local_endpoints["data832_scratch"]
    old = home.posix_path(str(scan.results(site).tiff))
    dag = load_dag("bl832_dispatcher")
    before = Variable.get("bl832_dispatcher_settings")
    Variable.set("bl832_dispatcher_settings", json.dumps({"new_file": True, "local": True}))
    try:
        first = dag.test(run_conf=conf)
        assert first.state == "success", states(first)
        kept = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in old.iterdir()}
        capfd.readouterr()
        skipped = dag.test(run_conf=conf)
        assert skipped.state == "success", states(skipped)
        assert (
            f"skipping local: results already complete at data832_scratch:{folder}/local/rec" in capfd.readouterr().out
        )
        assert FORCE in xcom(skipped, "plan", "skipped")["local"]

        executed = facility.stats().get("compute.executed.reconstruct", 0)
        facility.inject("compute", "lost_submit", status=504, match="^reconstruct$")  # the try retries
        forced = dag.test(run_conf={**conf, "force": True, "recon": {"rows": "0:2"}})
    finally:
        Variable.set("bl832_dispatcher_settings", before)
    assert forced.state == "success", states(forced)
    assert facility.stats()["compute.executed.reconstruct"] == executed + 1  # the retry attached, never re-ran
    rerun = rerun_folder(forced.run_id)
    new = home.posix_path(f"{folder}/local/{rerun}/{old.name}")
    assert len(list(new.glob("*.tiff"))) == 2 and check(new)  # complete by its results manifest
    assert xcom(forced, "local.reconstruct")["options"]["rows"] == "0:2"  # the new options, as run
    assert {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in old.iterdir()} == kept and check(old)
    # a Clear of the forced run plans again: its own folder is complete, so nothing reconstructs
    from als_provider.hooks.globus_transfer import GlobusTransferHook

    hook = GlobusTransferHook()
    choice = choose(
        ["local"],
        load_sites().sites,
        scan,
        PARAMS,
        {"local": True},
        lambda w: completeness(hook, w),
        variable="s",
        rerun=rerun,
    )
    assert choice.chosen == [] and "this forced run's" in choice.skipped["local"]
    assert results_at_home(site, scan.results(site), lambda w: completeness(hook, w)) is not None
