"""The documented scale-out: the same stack with the CeleryExecutor (Redis broker) runs a DAG through a worker, and
the tasks that read a host's disk (the SciCat steps) run on that host's queue (docs/operations.md "Tasks that read a
host's disk").

The stack has two workers: the default one, whose local facility root is an empty folder (it sees none of the
facility's trees, as a worker off the beamline hosts), and a disk worker that alone sees them and serves only a queue
of this stack (Redis is shared between stacks). runtime.yaml's ``disk_queues`` maps data832, the collection the
SciCat ingest reads, to that queue (``ALS_RUNTIME_FILE``: a copy of runtime.yaml for this stack).
"""

from __future__ import annotations

import re
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from facility.process import free_port
from include.endpoints import load_endpoints
from include.runtime import RUNTIME_FILE, RUNTIME_FILE_ENV
from tests.e2e.conftest import unique_database
from tools.demo import DEMO_FOLDER
from tools.local_airflow import load_settings
from tools.local_stack import WORKER, LocalStack, Worker

pytestmark = pytest.mark.e2e

DAG_ID = "bl832_transfer_check"
NEW_FILE = "bl832_new_file"
DISK_WORKER = f"{WORKER}-data832"
SCICAT_USER = "ingestor"


def stack_runtime_file(path: Path, disk_queue: str) -> Path:
    """runtime.yaml with data832 on ``disk_queue``, and no local read of a new scan on spot832: production's plan
    reads it over SFTP (no mount), and this stack has no SFTP server, so the blind default worker skips it."""
    data = yaml.safe_load(RUNTIME_FILE.read_text())
    data["local"]["disk_queues"] = {"data832": disk_queue}
    for profile in ("production", "local"):
        data[profile].pop("scan_readers", None)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def celery_stack():
    home = Path(tempfile.mkdtemp(prefix="als-e2e-celery-"))
    database = unique_database("als_e2e_celery")
    blind = home / "no-facility"  # the default worker's facility root: empty
    blind.mkdir()
    stack = LocalStack(
        home,
        port=free_port(),
        database=database,
        executor="CeleryExecutor",
        env={RUNTIME_FILE_ENV: str(stack_runtime_file(home / "runtime.yaml", f"data832-{database}"))},
        workers={WORKER: Worker(env={"LOCAL_FACILITY_ROOT": str(blind)}), DISK_WORKER: Worker(f"data832-{database}")},
    )
    with stack.running(timeout=300):
        yield stack


@pytest.mark.long  # a minute on two cores; make test proves the check touches no disk at the DAG level
def test_transfer_check_runs_through_a_celery_worker(celery_stack):
    stack = celery_stack
    assert stack.pid("celery-worker") is not None
    started = time.monotonic()
    run_id = stack.trigger(DAG_ID)
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


def _ran_on(stack: LocalStack, run_id: str) -> dict[str, set[str]]:
    """task id → the workers whose log shows they executed it in ``run_id``."""
    ran: dict[str, set[str]] = {}
    for worker in stack.workers:
        text = (stack.log_dir / f"{worker}.log").read_text(errors="replace")
        for line in text.splitlines():
            if run_id in line and (found := re.search(r"task_id='([^']+)'", line)):
                ran.setdefault(found.group(1), set()).add(worker)
    return ran


def test_the_scicat_ingest_runs_on_the_worker_that_sees_the_disk(celery_stack):
    from pyscicat.client import from_credentials

    from compute_functions.sample_scan import write_sample_scan

    stack = celery_stack
    name = f"{datetime.now(UTC):%Y%m%d_%H%M%S}_e2edisk.h5"
    scan = load_endpoints("local", facility_root=stack.facility_root)["spot832"].posix_path(f"raw/{DEMO_FOLDER}/{name}")
    scan.parent.mkdir(parents=True, exist_ok=True)
    write_sample_scan(scan, size="tiny")
    started = time.monotonic()
    run_id = stack.trigger(NEW_FILE, {"file_path": f"/global/raw/{DEMO_FOLDER}/{name}"})
    state = stack.wait(NEW_FILE, run_id, timeout=300, poll=1.0)
    tis = {ti["task_id"]: ti for ti in stack.task_instances(NEW_FILE, run_id)}
    assert state == "success", ({k: v["state"] for k, v in tis.items()}, f"logs under {stack.log_dir}")
    print(f"{NEW_FILE} on two workers: {time.monotonic() - started:.0f}s")

    disk_queue, default_queue = stack.workers[DISK_WORKER].queue, stack.env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"]
    assert tis["scicat_ingest"]["state"] == "success" and tis["scicat_ingest"]["queue"] == disk_queue
    others = {task_id: ti["queue"] for task_id, ti in tis.items() if task_id != "scicat_ingest"}
    assert set(others.values()) == {default_queue}, others
    ran = _ran_on(stack, run_id)
    assert ran["scicat_ingest"] == {DISK_WORKER}, ran
    ran_elsewhere = {task_id: ran.get(task_id) for task_id, ti in tis.items() if ti["state"] == "success"}
    assert all(workers == {WORKER} for task_id, workers in ran_elsewhere.items() if task_id != "scicat_ingest"), ran

    password = next(c["conn_password"] for c in load_settings()["connections"] if c["conn_id"] == "scicat_default")
    scicat = from_credentials(f"{stack.facility.url}/scicat/api/v3", SCICAT_USER, password)
    raw = [d for d in scicat.datasets_get_many({"datasetName": scan.stem}) or [] if d["type"] == "raw"]
    assert len(raw) == 1, f"{len(raw)} raw datasets for {scan.stem}"
    # what the ingest read, the scan's copy on data832, is on the facility's disk, and none of it on the default's
    assert list((stack.facility_root / "data832").rglob(name)), f"no copy of {name} on data832"
    assert not any(Path(stack.workers[WORKER].env["LOCAL_FACILITY_ROOT"]).iterdir())
