"""Issue 26 finding 1 on the local facility: export control is a property of the scan, not of one run.

After an export-controlled run, no route moves the scan off site: running a skipped off-site task of that run
(as ``airflow tasks test`` does, the code a Clear reaches too), a re-dispatch or a new-scan run without the
flag, the reconstruction DAGs of the off-site sites; no SciCat step runs; on-site results are 2770/660.
"""

from __future__ import annotations

import argparse
import stat
import uuid

import pytest

from tests.dags.dag_helpers import load_dag, states, write_scan

pytestmark = [pytest.mark.usefixtures("airflow_db"), pytest.mark.slow]

OFFSITE = ("nersc832", "nersc832_alsdev_raw", "alcf832_raw", "olcf832_raw", "nersc832_alsdev_pscratch_raw")


def new_scan(local_endpoints) -> tuple[str, str]:
    token = uuid.uuid4()
    folder, name = f"BLS-{token.int % 10**5:05d}_ec{token.hex[:8]}", "20261122_101500_phantom.h5"
    write_scan(local_endpoints, "spot832", f"raw/{folder}/{name}")
    return f"/global/raw/{folder}/{name}", f"{folder}/{name}"


def nowhere_off_site(local_endpoints, scan: str) -> None:
    for endpoint in OFFSITE:
        for relative in (scan, f"raw/{scan}"):
            assert not local_endpoints[endpoint].posix_path(relative).exists(), f"{endpoint}:{relative}"


def run_task_test(dag, task_id: str, run_id: str, file_path: str):
    """``airflow tasks test <dag> <task> <run_id> -t '{"file_path": ...}'``, in this process (the CLI's own
    function; the DAG's Params need a file_path)."""
    import json

    from airflow.cli.commands.task_command import task_test
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    args = argparse.Namespace(
        dag_id=dag.dag_id,
        task_id=task_id,
        logical_date_or_run_id=run_id,
        map_index=-1,
        task_params=json.dumps({"file_path": file_path}),
        env_vars=None,
        post_mortem=False,
        bundle_name=None,
    )
    try:
        task_test(args, dag=dag)
    except Exception as exc:  # the CLI prints it and exits non-zero
        print(f"tasks test {task_id}: {exc}")
    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, task_id=task_id, run_id=run_id).one()
        return ti.state


def test_i26_finding_1_skipped_offsite_tasks_of_an_export_controlled_run_move_nothing(
    facility, local_endpoints, capsys
):
    file_path, scan = new_scan(local_endpoints)
    folder, name = scan.split("/")
    dag = load_dag("bl832_dispatcher")
    run = dag.test(run_conf={"file_path": file_path, "is_export_controlled": True})
    assert run.state == "success", states(run)
    ran = states(run)
    assert ran["new_file.scicat_ingest"] == "skipped" and ran["local.scicat_derived"] == "skipped"  # no SciCat
    results = local_endpoints["data832_scratch"].posix_path(f"{folder}/local")
    tree = [*(results / f"rec{name[:-3]}").rglob("*"), *(results / f"rec{name[:-3]}.zarr").rglob("*")]
    assert any(p.suffix == ".tiff" for p in tree) and any(p.name == "preview.png" for p in tree)  # written
    assert {stat.S_IMODE(p.stat().st_mode) for p in [results, *results.rglob("*")] if p.is_dir()} == {0o2770}
    assert {stat.S_IMODE(p.stat().st_mode) for p in results.rglob("*") if p.is_file()} == {0o660}
    before = facility.stats()

    for task_id in ("new_file.data832_to_nersc832", "alcf.stage_raw", "olcf.stage_raw"):
        assert run_task_test(dag, task_id, run.run_id, file_path) == "failed", task_id
    out = capsys.readouterr().out
    assert out.count(f"{folder}/{name[:-3]} is export-controlled") >= 3, out[-3000:]
    for task_id in ("alcf.reconstruct", "nersc.reconstruct"):  # no plan for them in this run: nothing to submit
        assert run_task_test(dag, task_id, run.run_id, file_path) in ("failed", "up_for_retry"), task_id
    for task_id in ("new_file.scicat_ingest", "local.scicat_derived"):
        assert run_task_test(dag, task_id, run.run_id, file_path) == "skipped", task_id

    after = facility.stats()
    for counter in ("transfer.task_created", "compute.submit", "sfapi.submit", "scicat.dataset_created"):
        assert after.get(counter, 0) == before.get(counter, 0), counter
    assert after.get("scicat.dataset_created", 0) == 0
    nowhere_off_site(local_endpoints, scan)


