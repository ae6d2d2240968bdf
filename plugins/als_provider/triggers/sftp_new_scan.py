"""Trigger that watches spot832's raw tree over SFTP and fires with the finished scans not yet dispatched.

A scan is ``<raw root>/<folder>/<file>.h5`` with SPEC §1 names (``include.paths.scan_from_names``). It is
*finished* when (1) its size and mtime were the same in ``stable_polls`` consecutive listings and (2) it is a
complete HDF5 file: the signature is at offset 0 (or a user-block boundary), the superblock's end-of-file
address equals the file's size, a version-3 superblock is not flagged "open for writing"
(``include.hdf5_check``), and h5py opens it (read over SFTP) and lists its root group. It is *dispatched*
when a run of the dispatcher DAG (``dispatch_dag_id``) with its deterministic run id
(``include.paths.scan_run_id``) exists. With a folder list (``export_control``), a scan whose folder is neither
export-controlled nor released is *held*: logged once, never fired (include/export_control.py).

This module stays light (DAG files import the sensor, which imports it): asyncssh, the SFTP provider's
hook and h5py are imported where they are used.
"""

from __future__ import annotations

import asyncio
import io
import posixpath
import time
from typing import Any

from als_provider.triggers.base import PollingTrigger
from include.hdf5_check import (
    HDF5_SIGNATURE,
    SUPERBLOCK_READ_SIZE,
    completeness_problem,
    parse_superblock,
    superblock_offsets,
)
from include.paths import (
    DEFAULT_RAW_ROOT,
    FOLDER_NAME_PATTERN,
    SCAN_NAME_PATTERN,
    Scan,
    is_scan_folder,
    scan_from_names,
    scan_run_id,
)


