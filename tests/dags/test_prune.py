"""The prune DAG end to end: real Airflow (dag.test, metadata DB), real globus-sdk, the local facility."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from als_provider.hooks.globus_transfer import GlobusTransferHook
from als_provider.operators.globus_delete import PruneManifestsOperator
from include import manifests
from include.endpoints import REPO_ROOT
from include.manifests import KEY_PREFIX, DeletionRequest, ManifestError
from include.pruning import record_copies

pytestmark = pytest.mark.slow

DAG_FILE = REPO_ROOT / "dags" / "prune.py"
NOW = datetime.now(UTC).replace(microsecond=0)
#: The copies were made (and their deletions scheduled) 30 days ago: prune never acts on a future as_of.
SCHEDULED = NOW - timedelta(days=30)
LATER = NOW.isoformat()
FOLDER = "BLS-00564_dyparkinson"
SCAN = f"{FOLDER}/20230224_132553_sea_shell.h5"
REC = f"{FOLDER}/rec20230224_132553_sea_shell"


#: The retention these tests' timelines were written for (the defaults before issue 22; the defaults now are
#: upstream's, tests/dags/test_prune_upstream_retention.py): they test how prune acts, not the numbers.
RETENTION = {"spot832": 0, "data832": 3, "alcf": 2, "data832_scratch": 3, "nersc_pscratch": 7}


@pytest.fixture(autouse=True)
def retention(store):
    saved = store.get(manifests.RETENTION_VARIABLE)
    store.set(manifests.RETENTION_VARIABLE, json.dumps({**json.loads(saved), **RETENTION}))
    yield
    store.set(manifests.RETENTION_VARIABLE, saved)


@pytest.fixture(scope="module")
def prune_dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    started = time.monotonic()
    bag = DagBag(dag_folder=str(DAG_FILE))
    assert not bag.import_errors, bag.import_errors
    assert time.monotonic() - started < 5  # the DAG file parses fast (no SDK imports at top level)
    return bag.get_dag("prune")


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

    run = {"dag_id": "new_832_file", "run_id": "scheduled__test", "now": SCHEDULED, "store": store}
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
    # an entry edited or forged in the Variables UI is refused and fails the run: tests/dags/test_prune_trust.py
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


def _delete_tasks() -> list[dict]:
    return list(GlobusTransferHook().client.task_list(limit=1000, filter="type:DELETE"))


@pytest.fixture(autouse=True)
def test_started(facility_session):
    """The delete tasks that exist before this test (the facility keeps every task of the session; a time
    filter miscounts a task the previous test created within the same second)."""
    delete_tasks.earlier = {t["task_id"] for t in _delete_tasks()}


def delete_tasks(kind: str) -> list[dict]:
    """This test's delete tasks of prune's ``batch`` deletes or side-folder ``cleanup`` (by label)."""
    return [t for t in _delete_tasks() if f" {kind}" in (t["label"] or "") and t["task_id"] not in delete_tasks.earlier]


def side_folders(local_endpoints) -> list[Path]:
    roots = {local_endpoints[name].posix_root for name in ("spot832", "data832", "alcf832_raw", "alcf832_scratch",
             "nersc832_alsdev_pscratch_scratch")}  # fmt: skip
    return [p for root in roots for p in root.rglob(".als-verify/*")]


def md5s(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def test_dry_run_deletes_nothing_and_keeps_every_entry(prune_dag, scene, store, facility):
    files, _ = scene
    before = remaining(store)
    states, report = run_prune(prune_dag, dry_run=True, as_of=LATER)
    assert states == {"prune_manifests": "success"}
    assert all(path.exists() for path in files.values())
    assert remaining(store) == before
    assert facility.stats().get("delete.submit", 0) == 0
    assert report["to_delete_count"] == 5 and report["kept"] == 2


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
    }
    assert report["deleted"] == 5 and report["kept"] == 2
    assert report["bytes_freed"] == 3 * 4096 + 2 * sum(512 + row for row in range(3))
    assert report["kept_reasons"] == {"check copy missing": 1, "size differs": 1}
    assert any("other.h5 has 99 bytes" in line for line in report["kept_examples"])
    # one delete task per endpoint (5 endpoints, one batch each); the side folders went too
    assert len(delete_tasks("batch")) == 5 and len(delete_tasks("cleanup")) == report["cleanup_tasks"] == 5
    assert not side_folders(local_endpoints)
    # nothing is due before its retention has passed: a run as of the scheduling time deletes nothing more
    states, report = run_prune(prune_dag, as_of=SCHEDULED.isoformat())
    assert report["deleted"] == 0 and len(delete_tasks("batch")) == 5


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
    # the fault must hit a delete task, not the content comparison before it: injected once the deletes are planned
    to_delete = PruneManifestsOperator._to_delete

    def fault_then_delete(self, *args, **kwargs):
        facility.inject("transfer", "permission_denied", match=re.escape(REC), times=1)
        return to_delete(self, *args, **kwargs)

    monkeypatch.setattr(PruneManifestsOperator, "_to_delete", fault_then_delete)
    states, _ = run_prune(prune_dag, as_of=LATER)
    assert states == {"prune_manifests": "failed"}
    # the failed batch's entries stay; the other batches' entries are gone with their paths
    assert entries["alcf_scratch"].key in remaining(store) or entries["pscratch"].key in remaining(store)
    assert entries["spot832"].key not in remaining(store) and not files["spot832"].exists()
    assert files["nersc832"].exists()
    # the retry re-attached to the plan: no second submission of any batch
    assert run_prune.tries == {"prune_manifests": 2}
    assert len(delete_tasks("batch")) == 5


def test_unknown_conf_and_bad_params_are_refused(prune_dag, store):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        prune_dag.test(run_conf={"dry_run": "yes"})
    started = time.monotonic()
    states, report = run_prune(prune_dag, dry_run=True, purge_everything=True)
    assert states == {"prune_manifests": "failed"} and report is None
    assert run_prune.tries == {"prune_manifests": 1}  # bad input fails at once, no retry
    assert time.monotonic() - started < 60


# -- issue 21 ----------------------------------------------------------------------------------------------
ROT_SCAN = "BLS-00021_i21/20261201_000000_rot.h5"
T0 = NOW - timedelta(days=10)  # when the scan was copied: spot832 due at T0, data832 at T0 + 3 days


@pytest.fixture
def rot_scene(facility, store, local_endpoints, monkeypatch, prune_dag):
    """One scan on spot832, data832 and nersc832 (same bytes), the spot832 and data832 deletions scheduled at
    T0 as new_832_file's finish schedules them; failures are not retried (each prune is one try)."""
    monkeypatch.setattr(prune_dag.get_task("prune_manifests"), "retries", 0)
    scan = os.urandom(8192)
    for endpoint in ("spot832", "data832", "nersc832"):
        put(local_endpoints, endpoint, f"raw/{ROT_SCAN}", scan)
    hook = GlobusTransferHook()
    run = {"dag_id": "new_832_file", "run_id": "scheduled__i21", "now": T0, "store": store}
    keys = {}
    for endpoint, check, location in (("spot832", "data832", "spot832"), ("data832", "nersc832", "data832")):
        request = DeletionRequest(endpoint, f"raw/{ROT_SCAN}", check, location)
        [(_, record)] = record_copies(hook, [request])
        keys[endpoint] = manifests.schedule_deletion(
            endpoint=endpoint, path=f"raw/{ROT_SCAN}", check_endpoint=check, location=location, record=record, **run
        ).key
    return {e: local_endpoints[e].posix_path(f"raw/{ROT_SCAN}") for e in ("spot832", "data832", "nersc832")}, keys