def test_i26_finding_1_no_later_run_or_site_dag_takes_a_recorded_scan_off_site(facility, local_endpoints):
    file_path, scan = new_scan(local_endpoints)
    folder, name = scan.split("/")
    first = load_dag("bl832_new_file").test(run_conf={"file_path": file_path, "is_export_control": True})
    assert first.state == "success", states(first)

    # a re-dispatch without the flag (as the watcher's old default sent): stays on site, results private
    again = load_dag("bl832_dispatcher").test(run_conf={"file_path": file_path, "is_export_controlled": False})
    assert again.state == "success", states(again)
    skipped = again.get_task_instance("plan").xcom_pull(task_ids="plan", key="skipped")
    assert all("export-controlled" in skipped[site] for site in ("alcf", "nersc")), skipped
    assert states(again)["new_file.data832_to_nersc832"] == "skipped"
    tiffs = local_endpoints["data832_scratch"].posix_path(f"{folder}/local/rec{name[:-3]}")
    assert {stat.S_IMODE(p.stat().st_mode) for p in tiffs.glob("*.tiff")} == {0o660}
    assert stat.S_IMODE(tiffs.stat().st_mode) == 0o2770

    # the new-scan DAG again without the flag
    plain = load_dag("bl832_new_file").test(run_conf={"file_path": file_path})
    assert plain.state == "success", states(plain)
    assert states(plain)["data832_to_nersc832"] == "skipped" and states(plain)["scicat_ingest"] == "skipped"

    # every off-site site's own DAG refuses in plan, naming the scan
    for site in ("alcf", "olcf", "nersc"):
        run = load_dag(f"bl832_{site}_recon", "bl832_recon.py").test(run_conf={"file_path": file_path})
        assert run.state == "failed", site
        assert states(run)["plan"] == "failed", (site, states(run))
        moved = {t: state for t, state in states(run).items() if t not in ("plan", "finish")}
        assert all(state in ("upstream_failed", "skipped", None) for state in moved.values()), moved

    # the on-site site's own DAG runs it, with no SciCat step
    local = load_dag("bl832_local_recon", "bl832_recon.py").test(run_conf={"file_path": file_path})
    assert local.state == "success", states(local)
    assert states(local)["scicat_derived"] == "skipped"

    stats = facility.stats()
    assert stats.get("sfapi.submit", 0) == 0 and stats.get("scicat.dataset_created", 0) == 0
    nowhere_off_site(local_endpoints, scan)


