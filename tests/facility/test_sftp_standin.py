"""The SFTP stand-in (facility/sftp_server.py) over the wire with asyncssh's own client."""

from __future__ import annotations

import asyncio
import os

import asyncssh
import pytest

from facility.sftp_server import SFTPServer

PASSWORD = "local-sftp-password"


async def _sftp(server: SFTPServer, action):
    async with (
        asyncssh.connect(
            server.host, server.port, username=server.username, password=PASSWORD, known_hosts=None
        ) as conn,
        conn.start_sftp_client() as sftp,
    ):
        return await action(sftp)


def sftp(server: SFTPServer, action):
    return asyncio.run(_sftp(server, action))


async def read(sftp, path: str) -> bytes:
    async with sftp.open(path, "rb") as handle:
        return await handle.read()


def test_i21_finding_14_no_symlink_under_the_root_reaches_a_file_outside(tmp_path):
    """Issue 21 finding 14: the stand-in followed a symlink already under its root to a file outside it."""
    root, outside = tmp_path / "spot832", tmp_path / "elsewhere"
    (root / "raw").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (root / "raw" / "scan.txt").write_text("ok")
    os.symlink(outside / "secret.txt", root / "raw" / "absolute")  # absolute target outside the root
    os.symlink("../../elsewhere/secret.txt", root / "raw" / "relative")  # relative target climbing out
    os.symlink(outside, root / "raw" / "folder")  # a folder outside: a path through it
    os.symlink("scan.txt", root / "raw" / "inside")  # a link that stays inside
    os.symlink("/raw/scan.txt", root / "raw" / "rooted")  # absolute inside the chroot, as sshd resolves it

    with SFTPServer(root, password=PASSWORD) as server:
        for link in ("/raw/absolute", "/raw/relative", "/raw/folder/secret.txt"):
            with pytest.raises(asyncssh.SFTPError):
                sftp(server, lambda s, link=link: read(s, link))
            with pytest.raises(asyncssh.SFTPError):
                sftp(server, lambda s, link=link: s.stat(link))
        assert sftp(server, lambda s: read(s, "/raw/inside")) == b"ok"
        assert sftp(server, lambda s: read(s, "/raw/rooted")) == b"ok"
        assert sftp(server, lambda s: s.realpath("/raw/rooted")) == "/raw/scan.txt"
        assert sftp(server, lambda s: s.realpath("/raw/relative")) == "/elsewhere/secret.txt"  # in the root only
        names = sftp(server, lambda s: s.listdir("/raw"))
        assert {"absolute", "relative", "folder", "inside", "scan.txt"} <= set(names)
        with pytest.raises(asyncssh.SFTPError):  # nor can a write go out through a link
            sftp(server, lambda s: s.mkdir("/raw/folder/made-here"))
    assert (outside / "secret.txt").read_text() == "secret"
    assert not (outside / "made-here").exists()
