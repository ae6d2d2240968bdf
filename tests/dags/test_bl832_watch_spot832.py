"""bl832_watch_spot832 end to end (dag.test) against a real SFTP server (asyncssh) on 127.0.0.1.

dag.test() does not run the dispatcher runs it starts (no scheduler): the tests read them from the
metadata database.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncssh
import pytest

from facility.sftp_server import SFTPServer
from include.endpoints import REPO_ROOT
from include.paths import Scan, scan_run_id

pytestmark = pytest.mark.usefixtures("airflow_db")

PASSWORD = "test-only-sftp-password"
FOLDER = "BLS-00564_dyparkinson"
FAST = {"poll_interval": 0.5, "stable_polls": 3}


@pytest.fixture(scope="module")
def spot832(tmp_path_factory):
    """spot832 over SFTP (raw tree at /global/raw), with the sftp_spot832 connection verifying its host key."""
    with (
        SFTPServer(tmp_path_factory.mktemp("spot832"), password=PASSWORD) as server,
        pytest.MonkeyPatch.context() as mp,
    ):
        conn = {"conn_type": "sftp", "host": "127.0.0.1", "port": server.port, "login": "spot832"}
        conn |= {"password": PASSWORD, "extra": {"host_key": server.host_key}}
        mp.setenv("AIRFLOW_CONN_SFTP_SPOT832", json.dumps(conn))
        (server.root / "global" / "raw").mkdir(parents=True)
        from include.export_control import update_folders

        update_folders(release=[FOLDER])  # issue 26: a scan of a folder in neither list is held
        yield server


def scan_bytes(tmp_path: Path, frames: int = 60) -> bytes:
    import h5py
    import numpy as np

    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as h5:
        h5["exchange/data"] = np.random.default_rng(0).integers(0, 4000, (frames, 8, 64), dtype="u2")
        h5["exchange/theta"] = np.linspace(0, 180, frames)
    return path.read_bytes()


def write_over_sftp(server: SFTPServer, remote: str, data: bytes, *, chunks: int = 1, pause: float = 0.0) -> datetime:
    """Write ``data`` to ``remote`` over SFTP in ``chunks`` pieces; after the first, wait for the watcher's session.

    Returns when the last byte was written.
    """

    last_write: list[datetime] = []

    async def write() -> None:
        sessions = server.counters.get("sftp_sessions", 0)
        async with (
            asyncssh.connect("127.0.0.1", server.port, username="spot832", password=PASSWORD, known_hosts=None) as ssh,
            ssh.start_sftp_client() as sftp,
        ):
            await sftp.makedirs(os.path.dirname(remote), exist_ok=True)
            async with sftp.open(remote, "wb") as f:
                step = -(-len(data) // chunks)
                for i, offset in enumerate(range(0, len(data), step)):
                    await f.write(data[offset : offset + step], offset)
                    last_write.append(datetime.now(UTC))
                    if i == 0 and chunks > 1:
                        deadline = time.monotonic() + 180
                        while server.counters.get("sftp_sessions", 0) < sessions + 2:  # ours + the watcher's
                            assert time.monotonic() < deadline, "the watcher never connected"
                            await asyncio.sleep(0.1)
                    await asyncio.sleep(pause)

    asyncio.run(write())
    return last_write[-1]


def watcher():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags" / "bl832_watch_spot832.py")).get_dag("bl832_watch_spot832")


def dispatcher_runs(run_id: str) -> list:
    from airflow.models import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        runs = session.scalars(select(DagRun).where(DagRun.dag_id == "bl832_dispatcher", DagRun.run_id == run_id)).all()
        session.expunge_all()
        return runs


def dispatch_states(dag_run) -> list[str]:
    return sorted(str(ti.state) for ti in dag_run.get_task_instances() if ti.task_id == "dispatch")


def test_a_slowly_written_scan_starts_one_dispatcher_run_after_it_is_complete(spot832, tmp_path):
    scan = Scan(FOLDER, "20230224_132553_sea_shell.h5")
    raw = spot832.root / "global" / "raw" / FOLDER
    raw.mkdir(parents=True, exist_ok=True)
    data = scan_bytes(tmp_path)
    # Beside it: a stable .h5 that is not HDF5, a half-written scan, and names that are not scans.
    (raw / "20230224_120000_not_hdf5.h5").write_bytes(os.urandom(4096))
    (raw / "20230224_120100_half.h5").write_bytes(data[: len(data) // 2])
    (raw / "notes.txt").write_text("not a scan")
    (spot832.root / "global" / "raw" / "scratch").mkdir()
    (spot832.root / "global" / "raw" / "scratch" / "20230224_120200_other.h5").write_bytes(data)
    (spot832.root / "global" / "raw" / "BLS-00565_unlisted").mkdir()  # export control unknown: held
    (spot832.root / "global" / "raw" / "BLS-00565_unlisted" / "20230224_120300_held.h5").write_bytes(data)
    finished_writing: list[datetime] = []

    def writer() -> None:
        # Pauses longer than the stability window (3 polls 0.5 s apart): mid-write sizes look stable, and
        # only the HDF5 check (superblock end-of-file address != size) keeps the scan from being dispatched.
        # the time the last byte was written (the file is complete from then on, before the final pause)
        finished_writing.append(write_over_sftp(spot832, f"/global/raw/{scan}", data, chunks=6, pause=1.5))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        dag_run = watcher().test(run_conf=FAST)
    finally:
        thread.join(240)

    assert dag_run.state == "success"
    assert dispatch_states(dag_run) == ["success"]
    [run] = dispatcher_runs(scan_run_id(scan))
    assert run.queued_at >= finished_writing[0]
    assert run.conf == {
        "file_path": f"/global/raw/{scan}",
        "is_export_controlled": False,
        "send_to_nersc": True,
    }
    for ignored in (
        Scan(FOLDER, "20230224_120000_not_hdf5.h5"),
        Scan(FOLDER, "20230224_120100_half.h5"),
        Scan("scratch", "20230224_120200_other.h5"),
        Scan("BLS-00565_unlisted", "20230224_120300_held.h5"),
    ):
        assert dispatcher_runs(scan_run_id(ignored)) == []

    # The watcher again, with a new scan: it dispatches the new one only, never the first a second time.
    second = Scan(FOLDER, "20230224_140000_second.h5")
    write_over_sftp(spot832, f"/global/raw/{second}", data)
    again = watcher().test(run_conf=FAST)
    assert again.state == "success"
    assert dispatch_states(again) == ["success"]
    assert len(dispatcher_runs(scan_run_id(second))) == 1
    assert len(dispatcher_runs(scan_run_id(scan))) == 1


def test_a_dispatch_repeated_after_a_restart_is_skipped(spot832, tmp_path):
    """A restart between dispatching and recording it (the trigger cannot see the run): the same run id is skipped."""
    from airflow.dag_processing.dagbag import DagBag

    scan = Scan(FOLDER, "20230301_090000_restart.h5")
    write_over_sftp(spot832, f"/global/raw/{scan}", scan_bytes(tmp_path, frames=10))
    dag = DagBag(dag_folder=str(REPO_ROOT / "tests" / "fixture_dags" / "sftp_watch_dags.py")).get_dag(
        "test_sftp_watch_blind"
    )
    first = dag.test()
    second = dag.test()
    assert dispatch_states(first) == ["success"]
    assert dispatch_states(second) == ["skipped"]
    assert len(dispatcher_runs(scan_run_id(scan))) == 1
