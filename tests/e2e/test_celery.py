"""The documented scale-out: the same stack with the CeleryExecutor (Redis broker) runs a DAG through a worker."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from facility.process import free_port
from tests.e2e.conftest import unique_database
from tools.local_stack import LocalStack

pytestmark = pytest.mark.e2e

DAG_ID = "bl832_transfer_check"


@pytest.fixture(scope="module")
def celery_stack():
    home = Path(tempfile.mkdtemp(prefix="als-e2e-celery-"))
    stack = LocalStack(home, port=free_port(), database=unique_database("als_e2e_celery"), executor="CeleryExecutor")
    with stack.running(timeout=300):
        yield stack


def test_transfer_check_runs_through_a_celery_worker(celery_stack):
    stack = celery_stack
    assert stack.pid("celery-worker") is not None
    started = time.monotonic()
    run_id = stack.trigger(DAG_ID, {"size_kib": 64})
    state = stack.wait(DAG_ID, run_id, timeout=300)
    assert state == "success", f"logs under {stack.log_dir}"
    print(f"{DAG_ID} through Celery: {time.monotonic() - started:.0f}s")

    tis = stack.task_instances(DAG_ID, run_id)
    queue = stack.env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"]
    assert tis and all(ti["state"] == "success" and ti["queue"] == queue for ti in tis)
    assert {ti["executor"] for ti in tis} <= {None, "CeleryExecutor"}
    # the worker, not the scheduler, ran them: its log names every task of the run
    worker_log = (stack.log_dir / "celery-worker.log").read_text(errors="replace")
    assert all(ti["task_id"] in worker_log for ti in tis), "a task did not go through the Celery worker"
    # and the probe really moved: both copies exist on the facility
    stats = stack.facility.stats()
    assert stats.get("transfer.succeeded", 0) >= 2
