"""Shared permissions on what our jobs and functions write: folders 2775, files 664, whatever the umask.

Results (``rec<ds>/``, ``rec<ds>.zarr/`` with its preview, the results manifest) and staged raw copies are
written by one account and later deleted (pruned through Globus) by the service account of the same group.
A folder it cannot write (``0755`` from a ``022`` umask) makes those deletes fail with PERMISSION_DENIED, so
every folder gets ``2775`` (group-writable; setgid, so what is created inside keeps the group) and every file
``664``, as upstream (``splash_flows``: the NERSC job script and the ALCF reconstruction scripts) sets them.

:func:`share_tree` runs once a result tree is complete (``compute_functions.results_manifest.write`` calls it
before it writes the manifest, which is written ``664`` too); :func:`makedirs` creates the folders above a
result with the same mode. ``python -m compute_functions.permissions PATH...`` shares trees from a job script
(the Slurm templates in include/jobs/ set the modes of the folders and staged scans they make with chmod).
Plain Python: no Airflow, nothing else of ours.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

#: rwxrwsr-x: group-writable, setgid.
DIR_MODE = stat.S_ISGID | stat.S_IRWXU | stat.S_IRWXG | stat.S_IROTH | stat.S_IXOTH
#: rw-rw-r--
FILE_MODE = stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IWGRP | stat.S_IROTH

assert DIR_MODE == 0o2775 and FILE_MODE == 0o664


def share_file(path: str | os.PathLike) -> None:
    """``path`` (a file) becomes 664."""
    os.chmod(path, FILE_MODE)


def share_tree(path: str | os.PathLike) -> dict[str, int]:
    """``path`` and everything under it: folders 2775, files 664; symbolic links are left alone (never
    followed). ``{"dirs": n, "files": n}`` changed or confirmed."""
    root = Path(path)
    if root.is_symlink():
        return {"dirs": 0, "files": 0}
    if not root.is_dir():
        share_file(root)
        return {"dirs": 0, "files": 1}
    dirs = files = 0
    os.chmod(root, DIR_MODE)  # first: a folder we cannot enter (0700 of another umask) is opened up
    dirs += 1
    for top, subdirs, names in os.walk(root, followlinks=False):
        for name in subdirs:
            sub = os.path.join(top, name)
            if not os.path.islink(sub):
                os.chmod(sub, DIR_MODE)
                dirs += 1
        for name in names:
            target = os.path.join(top, name)
            if not os.path.islink(target):
                os.chmod(target, FILE_MODE)
                files += 1
    return {"dirs": dirs, "files": files}


def makedirs(path: str | os.PathLike) -> Path:
    """``path`` as a folder, creating what is missing; each folder created here becomes 2775 (folders that
    existed are not ours to change)."""
    path = Path(path)
    missing = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue  # made meanwhile by another writer
        os.chmod(folder, DIR_MODE)
    if not path.is_dir():
        raise NotADirectoryError(f"{path}: not a folder")
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m compute_functions.permissions PATH...``: share each tree (a job script's last step)."""
    paths = sys.argv[1:] if argv is None else list(argv)
    if not paths:
        print("usage: python -m compute_functions.permissions PATH...", file=sys.stderr)
        return 2
    for path in paths:
        counts = share_tree(path)
        print(f"{path}: {counts['dirs']} folders 2775, {counts['files']} files 664")
    return 0


if __name__ == "__main__":
    sys.exit(main())