def rot(path: Path) -> None:
    """Bit rot: other bytes, the same size and modification time (a listing cannot tell)."""
    info = path.stat()
    path.write_bytes(os.urandom(info.st_size))
    os.utime(path, (info.st_atime, info.st_mtime))


def test_i21_finding_1_a_rotten_copy_never_overwrites_the_long_term_copy(prune_dag, rot_scene, store, local_endpoints):
    """Found 1: spot832 pruned against data832; data832 rots (same size and mtime); the prune at +3 days synced
    data832 -> nersc832 raw/ ("repairing" the long-term copy from the rotten one) and the next prune deleted
    data832: only the corrupt copy remained, every run green. Now both copies stay and the run fails."""
    files, keys = rot_scene
    states, report = run_prune(prune_dag, as_of=(T0 + timedelta(hours=1)).isoformat())
    assert states == {"prune_manifests": "success"} and report["deleted"] == 1
    assert not files["spot832"].exists() and remaining(store) == {keys["data832"]}
    rot(files["data832"])
    rotten = files["data832"].read_bytes()
    nersc_raw = local_endpoints["nersc832"].posix_path("raw")
    before = md5s(nersc_raw)
    for as_of in ((T0 + timedelta(days=3, hours=1)).isoformat(), LATER):  # at +3 days, then again a day later
        states, report = run_prune(prune_dag, as_of=as_of)
        assert states == {"prune_manifests": "failed"}  # loudly: the DAG's failure notification sends mail
        assert md5s(nersc_raw) == before  # the long-term copy keeps its original content
        assert files["data832"].read_bytes() == rotten  # kept (and never "repaired" either)
        assert remaining(store) == {keys["data832"]}
    assert not side_folders(local_endpoints)


