"""Retention by construction: every plan's deletions keep a check copy that outlives its target (no Airflow)."""

from __future__ import annotations

import json

import pytest

from include.beamlines import default_tomography, load_beamlines
from include.manifests import RETENTION_VARIABLE, ManifestError, check_retention_order, retention_map
from include.paths import parse_scan
from include.plans import Plan, beamline_plan, new_file_plan, site_plan
from include.sites import load_sites
from tools.local_airflow import load_settings

SCAN = parse_scan("BLS-00564_dyparkinson/20230224_132553_sea_shell.h5")
#: 8.3.2 (include/config/beamlines.yaml): results come home to data832_scratch; the raw copy stays at nersc832.
BL832 = default_tomography()


def default_days() -> dict[str, int]:
    """The retention days of airflow_settings.yaml (the Variable's defaults)."""
    [value] = [v["variable_value"] for v in load_settings()["variables"] if v["variable_name"] == RETENTION_VARIABLE]
    return json.loads(value)


def every_plan() -> list[tuple[str, Plan]]:
    plans = [("new_file", new_file_plan(SCAN, offsite=True)), ("new_file local", new_file_plan(SCAN, offsite=False))]
    plans += [(site.name, site_plan(site, SCAN, {})) for site in load_sites().enabled()]
    plans += [(b.key, beamline_plan(b, SCAN, hpss_mode="hsi")) for b in load_beamlines().beamlines.values()]
    return plans


@pytest.mark.parametrize(("name", "plan"), every_plan(), ids=[name for name, _ in every_plan()])
def test_finding_3_every_planned_check_copy_outlives_its_target(name, plan):
    """Found 3: pscratch results were checked against data832_scratch, pruned first, and kept forever."""
    days = default_days()
    for deletion in plan.deletions:
        check_retention_order(deletion.endpoint, deletion.location, deletion.check_endpoint, days)


def test_the_order_is_checked_against_the_days_of_the_variable():
    days = {**default_days(), BL832.scratch_retention: 0}  # data832_scratch shortened below ALCF's days
    with pytest.raises(ManifestError, match="falls due first"):
        check_retention_order("alcf832_scratch", "alcf", BL832.scratch_endpoint, days)


def test_finding_6_results_on_data832_scratch_are_pruned_for_every_site():
    """Found 6: ALCF and local results on data832_scratch were never pruned (the seeds purge it after 3 days)."""
    assert default_days()[BL832.scratch_retention] == 14
    regenerable = retention_map()[1]
    for site in load_sites().enabled():
        plan = site_plan(site, SCAN, {})
        home = {d.path: d for d in plan.deletions if d.endpoint == BL832.scratch_endpoint}
        markers = {p for p in home if p.rpartition("/")[2].startswith(".")}  # run-once markers (issue 21 f. 12)
        assert set(home) - markers == {str(o.where.path) for o in plan.outputs}, site.name  # every results folder
        for deletion in home.values():
            assert deletion.location == BL832.scratch_retention
            if site.archive_endpoint:  # a copy of the results at NERSC
                assert (deletion.check_endpoint, deletion.check_path) == (site.archive_endpoint, None)
            else:  # opted in: the long-term raw copy they can be regenerated from
                assert site.name in regenerable
                raw = f"raw/{SCAN.relative_path}"
                assert (deletion.check_endpoint, deletion.check_path) == (BL832.long_term_endpoint, raw)


def test_i26_finding_2_every_endpoint_is_classified_and_every_long_term_one_is_protected():
    """Found: only nersc832 raw/ was protected; nersc7012_raw, nersc733_hpss and the NERSC results archive were
    accepted as deletion targets when an entry was read. Now every long-term endpoint is named in
    retention.yaml and guarded whole, on its file system, through any collection."""
    from include.endpoints import load_endpoints
    from include.manifests import check_deletable, long_term_endpoints

    endpoints = load_endpoints("production")
    temporary, _ = retention_map()
    assert set(endpoints.endpoints) == set(temporary) | long_term_endpoints()  # none left unclassified
    assert {"nersc832", "nersc832_alsdev_scratch", "nersc7012_raw", "nersc733_hpss"} <= long_term_endpoints()
    for name in sorted(long_term_endpoints()):
        check = "data832" if name != "data832" else "spot832"
        with pytest.raises(ManifestError, match="never pruned"):
            check_deletable(name, "BLS-00564_dyparkinson/x.h5", check, endpoints)
    # the same place through another collection on the same file system
    with pytest.raises(ManifestError, match="nersc832_alsdev_scratch"):
        check_deletable("nersc832", "scratch/BLS-00564_dyparkinson", "data832_scratch", endpoints)
    # a temporary endpoint nested in a long-term one stays usable; its root itself does not
    check_deletable("nersc733_raw", "BLS-00564_dyparkinson/x.h5", "nersc733_hpss", endpoints)
    with pytest.raises(ManifestError, match="nersc733"):
        check_deletable("nersc733", "raw", "nersc733_hpss", endpoints)
