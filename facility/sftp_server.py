"""A small SFTP server (asyncssh) serving one local folder on 127.0.0.1: spot832's file system for tests.

The folder is the server's ``/`` (chroot), so serving ``<facility root>/spot832`` shows the local
facility's raw tree at ``/raw``. Symbolic links are resolved as a kernel chroot resolves them (what
OpenSSH's ``ChrootDirectory`` gives): an absolute target starts at the served folder and ``..`` stops there,
so no link, however it points, reaches a file outside it (asyncssh's own ``chroot`` maps the client's path
but lets the OS follow links out of it). Password and/or public-key authentication for one user; an Ed25519 host
key generated at start unless one is given. Development and test tool only: DAG code never imports it.

In a test::

    with SFTPServer(root, password="pw") as server:
        server.port, server.host_key  # for the connection (host_key extra verifies the server)

From a shell (foreground, Ctrl-C stops it)::

    python -m facility.sftp_server --root .facility/spot832 --port 8022 --user spot832 --password ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import hmac
import os
import posixpath
import threading
from pathlib import Path

import asyncssh

from facility.process import free_port


class _Auth(asyncssh.SSHServer):
    """Accept exactly one user with its password or one of its authorized keys."""

    def __init__(self, server: SFTPServer) -> None:
        self._server = server

    def begin_auth(self, username: str) -> bool:
        return True  # always ask: never reveal whether a user exists

    def password_auth_supported(self) -> bool:
        return self._server.password is not None

    def validate_password(self, username: str, password: str) -> bool:
        ok = username == self._server.username and hmac.compare_digest(
            password.encode(), (self._server.password or "").encode()
        )
        self._server.count("auth_ok" if ok else "auth_failed")
        return ok

    def public_key_auth_supported(self) -> bool:
        return self._server.authorized_keys is not None

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        authorized = self._server.authorized_keys
        ok = username == self._server.username and authorized is not None and authorized.validate(key, "", "")
        ok = bool(ok)
        self._server.count("auth_ok" if ok else "auth_failed")
        return ok


#: Symbolic links followed in one path at most (the kernel's ELOOP limit).
MAX_SYMLINKS = 40


def resolve_in_root(root: bytes, path: bytes, *, follow_last: bool) -> bytes:
    """The local path of the client's ``path`` under ``root``, every symlink resolved inside ``root`` (as a
    chroot would); the last component's own link is kept unless ``follow_last``. Components that do not exist
    are kept as given."""
    pending = [part for part in path.split(b"/") if part and part != b"."]
    parts: list[bytes] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == b"..":
            if parts:
                parts.pop()
            continue
        local = posixpath.join(root, *parts, part)
        if (pending or follow_last) and os.path.islink(local):
            hops += 1
            if hops > MAX_SYMLINKS:
                raise OSError(errno.ELOOP, "Too many levels of symbolic links", path.decode(errors="replace"))
            target = os.readlink(local)
            if target.startswith(b"/"):
                parts = []
            pending = [p for p in target.split(b"/") if p and p != b"."] + pending
            continue
        parts.append(part)
    return posixpath.join(root, *parts) if parts else root


class ChrootSFTPServer(asyncssh.SFTPServer):
    """asyncssh's SFTP server with every path resolved inside the served folder (:func:`resolve_in_root`)."""

    def map_path(self, path: bytes) -> bytes:
        assert self._chroot
        return resolve_in_root(self._chroot, path, follow_last=False)

    def _followed(self, path: bytes) -> bytes:
        """The client path of ``path`` with its last link resolved too (for calls that follow it)."""
        assert self._chroot
        return self.reverse_map_path(resolve_in_root(self._chroot, path, follow_last=True))

    def open(self, path, pflags, attrs):
        return super().open(self._followed(path), pflags, attrs)

    def open56(self, path, desired_access, flags, attrs):
        return super().open56(self._followed(path), desired_access, flags, attrs)

    def stat(self, path):
        return super().stat(self._followed(path))

    def setstat(self, path, attrs):
        return super().setstat(self._followed(path), attrs)

    def scandir(self, path):
        return super().scandir(self._followed(path))

    def statvfs(self, path):
        return super().statvfs(self._followed(path))

    def realpath(self, path):
        return super().realpath(self._followed(path))

    def link(self, oldpath, newpath):
        return super().link(self._followed(oldpath), newpath)


class SFTPServer:
    """An SFTP server on its own thread and event loop; ``start()``/``stop()`` or use it as a context manager.

    :param root: the local folder served as ``/``.
    :param port: TCP port on ``host`` (a free one when omitted).
    :param username: the one user accepted.
    :param password: its password (``None``: password authentication off).
    :param authorized_keys: OpenSSH ``authorized_keys`` text for public-key authentication.
    :param host_key: the server's private host key (OpenSSH text); generated when omitted.
    """

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        username: str = "spot832",
        password: str | None = None,
        authorized_keys: str | None = None,
        host_key: str | None = None,
    ) -> None:
        if password is None and authorized_keys is None:
            raise ValueError("give a password, authorized_keys or both")
        self.root = Path(root).resolve()
        self.host = host
        self.port = port or free_port()
        self.username = username
        self.password = password
        self.authorized_keys = asyncssh.import_authorized_keys(authorized_keys) if authorized_keys else None
        self._host_key = (
            asyncssh.import_private_key(host_key) if host_key else asyncssh.generate_private_key("ssh-ed25519")
        )
        self.counters: dict[str, int] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._acceptor: asyncssh.SSHAcceptor | None = None

    @property
    def host_key(self) -> str:
        """The public host key, ``<type> <base64>``: the connection's ``host_key`` extra."""
        return " ".join(self._host_key.export_public_key().decode().split()[:2])

    def count(self, name: str) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + 1

    def _sftp_factory(self, chan: asyncssh.SSHServerChannel) -> asyncssh.SFTPServer:
        self.count("sftp_sessions")
        return ChrootSFTPServer(chan, chroot=str(self.root).encode())

    async def _listen(self) -> asyncssh.SSHAcceptor:
        return await asyncssh.listen(
            self.host,
            self.port,
            server_factory=lambda: _Auth(self),
            server_host_keys=[self._host_key],
            sftp_factory=self._sftp_factory,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            login_timeout=30,
        )

    def start(self, timeout: float = 10.0) -> SFTPServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"sftp-{self.port}", daemon=True)
        self._thread.start()
        self._acceptor = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return

        async def _close() -> None:
            if self._acceptor is not None:
                self._acceptor.close()
                await self._acceptor.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(_close(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(10)
            self._loop.close()
            self._loop = self._thread = self._acceptor = None

    def __enter__(self) -> SFTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="local folder served as /")
    parser.add_argument("--port", type=int, default=8022)
    parser.add_argument("--user", default="spot832")
    parser.add_argument("--password", help="password of --user (local use only)")
    parser.add_argument("--authorized-keys", type=Path, help="OpenSSH authorized_keys file of --user")
    parser.add_argument("--host-key", type=Path, help="private host key file (generated when omitted)")
    args = parser.parse_args()
    server = SFTPServer(
        args.root,
        port=args.port,
        username=args.user,
        password=args.password,
        authorized_keys=args.authorized_keys.read_text() if args.authorized_keys else None,
        host_key=args.host_key.read_text() if args.host_key else None,
    )
    with server:
        print(f"SFTP on 127.0.0.1:{server.port} serving {server.root} as /; host key {server.host_key}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
