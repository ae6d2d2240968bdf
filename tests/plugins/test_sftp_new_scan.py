"""SFTPNewScanTrigger and SFTPNewScanSensor against a real SFTP server (asyncssh) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from als_provider.sensors.sftp_new_scan import SFTPNewScanSensor
from als_provider.triggers.sftp_new_scan import SFTPNewScanTrigger
from dags.pipelines.params import new_scan_params
from facility.sftp_server import SFTPServer
from include.paths import Scan, scan_run_id

DISPATCHER = "bl832_dispatcher"

PASSWORD = "test-only-sftp-password"
FOLDER = "BLS-00564_dyparkinson"


def write_scan(path: Path, *, libver: str = "earliest") -> bytes:
    """A small Data Exchange scan written by h5py; returns its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", libver=libver) as h5:
        h5["exchange/data"] = np.arange(20 * 4 * 32, dtype="u2").reshape(20, 4, 32)
        h5["exchange/theta"] = np.linspace(0, 180, 20)
    return path.read_bytes()


@pytest.fixture
def server(tmp_path):
    with SFTPServer(tmp_path / "spot832", password=PASSWORD) as running:
        yield running


def use_connection(monkeypatch, server: SFTPServer, *, password: str = PASSWORD, host_key: str | None = None) -> None:
    extra = {"host_key": host_key or server.host_key}
    conn = {"conn_type": "sftp", "host": "127.0.0.1", "port": server.port, "login": "spot832", "password": password}
    monkeypatch.setenv("AIRFLOW_CONN_SFTP_SPOT832", json.dumps({**conn, "extra": extra}))


def first_event(trigger: SFTPNewScanTrigger, timeout: float = 60) -> dict:
    async def run() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    return asyncio.run(asyncio.wait_for(run(), timeout))


def test_serialize_round_trips():
    trigger = SFTPNewScanTrigger(
        dispatch_dag_id=DISPATCHER, raw_root="/raw", stable_polls=4, poll_interval=2.5, lookback=None, max_scans=3
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "als_provider.triggers.sftp_new_scan.SFTPNewScanTrigger"
    assert SFTPNewScanTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_fires_with_the_finished_scans_only(server, monkeypatch):
    use_connection(monkeypatch, server)
    raw = server.root / "global" / "raw"
    complete = write_scan(raw / FOLDER / "20230224_132553_sea_shell.h5")
    write_scan(raw / FOLDER / "20230224_140000_latest.h5", libver="latest")
    (raw / FOLDER / "20230224_150000_half.h5").write_bytes(complete[: len(complete) // 2])
    (raw / FOLDER / "20230224_160000_not_hdf5.h5").write_bytes(os.urandom(len(complete)))
    (raw / FOLDER / "notes.txt").write_text("not a scan")
    write_scan(raw / "scratch" / "20230224_132553_sea_shell.h5")
    write_scan(raw / FOLDER / "nested" / "20230224_132553_sea_shell.h5")

    event = first_event(SFTPNewScanTrigger(dispatch_dag_id=DISPATCHER, poll_interval=0.2, stable_polls=2))

    assert event["status"] == "success"
    assert [found["scan"] for found in event["scans"]] == [
        f"{FOLDER}/20230224_132553_sea_shell.h5",
        f"{FOLDER}/20230224_140000_latest.h5",
    ]
    first = event["scans"][0]
    assert first["size"] == len(complete)
    assert first["run_id"] == scan_run_id(Scan(FOLDER, "20230224_132553_sea_shell.h5"))
    assert "h5py opens it" in first["checks"]


def test_a_scan_is_not_finished_before_it_is_stable(server, monkeypatch):
    """Size and mtime must be unchanged for stable_polls listings: with a long interval, the first fires late."""
    use_connection(monkeypatch, server)
    write_scan(server.root / "global" / "raw" / FOLDER / "20230224_132553_sea_shell.h5")

    async def run() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        async for _ in SFTPNewScanTrigger(dispatch_dag_id=DISPATCHER, poll_interval=0.5, stable_polls=4).run():
            return loop.time() - start
        raise AssertionError("no event")

    assert asyncio.run(run()) >= 3 * 0.5


def test_bad_credentials_fail_clearly_without_the_secret(server, monkeypatch):
    secret = "wrong-and-secret-password-123"
    use_connection(monkeypatch, server, password=secret)
    event = first_event(SFTPNewScanTrigger(dispatch_dag_id=DISPATCHER, poll_interval=0.2, stable_polls=2))
    assert event["status"] == "error"
    assert "authentication failed" in event["message"]
    assert "spot832@127.0.0.1" in event["message"]
    assert secret not in event["message"]
    assert server.counters.get("auth_failed", 0) >= 1


def test_an_unknown_host_key_is_refused(server, monkeypatch):
    other = SFTPServer(server.root, password=PASSWORD)  # never started: only its host key is used
    use_connection(monkeypatch, server, host_key=other.host_key)
    event = first_event(SFTPNewScanTrigger(dispatch_dag_id=DISPATCHER, poll_interval=0.2, stable_polls=2))
    assert event["status"] == "error"
    assert "host key" in event["message"]
    assert server.counters.get("auth_ok", 0) == 0


def test_a_missing_raw_root_fails(server, monkeypatch):
    use_connection(monkeypatch, server)
    event = first_event(
        SFTPNewScanTrigger(dispatch_dag_id=DISPATCHER, raw_root="/nowhere", poll_interval=0.2, stable_polls=2)
    )
    assert event == {
        "status": "error",
        "message": f"SFTP spot832@127.0.0.1:{server.port} (sftp_spot832): raw root /nowhere does not exist",
    }


def test_sensor_turns_scans_into_dispatcher_runs_with_exactly_its_params():
    sensor = SFTPNewScanSensor(
        task_id="watch", dispatch_dag_id=DISPATCHER, is_export_controlled="False", send_to_nersc="True"
    )
    scan = Scan(FOLDER, "20230224_132553_sea_shell.h5")
    found = {"scan": str(scan), "run_id": scan_run_id(scan), "size": 10, "mtime": 0, "checks": "ok"}
    found["export_controlled"] = False  # a released folder (issue 26: an unknown one is held)

    class _Dag:
        dag_id = "bl832_watch_spot832"

    [request] = sensor.execute_complete({"dag": _Dag()}, {"status": "success", "scans": [found]})

    assert request["trigger_run_id"] == scan_run_id(scan)
    assert request["conf"] == {
        "file_path": f"/global/raw/{FOLDER}/20230224_132553_sea_shell.h5",
        "is_export_controlled": False,
        "send_to_nersc": True,
    }
    assert set(request["conf"]) == set(new_scan_params())
    assert str(scan) in request["note"]


def test_sensor_raises_the_trigger_message():
    sensor = SFTPNewScanSensor(task_id="watch", dispatch_dag_id=DISPATCHER)
    with pytest.raises(RuntimeError, match="authentication failed"):
        sensor.execute_complete({}, {"status": "error", "message": "SFTP x: authentication failed"})


def test_the_watcher_refuses_unknown_conf_keys(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from include.endpoints import REPO_ROOT

    dag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "bl832_watch_spot832.py")).get_dag("bl832_watch_spot832")
    dag_run = dag.test(run_conf={"poll_interval": 0.5, "stable_polll": 3})
    assert dag_run.state == "failed"
    assert {ti.task_id: ti.state for ti in dag_run.get_task_instances()}["watch"] == "failed"
