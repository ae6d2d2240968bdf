"""A short run of the months-long pruning simulation (benchmarks/bench_prune_months.py) on the facility."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from include.endpoints import REPO_ROOT


def load_simulation():
    spec = importlib.util.spec_from_file_location(
        "bench_prune_months", REPO_ROOT / "benchmarks" / "bench_prune_months.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def clean_facility(facility, local_endpoints):
    """The facility with no earlier simulation's folders (the session's facility is shared)."""
    import shutil

    for endpoint in (
        "spot832",
        "data832",
        "data832_scratch",
        "alcf832_raw",
        "alcf832_scratch",
        "nersc832",
        "nersc832_alsdev_pscratch_raw",
        "nersc832_alsdev_pscratch_scratch",
        "nersc832_alsdev_scratch",
    ):
        root = local_endpoints[endpoint].posix_path(".")
        for folder in [*root.glob("sim_d*"), *root.glob("raw/sim_d*")]:
            shutil.rmtree(folder)
    return facility


def test_days_of_scans_faults_and_daily_prunes_keep_every_scan_and_stay_bounded(
    clean_facility, local_endpoints, airflow_db
):
    """Nine days, three scans a day: NERSC CFS offline on days 2-3, a failed delete task on day 5, a scan edited
    in place on day 1, silent rot of a random copy on days 1, 4 and 6, a Clear of two copy/archive tasks whose
    source was pruned (and of one whose results are all there) on days 7 and 8. Every scan always has a raw copy
    with its original bytes, the edited scan is never deleted, every temporary copy goes within its retention
    (pscratch: 7 days) and no entry stays overdue; no long-term copy is ever overwritten or deleted and every rot
    is reported (issue 21: the checksum sync wrote a rotten copy over the long-term one; a Clear of a copy after
    its source was pruned deleted the results at home and in the archive)."""
    from airflow.models import Variable

    bench = load_simulation()
    # the retention this timeline was written for (the defaults before issue 22; now upstream's: 35 days on data832
    # would keep every raw copy through the nine days)
    pre_issue_22 = {"spot832": 0, "data832": 3, "alcf": 2, "data832_scratch": 3, "nersc_pscratch": 7}
    retention = {**json.loads(Variable.get("als_retention_days")), **pre_issue_22}
    faults = bench.Faults(offline=(2, 4), failed_delete_day=5, edited_scan_day=1, rot_days=(1, 4, 6),
                          clear_days=(7, 8), clears=2, seed=21)  # fmt: skip
    sim = bench.Simulation(clean_facility, local_endpoints, scans=3, faults=faults, retention=retention)
    result = sim.run(9, log=lambda line: None)
    summary = result.summary()
    assert result.violations == [], "\n".join(result.violations)
    assert summary["failed_delete_tasks"] == 1 and summary["check_errors"] >= 1  # the offline days' checks
    assert any(h != "ok" for d in result.days[2:4] for h in d.health)  # the health check saw the outage
    assert all(h == "ok" for d in result.days[5:] for h in d.health)
    # every temporary location emptied as its rule says; the edited scan stays on spot832 with its entry
    spot832 = local_endpoints["spot832"].posix_path("raw")
    left = sorted(str(p.relative_to(spot832)) for p in spot832.glob("sim_d*/*") if p.is_file())
    assert left == sorted(sim.changed)
    assert result.days[-1].bytes["pscratch scratch"] > 0 and result.days[-1].manifest_entries < 3 * 9 * 4
    assert summary["deleted"] > 0
    assert summary["rots"] == 3 and summary["rots_reported"] >= 2 and summary["content_mismatches"] >= 2
    # issue 21 (finding 5): Clears of copy/archive tasks after their source was pruned failed with no retry, and
    # touched nothing (checked in the simulation: no Globus task, no file changed, no long-term file gone)
    pruned = [c for c in result.clears if c["source_pruned"]]
    assert len(pruned) == 4 and {c["outcome"] for c in pruned} == {"failed with no retry"}
    assert any("archive_" in c["task"] for c in pruned) and any("copy_" in c["task"] for c in pruned)
    # and a Clear of results still there, one of them rotten, copied nothing (a copy must not "repair" the rot)
    assert {c["outcome"] for c in result.clears if not c["source_pruned"]} == {"success: SKIPPED"}
    assert summary["clears_of_results_holding_rot"] >= 1
    # the health check left no probe anywhere
    assert not [
        p for e in ("spot832", "data832", "nersc832") for p in local_endpoints[e].posix_path(".").rglob("*.probe")
    ]