def test_i26_finding_1_the_watcher_holds_unknown_folders_and_records_controlled_ones():
    from als_provider.sensors.sftp_new_scan import SFTPNewScanSensor
    from include.export_control import find_controlled, update_folders
    from include.paths import Scan, scan_run_id

    token = uuid.uuid4().hex[:8]
    held, controlled, released = (Scan(f"BLS-0000{i}_w{token}", "20261122_101500_a.h5") for i in (1, 2, 3))
    update_folders(control=[controlled.folder], release=[released.folder])
    sensor = SFTPNewScanSensor(task_id="watch", dispatch_dag_id="bl832_dispatcher")
    policy = sensor.folder_list()
    trigger = sensor.make_trigger(policy)
    assert [trigger._status(s) for s in (held, controlled, released)] == [None, True, False]
    assert trigger._holds("/raw/x", held) and not trigger._holds("/raw/y", controlled)

    class _Dag:
        dag_id = "bl832_watch_spot832"

    found = [
        {"scan": str(s), "run_id": scan_run_id(s), "size": 1, "mtime": 0, "checks": "ok", "export_controlled": status}
        for s, status in ((held, None), (controlled, True), (released, False))
    ]
    requests = sensor.execute_complete({"dag": _Dag()}, {"status": "success", "scans": found})
    assert [r["conf"]["is_export_controlled"] for r in requests] == [True, False]  # the unknown one is held
    assert [r["trigger_run_id"] for r in requests] == [scan_run_id(controlled), scan_run_id(released)]
    assert find_controlled(str(controlled)) and not find_controlled(str(released))


def test_i26_finding_1_a_scan_recorded_later_is_refused_by_every_offsite_operator_of_an_earlier_run(
    facility, local_endpoints, capsys
):
    """An open run of a scan, then the scan is recorded export-controlled: re-running that run's off-site
    tasks (Transfer, Compute, SFAPI, SciCat; their arguments come from its plan) moves nothing."""
    file_path, scan = new_scan(local_endpoints)
    folder, name = scan.split("/")
    dag = load_dag("bl832_dispatcher")
    open_run = dag.test(run_conf={"file_path": file_path})
    assert open_run.state == "success", states(open_run)
    recorded = load_dag("bl832_new_file").test(run_conf={"file_path": file_path, "is_export_controlled": True})
    assert recorded.state == "success", states(recorded)
    capsys.readouterr()
    before = facility.stats()
    refused = ("new_file.data832_to_nersc832", "alcf.stage_raw", "alcf.reconstruct", "nersc.reconstruct")
    for task_id in (*refused, "nersc.copy_tiff"):
        assert run_task_test(dag, task_id, open_run.run_id, file_path) == "failed", task_id
    for task_id in ("new_file.scicat_ingest", "alcf.scicat_derived"):
        assert run_task_test(dag, task_id, open_run.run_id, file_path) == "skipped", task_id
    out = capsys.readouterr().out
    for task_id in refused:
        assert f"{task_id}: refused: {folder}/{name[:-3]} is export-controlled (Variable als_export_control/" in out
    after = facility.stats()
    for counter in ("transfer.task_created", "compute.submit", "sfapi.submit", "scicat.dataset_created"):
        assert after.get(counter, 0) == before.get(counter, 0), counter


def test_i26_finding_1_the_catch_up_owes_nothing_for_an_export_controlled_scan(facility):
    """A registration recorded as owed before the scan was recorded export-controlled is dropped, never sent."""
    from include.catalogue_backlog import KEY_PREFIX, OwedRegistration, record, settle
    from include.export_control import mark_controlled
    from include.manifests import MetadataDbVariables
    from include.paths import Scan

    store = MetadataDbVariables()
    settle(store.keys(KEY_PREFIX), store=store)  # this test's entries only
    scan = Scan(f"BLS-00001_c{uuid.uuid4().hex[:8]}", "20261122_101500_phantom.h5")
    mark_controlled(scan, source="test")
    file_path = f"/global/raw/{scan}"
    keys = record(
        [
            OwedRegistration("raw", {"file_path": file_path}, "bl832_dispatcher", "r1", "new_file.scicat_ingest"),
            OwedRegistration(
                "derived",
                {"file_path": file_path, "results_folder": f"{scan.folder}/local", "site": "local"},
                "bl832_dispatcher",
                "r1",
                "local.scicat_derived",
            ),
        ],
        store=store,
    )
    run = load_dag("scicat_catchup").test()
    assert run.state == "success", states(run)
    assert not set(keys) & set(store.keys(KEY_PREFIX))
    assert facility.stats().get("scicat.dataset_created", 0) == 0
