"""Issue 16, finding 4: what the compute functions write is shared, folders 2775 and files 664, whatever the umask,
so that the service account of the group can delete it (upstream added this after Globus deletes failed with
PERMISSION_DENIED). The jobs' side: tests/dags/test_bl832_nersc_recon.py."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from compute_functions import permissions
from compute_functions.sample_scan import write_sample_scan

REPO = Path(__file__).resolve().parents[2]
FOLDER = "BLS-00564_dyparkinson"
GROUP, WRITER, DELETER = 10000, 10001, 10002

#: Runs the two compute functions (compute_functions/remote.py) in a fresh process: optionally once first as the
#: starting user (so that every lazy import is loaded: the interpreter may not be readable by the other uid),
#: then under ``umask`` (and ``uid``/``gid``/``groups`` when given) into ``out_dir``. ``without_permissions``
#: swaps the helper out: the control, as the code was before it.
PRODUCE = r"""
import json, os, sys
from pathlib import Path

args = json.loads(sys.argv[1])
import compute_functions.multiscale as ms
import compute_functions.reconstruct as rc
import compute_functions.remote as remote
import compute_functions.results_manifest as rm

if args.get("without_permissions"):
    def plain_makedirs(path):
        Path(path).mkdir(parents=True, exist_ok=True)
        return Path(path)
    rm.share_tree = rm.share_file = lambda path: None
    rm.makedirs = rc.makedirs = ms.makedirs = plain_makedirs


def produce(out_dir, key):
    recon = remote.reconstruct(args["scan"], out_dir, {"rows": "0:2", "engine": "nufft"}, run_key=key, workers=1)
    remote.multiscale(recon["tiff_dir"], recon["tiff_dir"] + ".zarr", run_key=key)


if args.get("warm"):
    produce(args["warm"], "warm")
if "uid" in args:
    os.setgroups(args["groups"])
    os.setgid(args["gid"])
    os.setuid(args["uid"])
os.umask(args["umask"])
produce(args["out_dir"], "run-1")
"""

#: Deletes a tree as another uid, as the service account's Globus delete would; prints what happened.
DELETE = r"""
import json, os, shutil, sys

args = json.loads(sys.argv[1])
os.setgroups(args["groups"])
os.setgid(args["gid"])
os.setuid(args["uid"])
try:
    shutil.rmtree(args["path"])
except OSError as exc:
    print(json.dumps({"deleted": False, "errno": exc.errno, "error": f"{type(exc).__name__}: {exc}"}))
else:
    print(json.dumps({"deleted": True}))