def test_i21_finding_1_the_failure_names_the_differing_pair(rot_scene, local_endpoints, monkeypatch):
    """The run's error names the entry whose copies differ (the text the failure mail carries)."""
    from airflow.sdk.exceptions import TaskDeferred

    from als_provider.triggers.inline import first_event

    files, keys = rot_scene
    rot(files["nersc832"])  # the long-term copy rots this time: data832 still holds the original
    before = md5s(local_endpoints["data832"].posix_path("raw")), md5s(local_endpoints["nersc832"].posix_path("raw"))
    operator = PruneManifestsOperator(task_id="prune_manifests", poll_interval=0.1)
    monkeypatch.setattr(operator, "_items", lambda plan: list(manifests.load_entries([keys["data832"]])))
    context = plain_context(as_of=(T0 + timedelta(days=3, hours=1)).isoformat())
    with pytest.raises(
        Exception, match=r"CONTENT DIFFERS .*data832:raw/BLS-00021_i21/20261201_000000_rot\.h5 -> nersc832"
    ):
        event = None
        while True:
            try:
                operator.execute(context) if event is None else operator.execute_complete(context, event)
                break
            except TaskDeferred as deferred:
                event = first_event(deferred.trigger)
    after = md5s(local_endpoints["data832"].posix_path("raw")), md5s(local_endpoints["nersc832"].posix_path("raw"))
    assert after == before and files["data832"].exists()


def plain_context(**params) -> dict:
    from types import SimpleNamespace

    class Store(dict):
        def set(self, key, value):
            self[key] = value

    ti = SimpleNamespace(dag_id="prune", run_id="manual__i21_plain", task_id="prune_manifests", map_index=-1,
                         try_number=1, max_tries=0, task=SimpleNamespace(retries=0))  # fmt: skip
    return {"ti": ti, "task_state_store": Store(), "params": {"dry_run": False, "as_of": None, **params},
            "dag_run": SimpleNamespace(conf={})}  # fmt: skip


def test_i21_finding_2_a_dry_run_changes_nothing_anywhere(prune_dag, rot_scene, store, facility, local_endpoints):
    """Found 2: a dry run ran the same checksum syncs, so a dry run alone turned nersc832 raw/ rotten."""
    files, _ = rot_scene
    rot(files["data832"])
    root = local_endpoints.facility_root
    before, entries = md5s(root), remaining(store)
    states, report = run_prune(prune_dag, dry_run=True, as_of=(T0 + timedelta(days=3, hours=1)).isoformat())
    assert states == {"prune_manifests": "success"}
    assert md5s(root) == before and remaining(store) == entries  # every file of every location, every entry
    stats = facility.stats()
    assert stats.get("transfer.submit", 0) == 0 and stats.get("delete.submit", 0) == 0  # no Globus task at all
    assert report["would_delete"] == [
        f"{e}:raw/{ROT_SCAN} (content not verified (dry run))" for e in ("data832", "spot832")
    ]


