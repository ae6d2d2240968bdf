"""Globus's cap on one user's unfinished tasks: our transfers wait for room (deferred) instead of failing on
it, never start a task twice, and run in a pool that counts their waits."""

from __future__ import annotations

import os
import threading
import time

import pytest
import yaml

from als_provider.hooks.globus_transfer import GlobusTransferHook
from als_provider.operators.globus_transfer import GLOBUS_POOL, GlobusTaskOperator, GlobusTransferOperator
from facility.transfer import ACTIVE_TASK_LIMIT
from include.endpoints import REPO_ROOT
from include.paths import EndpointPath

pytestmark = pytest.mark.usefixtures("airflow_db")


def test_every_globus_task_runs_in_a_pool_below_the_cap_that_counts_waits():
    from airflow.models.pool import Pool

    operator = GlobusTransferOperator(
        task_id="t", source_endpoint="spot832", source_path="a", destination_endpoint="data832", destination_path="a"
    )
    assert operator.pool == GLOBUS_POOL
    pools = yaml.safe_load((REPO_ROOT / "airflow_settings.yaml").read_text())["airflow"]["pools"]
    (entry,) = [pool for pool in pools if pool["pool_name"] == GLOBUS_POOL]
    assert entry["pool_slot"] < ACTIVE_TASK_LIMIT
    pool = Pool.get_pool(GLOBUS_POOL)  # as seed_database (tests, make demo, the local stack) writes it
    assert pool.slots == entry["pool_slot"] and pool.include_deferred is True


def test_every_globus_task_of_the_dags_and_no_other_task_is_in_the_pool():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    tasks = [task for dag in bag.dags.values() for task in dag.tasks]
    globus = [task for task in tasks if issubclass(task.operator_class, GlobusTaskOperator)]
    assert globus and all(task.pool == GLOBUS_POOL for task in globus), [t.task_id for t in globus]
    assert all(task.pool != GLOBUS_POOL for task in tasks if task not in globus)


def test_two_transfers_over_a_cap_of_one_both_succeed_with_one_task_each(facility, local_endpoints):
    from tests.fixture_dags.transfer_limit_dags import dag_task_limit

    payloads = {name: os.urandom(4096) for name in ("a", "b", "blocker")}
    for name, payload in payloads.items():
        path = local_endpoints.posix(EndpointPath("spot832", f"raw/limit_test/{name}.h5"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
    cap = facility.transfer_limit(change=False)["active"].get("local-client", 0) + 1
    facility.transfer_limit(cap)
    hook = GlobusTransferHook()
    # Someone else's task (the same Globus user) holds the only room until the DAG's submission was refused.
    facility.inject("transfer", "slow", match="limit_test/blocker", params={"seconds": 60})
    blocker = hook.submit_transfer(
        EndpointPath("spot832", "raw/limit_test/blocker.h5"),
        EndpointPath("data832_raw", "limit_test/blocker.h5"),
        submission_id=hook.new_submission_id(),
        recursive=False,
        label="blocker",
    )["task_id"]

    def end_the_blocker_once_refused() -> None:
        deadline = time.monotonic() + 60
        while facility.stats().get("transfer.limit_refused", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        hook.cancel(blocker)

    ender = threading.Thread(target=end_the_blocker_once_refused, daemon=True)
    ender.start()
    try:
        dag_run = dag_task_limit.test()
    finally:
        ender.join(timeout=60)
        facility.transfer_limit(None)

    assert dag_run.state == "success"
    assert all(ti.try_number == 1 for ti in dag_run.get_task_instances())  # waited, never failed a try
    for name in ("a", "b"):
        copied = local_endpoints.posix(EndpointPath("data832_raw", f"limit_test/{name}.h5"))
        assert copied.read_bytes() == payloads[name]
    stats = facility.stats()
    assert stats["transfer.limit_refused"] >= 1  # the cap was hit, and waited out
    assert stats["transfer.task_created"] == 3 and stats.get("transfer.duplicate", 0) == 0  # the blocker, a, b
    assert stats["task.active_peak"] == cap