class _BlockingRemoteFile(io.RawIOBase):
    """A read-only, seekable file over an asyncssh SFTP file, for h5py running in a worker thread.

    Each read is sent to the event loop that owns the SFTP connection and waited for.
    """

    def __init__(self, remote: Any, size: int, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        super().__init__()
        self._remote, self._size, self._loop, self._timeout, self._pos = remote, size, loop, timeout, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not len(view) or self._pos >= self._size:
            return 0
        future = asyncio.run_coroutine_threadsafe(self._remote.read(len(view), self._pos), self._loop)
        data = future.result(self._timeout)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _h5py_opens(fileobj: io.RawIOBase) -> None:
    import h5py

    with h5py.File(fileobj, "r") as h5:
        list(h5.keys())


class SFTPConfigError(RuntimeError):
    """The watch cannot work as configured (credentials, host key, raw root): polling again will not help."""


class SFTPNewScanTrigger(PollingTrigger):
    """Poll spot832's raw tree over SFTP; fire with the finished scans not yet dispatched.

    Fires ``{"status": "success", "scans": [{"scan", "run_id", "size", "mtime", "checks"}, ...]}`` (oldest
    first, at most ``max_scans``) as soon as one poll finds any, or ``{"status": "error", "message"}`` when
    SFTP refuses the credentials or host key, the raw root is missing, or ``max_errors`` polls in a row fail.
    The polls share one SFTP session; a failed poll closes it and the next one connects again.

    :param dispatch_dag_id: the DAG whose runs mark a scan as dispatched (the dispatcher's DAG id).
    :param sftp_conn_id: SFTP connection (SFTPHookAsync: login, password or key, ``host_key`` extra).
    :param raw_root: the raw tree on the SFTP server (default: the connection's ``raw_root`` extra, else
        ``/global/raw``).
    :param stable_polls: consecutive listings with the same size and mtime before a scan is checked.
    :param poll_interval: seconds between listings.
    :param lookback: only scans modified in the last ``lookback`` seconds (``None``: all).
    :param folder_pattern: experiment folder names to watch (default SPEC §1).
    :param file_pattern: scan file names to watch (default SPEC §1).
    :param max_scans: at most this many scans per event (the rest come in the next run).
    :param max_errors: consecutive failed polls (network) before giving up.
    :param read_timeout: seconds for one SFTP read while h5py opens a file.
    :param export_control: ``{"all": bool, "controlled": [patterns], "released": [patterns]}`` (the sensor reads
        it from include/export_control.py): each fired scan carries ``export_controlled`` (true with ``all`` or
        a controlled folder, false for a released one); a scan of any other folder is held. ``None``: no
        status (``export_controlled: null``).
    """

    fields = (
        "dispatch_dag_id",
        "raw_root",
        "stable_polls",
        "lookback",
        "folder_pattern",
        "file_pattern",
        "max_scans",
        "max_errors",
        "read_timeout",
        "export_control",
    )

    def __init__(
        self,
        *,
        dispatch_dag_id: str,
        raw_root: str | None = None,
        stable_polls: int = 3,
        poll_interval: float = 30.0,
        lookback: float | None = 3 * 86400.0,
        folder_pattern: str = FOLDER_NAME_PATTERN,
        file_pattern: str = SCAN_NAME_PATTERN,
        max_scans: int = 32,
        max_errors: int = 5,
        read_timeout: float = 60.0,
        export_control: dict[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        if stable_polls < 2:
            raise ValueError("stable_polls must be >= 2: one listing cannot show that a size is stable")
        super().__init__(
            dispatch_dag_id=dispatch_dag_id,
            raw_root=raw_root,
            stable_polls=stable_polls,
            poll_interval=poll_interval,
            lookback=lookback,
            folder_pattern=folder_pattern,
            file_pattern=file_pattern,
            max_scans=max_scans,
            max_errors=max_errors,
            read_timeout=read_timeout,
            export_control=export_control,
            **settings,
        )
        self._where: str | None = None  # login@host:port, once the connection was read
        self._raw_root = ""  # the raw tree, once the connection was read
        self._secrets: list[str] = []
        self._session: Any = None  # the SFTP session's context manager, and its client
        self._sftp: Any = None
        self._held: set[str] = set()
        # scan path -> ((size, mtime), consecutive listings with that signature)
        self._seen: dict[str, tuple[tuple[int, int], int]] = {}
        self._dispatched: set[str] = set()
        # scan path -> (signature, reason) of the last failed HDF5 check: not re-read until the file changes
        self._rejected: dict[str, tuple[tuple[int, int], str]] = {}

    @classmethod
    def connection(cls) -> tuple[str, str]:
        return "sftp_conn_id", "sftp_spot832"

    @property
    def what(self) -> str:
        where = f"{self._where} " if self._where else ""
        return f"SFTP {where}({self.sftp_conn_id})"

    async def poll(self) -> dict[str, Any] | None:
        try:
            if self._sftp is None:
                await self._connect()
            finished = await self._poll(self._sftp, self._raw_root)
        except BaseException:
            await self.close()  # the next poll connects again
            raise
        return {"status": "success", "scans": finished} if finished else None

    async def _connect(self) -> None:
        """Read the connection (once) and open the SFTP session the polls share."""
        from airflow.providers.sftp.hooks.sftp import SFTPHookAsync

        if self._where is None:
            from airflow.providers.common.compat.connection import get_async_connection

            try:
                conn = await get_async_connection(self.sftp_conn_id)
            except Exception as exc:
                raise SFTPConfigError(f"connection {self.sftp_conn_id}: {exc}") from None
            self._where = f"{conn.login}@{conn.host}:{conn.port or 22}"
            self._raw_root = self.raw_root or conn.extra_dejson.get("raw_root") or DEFAULT_RAW_ROOT
            self._secrets = [s for s in (conn.password, conn.extra_dejson.get("private_key")) if s]
        session = SFTPHookAsync(sftp_conn_id=self.sftp_conn_id).get_managed_conn()
        self._sftp = await session.__aenter__()
        self._session = session

    async def close(self) -> None:
        session, self._session, self._sftp = self._session, None, None
        if session is not None:
            try:
                await session.__aexit__(None, None, None)
            except Exception as exc:
                self.log.warning("closing the SFTP session: %s", _describe(exc))

    def is_transient(self, exc: BaseException) -> bool:
        return not isinstance(exc, SFTPConfigError) and _terminal_ssh_problem(exc) is None

    def describe_error(self, exc: BaseException) -> str:
        reason = str(exc) if isinstance(exc, SFTPConfigError) else _terminal_ssh_problem(exc) or _describe(exc)
        return _redact(f"{self.what}: {reason}", self._secrets)

    async def _poll(self, sftp: Any, raw_root: str) -> list[dict[str, Any]]:
        listing = await self._list_scans(sftp, raw_root)
        stable: dict[str, tuple[Scan, tuple[int, int]]] = {}
        for path, (scan, signature) in listing.items():
            previous, count = self._seen.get(path, (None, 0))
            count = count + 1 if previous == signature else 1
            self._seen[path] = (signature, count)
            if count >= self.stable_polls and path not in self._dispatched and not self._holds(path, scan):
                stable[path] = (scan, signature)
        for gone in set(self._seen) - set(listing):
            self._seen.pop(gone)
            self._rejected.pop(gone, None)
        undispatched = await self._undispatched(stable)
        finished = []
        for path in sorted(undispatched, key=lambda p: (undispatched[p][1][1], p)):
            scan, signature = undispatched[path]
            rejected = self._rejected.get(path)
            if rejected and rejected[0] == signature:
                continue
            checks, problem = await self._check_hdf5(sftp, path, signature[0])
            if problem:
                self._rejected[path] = (signature, problem)
                self.log.warning("%s is stable but not dispatched: %s", path, problem)
                continue
            self._rejected.pop(path, None)
            finished.append(
                {
                    "scan": str(scan.relative_path),
                    "run_id": scan_run_id(scan),
                    "size": signature[0],
                    "mtime": signature[1],
                    "checks": checks,
                    "export_controlled": self._status(scan),
                }
            )
            if len(finished) >= self.max_scans:
                break
        growing = sum(1 for signature, count in self._seen.values() if count < self.stable_polls)
        self.log.info(
            "%d scan(s) under %s: %d not yet stable, %d finished and new",
            len(listing),
            raw_root,
            growing,
            len(finished),
        )
        return finished

    def _status(self, scan: Scan) -> bool | None:
        """True: export-controlled; False: released; None: unknown (or no folder list given)."""
        from include.export_control import FolderPolicy

        policy = self.export_control
        if policy is None:
            return None
        if policy.get("all"):
            return True
        return FolderPolicy(tuple(policy.get("controlled", ())), tuple(policy.get("released", ()))).status(scan.folder)

    def _holds(self, path: str, scan: Scan) -> bool:
        """Whether ``scan`` is held: a folder list is given and says nothing of its folder (logged once)."""
        if self.export_control is None or self._status(scan) is not None:
            return False
        if path not in self._held:
            self._held.add(path)
            self.log.warning(
                "%s is held, not dispatched: folder %s is neither export-controlled nor released "
                "(docs/watching.md: python -m tools.export_control release|control '<folder>')",
                path,
                scan.folder,
            )
        return True

    async def _list_scans(self, sftp: Any, raw_root: str) -> dict[str, tuple[Scan, tuple[int, int]]]:
        """Regular files ``<raw_root>/<folder>/<file>`` with scan names, modified within the look-back window."""
        import asyncssh

        cutoff = time.time() - self.lookback if self.lookback else None
        try:
            folders = await sftp.readdir(raw_root)
        except asyncssh.SFTPNoSuchFile:
            raise SFTPConfigError(f"raw root {raw_root} does not exist") from None
        except asyncssh.SFTPPermissionDenied:
            raise SFTPConfigError(f"raw root {raw_root} is not readable") from None
        found: dict[str, tuple[Scan, tuple[int, int]]] = {}
        for folder in folders:
            name, attrs = folder.filename, folder.attrs
            if attrs.type != asyncssh.FILEXFER_TYPE_DIRECTORY:
                continue
            if not is_scan_folder(name, folder_pattern=self.folder_pattern):
                continue
            # Creating a file in a folder updates the folder's mtime: an old folder holds no new scan.
            if cutoff is not None and attrs.mtime is not None and attrs.mtime < cutoff:
                continue
            try:
                entries = await sftp.readdir(posixpath.join(raw_root, name))
            except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPPermissionDenied) as exc:
                self.log.warning("cannot list %s/%s: %s", raw_root, name, exc.reason)
                continue
            for entry in entries:
                if entry.attrs.type != asyncssh.FILEXFER_TYPE_REGULAR or entry.attrs.size is None:
                    continue
                if cutoff is not None and entry.attrs.mtime is not None and entry.attrs.mtime < cutoff:
                    continue
                scan = scan_from_names(
                    name, entry.filename, folder_pattern=self.folder_pattern, file_pattern=self.file_pattern
                )
                if scan is not None:
                    path = posixpath.join(raw_root, name, entry.filename)
                    found[path] = (scan, (int(entry.attrs.size), int(entry.attrs.mtime or 0)))
        return found

    async def _undispatched(
        self, stable: dict[str, tuple[Scan, tuple[int, int]]]
    ) -> dict[str, tuple[Scan, tuple[int, int]]]:
        """The stable scans without a dispatcher run (asked of Airflow; dispatched ones are remembered)."""
        if not stable:
            return {}
        run_ids = {path: scan_run_id(scan) for path, (scan, _) in stable.items()}
        try:
            if await _dag_run_count(self.dispatch_dag_id, list(run_ids.values())) == 0:
                return stable
            for path, run_id in run_ids.items():
                if await _dag_run_count(self.dispatch_dag_id, [run_id]):
                    self._dispatched.add(path)
        except Exception as exc:
            # The dispatch itself refuses an existing run id; here it only costs a skipped dispatch task.
            self.log.warning("could not ask Airflow which scans are dispatched (%s); assuming none", _describe(exc))
        return {path: value for path, value in stable.items() if path not in self._dispatched}

    async def _check_hdf5(self, sftp: Any, path: str, size: int) -> tuple[str, str | None]:
        """``(what was checked, problem or None)`` for the file at ``path`` of ``size`` bytes."""
        async with sftp.open(path, "rb") as remote:
            superblock = None
            for offset in superblock_offsets(size):
                head = await remote.read(len(HDF5_SIGNATURE), offset)
                if head == HDF5_SIGNATURE:
                    try:
                        superblock = parse_superblock(await remote.read(SUPERBLOCK_READ_SIZE, offset), offset)
                    except ValueError as exc:
                        return "", f"bad HDF5 superblock at {offset}: {exc}"
                    break
            if superblock is None:
                return "", "not an HDF5 file (no signature)"
            problem = completeness_problem(superblock, size)
            if problem:
                return "", problem
            fileobj = _BlockingRemoteFile(remote, size, asyncio.get_running_loop(), self.read_timeout)
            try:
                await asyncio.to_thread(_h5py_opens, fileobj)
            except Exception as exc:
                return "", f"h5py cannot open it: {_describe(exc)}"
        checks = f"HDF5 superblock v{superblock.version}: end-of-file address == size {size}; h5py opens it"
        return checks, None


async def _dag_run_count(dag_id: str, run_ids: list[str]) -> int:
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
    from asgiref.sync import sync_to_async

    return await sync_to_async(RuntimeTaskInstance.get_dr_count)(dag_id=dag_id, run_ids=run_ids)


def _terminal_ssh_problem(exc: BaseException) -> str | None:
    """A failure that another poll cannot fix (credentials, host key, configuration), described; else None."""
    import asyncssh

    if isinstance(exc, asyncssh.PermissionDenied):
        return "authentication failed: check the connection's login and password or key"
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return f"host key not verifiable ({exc.reason}): set the connection's host_key extra"
    if isinstance(exc, asyncssh.KeyImportError | ValueError):
        return f"bad connection settings: {exc}"
    return None


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return f"{type(exc).__name__}: {reason or exc}"


def _redact(message: str, secrets: list[str]) -> str:
    for secret in secrets:
        message = message.replace(secret, "***")
    return message