def test_i21_finding_10_an_as_of_beyond_now_is_refused(prune_dag, scene, store, facility):
    """Found 10: a prune with a future as_of deleted copies days before their retention ended."""
    from airflow.sdk.exceptions import AirflowFailException

    files, _ = scene
    before = remaining(store)
    future = (NOW + timedelta(days=3)).isoformat()
    states, _ = run_prune(prune_dag, as_of=future)
    assert states == {"prune_manifests": "failed"} and run_prune.tries == {"prune_manifests": 1}  # no retry
    assert all(path.exists() for path in files.values()) and remaining(store) == before
    assert facility.stats().get("transfer.submit", 0) == 0 and facility.stats().get("delete.submit", 0) == 0
    with pytest.raises(AirflowFailException, match=r"^as_of \S+ is in the future .*leave as_of empty"):
        PruneManifestsOperator(task_id="prune_manifests")._params(plain_context(as_of=future))


def test_i21_finding_15_a_retry_checks_again_what_could_not_be_checked(prune_dag, rot_scene, store, facility,
                                                                       monkeypatch, local_endpoints):  # fmt: skip
    """Found 15: a retry resumed the saved plan, so a transient check error was never checked again (the run
    failed on every try). Now a retry checks those entries again; the rest of the plan is not redone."""
    files, _ = rot_scene
    task = prune_dag.get_task("prune_manifests")
    monkeypatch.setattr(task, "retries", 1)
    monkeypatch.setattr(task, "retry_delay", timedelta(seconds=1))
    nersc = GlobusTransferHook().endpoints["nersc832"].uuid
    facility.inject("transfer", status=403, match=f"GET /v0.10/operation/endpoint/{nersc}/ls", times=1,
                    message="transient: endpoint busy")  # fmt: skip
    states, report = run_prune(prune_dag, as_of=LATER)
    assert run_prune.tries == {"prune_manifests": 2} and states == {"prune_manifests": "success"}
    assert not files["spot832"].exists() and not files["data832"].exists() and remaining(store) == set()
    assert (report["rounds"], report["deleted"], report["check_errors"], report["kept"]) == (2, 2, 0, 0)
    assert len(delete_tasks("batch")) == 2  # the first try's batch was not submitted again
    assert files["nersc832"].exists() and not side_folders(local_endpoints)


def test_i21_finding_6_a_raw_copy_an_owed_registration_reads_is_kept_until_it_is_settled(
    prune_dag, rot_scene, store, facility
):
    """Found 6: prune deleted data832 raw after its retention while its SciCat registration was still owed, and
    the catch-up (which reads that copy) failed forever after. Now the copy stays, named, until the
    registration is settled; then it goes like any verified copy."""
    from include import catalogue_backlog

    files, keys = rot_scene
    owed = catalogue_backlog.OwedRegistration(
        "raw", {"file_path": ROT_SCAN, "endpoint": "data832_raw"}, "new_832_file", "scheduled__i21", "scicat_ingest"
    )
    [owed_key] = catalogue_backlog.record([owed], store=store)
    try:
        states, report = run_prune(prune_dag, as_of=LATER)
        assert states == {"prune_manifests": "success"}  # a hold is not an error: it goes once released
        assert files["data832"].exists() and keys["data832"] in remaining(store)
        assert not files["spot832"].exists()  # what the registration does not read goes as usual
        assert any(f"registration owed: {owed_key}" in line for line in report["kept_examples"])
    finally:
        catalogue_backlog.settle([owed_key], store=store)
    states, report = run_prune(prune_dag, as_of=LATER)
    assert states == {"prune_manifests": "success"} and not files["data832"].exists()
    assert files["nersc832"].exists() and remaining(store) == set()
