"""The prune DAG end to end: real Airflow (dag.test, metadata DB), real globus-sdk, the local facility."""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from als_provider.hooks.globus_transfer import GlobusTransferHook
from als_provider.operators.globus_delete import GlobusChecksumSync
from include import manifests
from include.endpoints import REPO_ROOT
from include.manifests import KEY_PREFIX, DeletionRequest, ManifestEntry, ManifestError, MetadataDbVariables
from include.pruning import record_copies

pytestmark = pytest.mark.slow

DAG_FILE = REPO_ROOT / "dags" / "prune.py"
NOW = datetime.now(UTC).replace(microsecond=0)
LATER = (NOW + timedelta(days=30)).isoformat()
FOLDER = "BLS-00564_dyparkinson"
SCAN = f"{FOLDER}/20230224_132553_sea_shell.h5"
REC = f"{FOLDER}/rec20230224_132553_sea_shell"


@pytest.fixture(scope="module")
def prune_dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    started = time.monotonic()
    bag = DagBag(dag_folder=str(DAG_FILE))
    assert not bag.import_errors, bag.import_errors
    assert time.monotonic() - started < 5  # the DAG file parses fast (no SDK imports at top level)
    return bag.get_dag("prune")


@pytest.fixture
def store(airflow_db):
    store = MetadataDbVariables()
    for key in store.keys(KEY_PREFIX):
        store.delete(key)
    yield store
    for key in store.keys(KEY_PREFIX):
        store.delete(key)


