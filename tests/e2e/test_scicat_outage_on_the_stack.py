"""SciCat down for a whole dispatcher run on the real stack (issue 16): the reconstructions finish, the report
names SciCat, and the scicat_catchup DAG registers the scan and its results once SciCat is back, once.

A long proof (about 4 minutes): `make bench` runs it; its short version, the same outage and catch-up on
dag.test, is tests/dags/test_scicat_catchup.py (run by `make test`)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import DISPATCHER

pytestmark = pytest.mark.e2e
CATCHUP = "scicat_catchup"


@pytest.mark.long
@pytest.mark.timeout(1200)
def test_scicat_outage_then_catchup(stack, write_scan):
    facility = stack.facility
    facility.reset()
    file_path = write_scan("scicat-outage")
    facility.inject("scicat", "http", status=503, times=1_000_000)  # down until reset

    run_id = stack.trigger(DISPATCHER, {"file_path": file_path})
    assert stack.wait(DISPATCHER, run_id, timeout=900) == "failed"
    tis = {ti["task_id"]: ti["state"] for ti in stack.task_instances(DISPATCHER, run_id)}
    chosen = [name for name in ("alcf", "nersc", "local") if f"{name}.reconstruct" in tis]
    assert chosen, tis
    for site in chosen:  # every reconstruction finished, copied home and checked; only SciCat is owed
        assert tis[f"{site}.check_results"] == "success", tis
    assert tis["new_file.data832_to_nersc832"] == "success"
    assert tis["new_file.scicat_ingest"] == "failed"
    report_logs = stack.log_dir.glob(f"dag_id={DISPATCHER}/run_id={run_id}/task_id=report/*.log")
    text = "\n".join(path.read_text(errors="replace") for path in report_logs)
    assert "SciCat: not registered" in text and CATCHUP in text
    assert facility.stats().get("scicat.dataset_created", 0) == 0

    facility.reset()  # SciCat is back
    catchup = stack.trigger(CATCHUP, {})
    assert stack.wait(CATCHUP, catchup, timeout=600) == "success"
    assert facility.stats()["scicat.dataset_created"] == 1 + len(chosen)

    again = stack.trigger(CATCHUP, {})  # nothing owed any more: nothing registered twice
    assert stack.wait(CATCHUP, again, timeout=300) == "success"
    assert facility.stats()["scicat.dataset_created"] == 1 + len(chosen)