"""


def run(script: str, **args) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(args)], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def tree_modes(root: Path) -> dict[str, str]:
    """``relative path -> octal mode`` of ``root`` and everything under it."""
    found = {".": oct(stat.S_IMODE(root.stat().st_mode))}
    for path in sorted(root.rglob("*")):
        found[path.relative_to(root).as_posix()] = oct(stat.S_IMODE(path.lstat().st_mode))
    return found


def unshared(root: Path) -> dict[str, str]:
    """What under ``root`` is not a 2775 folder or a 664 file."""
    wrong = {}
    for rel, mode in tree_modes(root).items():
        path = root / rel
        want = permissions.DIR_MODE if path.is_dir() else permissions.FILE_MODE
        if not path.is_symlink() and int(mode, 8) != want:
            wrong[rel] = mode
    return wrong


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    path = tmp_path_factory.mktemp("raw") / "20230224_132553_sea_shell.h5"
    write_sample_scan(path, size="tiny")
    return path


def test_the_compute_functions_share_results_under_a_restrictive_umask(scan, tmp_path):
    out_dir = tmp_path / "scratch" / FOLDER / "alcf"  # the folders above the results are made by the functions
    (tmp_path / "scratch").mkdir()
    run(PRODUCE, scan=str(scan), out_dir=str(out_dir), umask=0o077)
    results = tmp_path / "scratch" / FOLDER
    tiff_dir, zarr = out_dir / "rec20230224_132553_sea_shell", out_dir / "rec20230224_132553_sea_shell.zarr"
    assert sorted(tiff_dir.glob("*.tiff")) and (zarr / "preview.png").is_file()
    assert [p.name for p in tiff_dir.glob("results-manifest-*.json")] and list(zarr.glob("results-manifest-*"))
    modes = tree_modes(results)
    assert modes["."] == oct(0o2775) and modes["alcf"] == oct(0o2775)
    assert modes[f"alcf/{tiff_dir.name}"] == oct(0o2775)
    assert unshared(results) == {}, unshared(results)


def test_share_tree_sets_folders_and_files_and_leaves_links_alone(tmp_path):
    tree = tmp_path / "rec1"
    (tree / "0" / "0").mkdir(parents=True, mode=0o700)
    (tree / "0" / "0" / "c").write_bytes(b"x")
    (tree / ".zattrs").write_bytes(b"{}")
    os.chmod(tree / "0" / "0" / "c", 0o600)
    outside = tmp_path / "outside"
    outside.write_bytes(b"not ours")
    os.chmod(outside, 0o600)
    (tree / "link").symlink_to(outside)
    os.chmod(tree, 0o700)
    assert permissions.share_tree(tree) == {"dirs": 3, "files": 2}
    assert unshared(tree) == {}
    assert stat.S_IMODE(outside.stat().st_mode) == 0o600  # never followed


def test_makedirs_shares_only_the_folders_it_creates(tmp_path):
    os.chmod(tmp_path, 0o755)
    made = permissions.makedirs(tmp_path / "a" / "b")
    assert made.is_dir()
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
    assert [stat.S_IMODE((tmp_path / p).stat().st_mode) for p in ("a", "a/b")] == [0o2775, 0o2775]
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        permissions.makedirs(tmp_path / "f")


def test_the_manifest_writer_shares_the_tree_it_lists(tmp_path):
    from compute_functions import results_manifest

    tree = tmp_path / "rec1.zarr"
    (tree / "0").mkdir(parents=True)
    (tree / "0" / "c").write_bytes(b"x")
    os.chmod(tree, 0o700)
    written = results_manifest.write(tree)
    assert unshared(tree) == {}
    assert stat.S_IMODE((tree / written["manifest"]).stat().st_mode) == 0o664


def test_cli(tmp_path):
    (tmp_path / "r").mkdir(mode=0o700)
    done = subprocess.run(
        [sys.executable, "-m", "compute_functions.permissions", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    assert "1 folders 2775, 0 files 664" in done.stdout
    assert stat.S_IMODE((tmp_path / "r").stat().st_mode) == 0o2775


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="switching uids needs root")
def test_the_service_account_deletes_results_another_account_wrote(scan, tmp_path):
    """Written by uid 10001 (group 10000, umask 022) through the compute functions, deleted by uid 10002 of the
    same group: that works with the shared modes, and fails with PERMISSION_DENIED for a control tree written
    without them."""
    base = Path(tempfile.mkdtemp(prefix="als-permissions-"))  # /tmp: not under root's private pytest folder
    try:
        shutil.copy(scan, base / scan.name)
        os.chmod(base / scan.name, 0o644)
        os.chmod(base, 0o755)
        outcomes = {}
        for case, without in (("shared", False), ("control", True)):
            scratch = base / case
            scratch.mkdir()
            os.chown(scratch, 0, GROUP)
            os.chmod(scratch, 0o2775)  # the endpoint's root: the group's, as at the facility
            run(
                PRODUCE,
                scan=str(base / scan.name),
                out_dir=str(scratch / FOLDER / "alcf"),
                warm=str(tmp_path / case),
                uid=WRITER,
                gid=GROUP,
                groups=[GROUP],
                umask=0o022,
                without_permissions=without,
            )
            written = scratch / FOLDER
            assert {p.stat().st_uid for p in [written, *written.rglob("*")]} == {WRITER}
            assert list(written.rglob("*.tiff")) and list(written.rglob("preview.png"))
            outcomes[case] = json.loads(
                run(DELETE, path=str(written), uid=DELETER, gid=DELETER, groups=[GROUP]).strip().splitlines()[-1]
            )
            outcomes[case]["left"] = written.exists()
        assert outcomes["shared"] == {"deleted": True, "left": False}
        control = outcomes["control"]
        assert control["deleted"] is False and control["left"] is True, control
        assert control["errno"] in (errno.EACCES, errno.EPERM) and "Permission denied" in control["error"], control
    finally:
        shutil.rmtree(base, ignore_errors=True)
