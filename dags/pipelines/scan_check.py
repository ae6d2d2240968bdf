"""plan's check of a new scan before anything moves (issue 23 finding 1): it is on the source endpoint, it is a
complete HDF5 file (the watcher's superblock check) and its size is stable; else one line, no retry.

The size comes from Globus (the endpoint the first copy reads); the first bytes from the source host, as
runtime.yaml ``scan_readers`` says for the endpoint: an SFTP connection (production: spot832's, the watcher's),
``local`` (the local facility's folder) or nothing (the read is skipped, and the log says so). A service that
fails (Globus, SFTP) fails the task with its own error: that is not a bad scan.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from contextlib import contextmanager
from time import sleep
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from include.beamlines import Tomography
from include.hdf5_check import problem_of
from include.paths import DEFAULT_RAW_ROOT, EndpointPath, Scan

#: ``read(offset, length)`` of one open file.
Read = Callable[[int, int], bytes]


def check_new_scan(beamline: Tomography, scan: Scan, *, log: Callable[[str], Any] = print) -> None:
    """Refuse (:class:`AirflowFailException`, one line) a scan that is missing, not complete HDF5 or growing."""
    from als_provider.hooks.globus_transfer import GlobusTransferHook
    from include.runtime import load_runtime

    runtime = load_runtime()
    where = EndpointPath(beamline.source_endpoint, beamline.source_path(scan))
    hook = GlobusTransferHook()
    size = _size(hook.stat(where), scan, beamline.source_endpoint)
    reader = runtime.scan_readers.get(beamline.source_endpoint)
    if reader is None:
        log(f"{scan}: HDF5 check skipped: runtime.yaml scan_readers names no reader for {beamline.source_endpoint}")
    else:
        with _opened(reader, where, scan) as read:
            problem = problem_of(read, size)
        if problem:
            raise AirflowFailException(f"file_path: {scan}: {problem}")
    sleep(runtime.scan_stable_seconds)
    again = _size(hook.stat(where), scan, beamline.source_endpoint)
    if again != size:
        raise AirflowFailException(f"file_path: {scan}: still being written (size {size} then {again})")
    log(f"{scan}: {size} bytes on {beamline.source_endpoint}, unchanged over {runtime.scan_stable_seconds:g} s")


def _size(stat: dict[str, Any] | None, scan: Scan, endpoint: str) -> int:
    if stat is None:
        raise AirflowFailException(f"file_path: {scan}: not found on {endpoint}")
    if stat.get("type", "file") != "file":
        raise AirflowFailException(f"file_path: {scan}: not a file on {endpoint} ({stat.get('type')})")
    return int(stat["size"])


@contextmanager
def _opened(reader: str, where: EndpointPath, scan: Scan):
    """``read(offset, length)`` of the scan (``where``: on its source endpoint) on its source host, by ``reader``
    (runtime.yaml ``scan_readers``)."""
    if reader == "local":
        from include.endpoints import load_endpoints

        with open(load_endpoints().posix(where), "rb") as file:
            yield _reader(file)
        return
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    hook = SFTPHook(ssh_conn_id=reader)
    raw_root = hook.get_connection(reader).extra_dejson.get("raw_root") or DEFAULT_RAW_ROOT  # as the watcher
    with hook.get_managed_conn() as sftp, sftp.open(posixpath.join(raw_root, str(scan.relative_path)), "rb") as file:
        yield _reader(file)


def _reader(file) -> Read:
    def read(offset: int, length: int) -> bytes:
        file.seek(offset)
        return file.read(length)

    return read