def put(local_endpoints, endpoint: str, rel: str, payload: bytes) -> Path:
    path = local_endpoints[endpoint].posix_path(rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def put_recon(local_endpoints, endpoint: str, rows: int = 3) -> Path:
    for row in range(rows):
        put(local_endpoints, endpoint, f"{REC}/20230224_132553_sea_shell_{row:05d}.tiff", os.urandom(512 + row))
    return local_endpoints[endpoint].posix_path(REC)


@pytest.fixture
def scene(facility, store, local_endpoints):
    """The copies of one scan after new_832_file, ALCF and NERSC ran, and their deletion entries."""
    scan = os.urandom(4096)
    files = {
        "spot832": put(local_endpoints, "spot832", f"raw/{SCAN}", scan),
        "data832": put(local_endpoints, "data832", f"raw/{SCAN}", scan),
        "nersc832": put(local_endpoints, "nersc832", f"raw/{SCAN}", scan),
        "alcf_raw": put(local_endpoints, "alcf832_raw", SCAN, scan),
        "alcf_scratch": put_recon(local_endpoints, "alcf832_scratch"),
        "pscratch": put_recon(local_endpoints, "nersc832_alsdev_pscratch_scratch"),
        "pscratch_raw_nocheck": put(local_endpoints, "nersc832_alsdev_pscratch_raw", f"{FOLDER}/lonely.h5", b"x" * 10),
        "alcf_raw_bad_copy": put(local_endpoints, "alcf832_raw", f"{FOLDER}/other.h5", b"y" * 100),
    }
    put(local_endpoints, "data832_raw", f"{FOLDER}/other.h5", b"y" * 99)  # a truncated check copy
    # the check copies of the recon folders: data832_scratch (brought back from both centres)
    for row in range(3):
        src = local_endpoints["alcf832_scratch"].posix_path(f"{REC}/20230224_132553_sea_shell_{row:05d}.tiff")
        put(local_endpoints, "data832_scratch", f"{REC}/{src.name}", src.read_bytes())
    for row in range(3):  # pscratch's folder was archived to nersc832_alsdev_scratch (same bytes)
        src = local_endpoints["nersc832_alsdev_pscratch_scratch"].posix_path(
            f"{REC}/20230224_132553_sea_shell_{row:05d}.tiff"
        )
        put(local_endpoints, "nersc832_alsdev_scratch", f"{REC}/{src.name}", src.read_bytes())

    hook = GlobusTransferHook()

    def schedule_deletion(**args):
        """As a pipeline's finish: record what the target holds right after the copy, then schedule."""
        [(_, record)] = record_copies(hook, [DeletionRequest(args["endpoint"], args["path"], "-", "-")])
        return manifests.schedule_deletion(**args, record=record)

    run = {"dag_id": "new_832_file", "run_id": "scheduled__test", "now": NOW, "store": store}
    entries = {
        "spot832": schedule_deletion(
            endpoint="spot832", path=f"raw/{SCAN}", check_endpoint="data832", location="spot832", **run
        ),
        "data832": schedule_deletion(
            endpoint="data832", path=f"raw/{SCAN}", check_endpoint="nersc832", location="data832", **run
        ),
        "alcf_raw": schedule_deletion(
            endpoint="alcf832_raw", path=SCAN, check_endpoint="data832_raw", location="alcf", **run
        ),
        "alcf_scratch": schedule_deletion(
            endpoint="alcf832_scratch", path=REC, check_endpoint="data832_scratch", location="alcf", **run
        ),
        "pscratch": schedule_deletion(
            endpoint="nersc832_alsdev_pscratch_scratch",
            path=REC,
            check_endpoint="nersc832_alsdev_scratch",
            location="nersc_pscratch",
            **run,
        ),
        "pscratch_raw_nocheck": schedule_deletion(
            endpoint="nersc832_alsdev_pscratch_raw",
            path=f"{FOLDER}/lonely.h5",
            check_endpoint="nersc832_alsdev_raw",
            location="nersc_pscratch",
            **run,
        ),
        "alcf_raw_bad_copy": schedule_deletion(
            endpoint="alcf832_raw", path=f"{FOLDER}/other.h5", check_endpoint="data832_raw", location="alcf", **run
        ),
    }
    with pytest.raises(ManifestError, match="never pruned"):
        manifests.schedule_deletion(
            endpoint="nersc832", path=f"raw/{SCAN}", check_endpoint="data832", location="data832", record=None, **run
        )
    # an entry edited by hand in the Variables UI to point at the long-term copy: prune must refuse it
    forged = ManifestEntry(
        key=f"{KEY_PREFIX}{NOW:%Y%m%d}/forged",
        endpoint="nersc832",
        path=f"raw/{SCAN}",
        check_endpoint="data832",
        location="data832",
        not_before=NOW,
        dag_id="someone",
        run_id="by-hand",
    )
    store.set(forged.key, forged.to_json())
    entries["forged"] = forged
    return files, entries


def run_prune(dag, **conf):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    # dag.test keeps the previous run's conf in the DAG's params: always pass dry_run explicitly
    dag_run = dag.test(run_conf={"dry_run": False, **conf})
    with create_session() as session:
        tis = dag_run.get_task_instances(session=session)
        states = {ti.task_id: ti.state for ti in tis}
        run_prune.tries = {ti.task_id: ti.try_number for ti in tis}
        raw = session.scalar(
            select(XComModel.value).where(
                XComModel.dag_id == "prune",
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == "prune_manifests",
                XComModel.key == "return_value",
            )
        )
    report = json.loads(raw) if isinstance(raw, str) else raw
    return states, report


def remaining(store) -> set[str]:
    return set(store.keys(KEY_PREFIX))


def test_dry_run_deletes_nothing_and_keeps_every_entry(prune_dag, scene, store, facility):
    files, _ = scene
    before = remaining(store)
    states, report = run_prune(prune_dag, dry_run=True, as_of=LATER)
    assert states == {"prune_manifests": "success"}
    assert all(path.exists() for path in files.values())
    assert remaining(store) == before
    assert facility.stats().get("delete.submit", 0) == 0
    assert report["to_delete_count"] == 5 and report["kept"] == 3


def test_prune_deletes_verified_copies_and_keeps_the_rest(prune_dag, scene, store, facility, local_endpoints):
    files, entries = scene
    states, report = run_prune(prune_dag, as_of=LATER)
    assert states == {"prune_manifests": "success"}
    for name in ("spot832", "data832", "alcf_raw", "alcf_scratch", "pscratch"):
        assert not files[name].exists(), name
    # the long-term copy and every copy whose check failed are still there
    assert files["nersc832"].exists()
    assert files["pscratch_raw_nocheck"].exists() and files["alcf_raw_bad_copy"].exists()
    assert local_endpoints["data832_scratch"].posix_path(REC).is_dir()
    assert remaining(store) == {
        entries["pscratch_raw_nocheck"].key,
        entries["alcf_raw_bad_copy"].key,
        entries["forged"].key,
    }
    assert report["deleted"] == 5 and report["kept"] == 3
    assert report["bytes_freed"] == 3 * 4096 + 2 * sum(512 + row for row in range(3))
    assert report["kept_reasons"] == {"check copy missing": 1, "size differs": 1, "refused": 1}
    assert any("other.h5 has 99 bytes" in line for line in report["kept_examples"])
    # one delete task per endpoint (5 endpoints, one batch each)
    assert facility.stats()["delete.task_created"] == 5
    # nothing is due before its retention has passed: a run as of now deletes nothing more
    states, report = run_prune(prune_dag, as_of=NOW.isoformat())
    assert report["deleted"] == 0 and facility.stats()["delete.task_created"] == 5


def test_a_crash_between_delete_and_manifest_update_is_harmless(prune_dag, scene, store, facility):
    """The delete ran but the entry stayed (the worker died): the next run just drops the entry."""

    files, entries = scene
    hook = GlobusTransferHook()
    result = hook.submit_delete(
        "alcf832_raw", [SCAN], submission_id=hook.new_submission_id(), label="crashed prune", recursive=True
    )
    for _ in range(100):
        if hook.get_task(result["task_id"])["status"] == "SUCCEEDED":
            break
        time.sleep(0.1)
    assert not files["alcf_raw"].exists()
    assert entries["alcf_raw"].key in remaining(store)
    states, report = run_prune(prune_dag, as_of=LATER)
    assert states == {"prune_manifests": "success"}
    assert report["already_absent"] == 1 and report["deleted"] == 4
    assert entries["alcf_raw"].key not in remaining(store)


def test_a_failed_delete_task_keeps_its_entries_and_fails_the_run(prune_dag, scene, store, facility, monkeypatch):
    files, entries = scene
    task = prune_dag.get_task("prune_manifests")
    monkeypatch.setattr(task, "retries", 1)
    monkeypatch.setattr(task, "retry_delay", timedelta(seconds=1))
    # content verified (tested on its own): the fault must hit the delete task, not the checksum sync before it
    monkeypatch.setattr(GlobusChecksumSync, "differing", lambda self, pairs: {})
    facility.inject("transfer", "permission_denied", match=re.escape(REC), times=1)
    states, _ = run_prune(prune_dag, as_of=LATER)
    assert states == {"prune_manifests": "failed"}
    # the failed batch's entries stay; the other batches' entries are gone with their paths
    assert entries["alcf_scratch"].key in remaining(store) or entries["pscratch"].key in remaining(store)
    assert entries["spot832"].key not in remaining(store) and not files["spot832"].exists()
    assert files["nersc832"].exists()
    # the retry re-attached to the plan: no second submission of any batch
    assert run_prune.tries == {"prune_manifests": 2}
    assert facility.stats()["delete.submit"] == 5


def test_unknown_conf_and_bad_params_are_refused(prune_dag, store):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        prune_dag.test(run_conf={"dry_run": "yes"})
    started = time.monotonic()
    states, report = run_prune(prune_dag, dry_run=True, purge_everything=True)
    assert states == {"prune_manifests": "failed"} and report is None
    assert run_prune.tries == {"prune_manifests": 1}  # bad input fails at once, no retry
    assert time.monotonic() - started < 60
