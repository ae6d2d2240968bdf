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
Export-controlled results are private to the group: folders ``2770``, files ``660`` (nothing for "other"):
inside :func:`private_modes` (``compute_functions.remote`` enters it for a plan's ``private: true``), or with
``--private`` on the command line. A folder that is already ``2770`` keeps its tree private (a later share
never widens it).
Plain Python: no Airflow, nothing else of ours.
"""

from __future__ import annotations

import contextvars
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: rwxrwsr-x: group-writable, setgid.
DIR_MODE = stat.S_ISGID | stat.S_IRWXU | stat.S_IRWXG | stat.S_IROTH | stat.S_IXOTH
#: rw-rw-r--
FILE_MODE = stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IWGRP | stat.S_IROTH

#: rwxrws--- and rw-rw----: export-controlled results (nothing for "other").
PRIVATE_DIR_MODE = DIR_MODE & ~stat.S_IRWXO
PRIVATE_FILE_MODE = FILE_MODE & ~stat.S_IRWXO

assert DIR_MODE == 0o2775 and FILE_MODE == 0o664
assert PRIVATE_DIR_MODE == 0o2770 and PRIVATE_FILE_MODE == 0o660

_PRIVATE = contextvars.ContextVar("als_private_modes", default=False)


@contextmanager
def private_modes(private: bool = True) -> Iterator[None]:
    """Within the block (this thread or task), what is shared is private: 2770/660 (export-controlled)."""
    token = _PRIVATE.set(bool(private) or _PRIVATE.get())
    try:
        yield
    finally:
        _PRIVATE.reset(token)


def modes(near: str | os.PathLike | None = None) -> tuple[int, int]:
    """(folder mode, file mode): private inside :func:`private_modes`, or when ``near`` (a folder) or its
    parent is already private; else shared."""
    private = _PRIVATE.get()
    if not private and near is not None:
        private = any(_is_private(p) for p in (Path(near), Path(near).parent))
    return (PRIVATE_DIR_MODE, PRIVATE_FILE_MODE) if private else (DIR_MODE, FILE_MODE)


def _is_private(folder: Path) -> bool:
    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    return stat.S_ISDIR(mode) and stat.S_IMODE(mode) == PRIVATE_DIR_MODE


def share_file(path: str | os.PathLike) -> None:
    """``path`` (a file) becomes 664 (660 when private)."""
    os.chmod(path, modes(Path(path).parent)[1])


def share_tree(path: str | os.PathLike) -> dict[str, int]:
    """``path`` and everything under it: folders 2775, files 664; symbolic links are left alone (never
    followed); 2770/660 when private (:func:`modes`). ``{"dirs": n, "files": n}`` changed or confirmed."""
    root = Path(path)
    if root.is_symlink():
        return {"dirs": 0, "files": 0}
    if not root.is_dir():
        share_file(root)
        return {"dirs": 0, "files": 1}
    dirs = files = 0
    dir_mode, file_mode = modes(root)
    os.chmod(root, dir_mode)  # first: a folder we cannot enter (0700 of another umask) is opened up
    dirs += 1
    for top, subdirs, names in os.walk(root, followlinks=False):
        for name in subdirs:
            sub = os.path.join(top, name)
            if not os.path.islink(sub):
                os.chmod(sub, dir_mode)
                dirs += 1
        for name in names:
            target = os.path.join(top, name)
            if not os.path.islink(target):
                os.chmod(target, file_mode)
                files += 1
    return {"dirs": dirs, "files": files}


def makedirs(path: str | os.PathLike) -> Path:
    """``path`` as a folder, creating what is missing; each folder created here becomes 2775, or 2770 when
    private or under a private folder (folders that existed are not ours to change)."""
    path = Path(path)
    missing = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    dir_mode = modes(current)[0]
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue  # made meanwhile by another writer
        os.chmod(folder, dir_mode)
    if not path.is_dir():
        raise NotADirectoryError(f"{path}: not a folder")
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m compute_functions.permissions [--private] PATH...``: share each tree (a job script's last
    step); ``--private``: 2770/660 (export-controlled)."""
    paths = sys.argv[1:] if argv is None else list(argv)
    private = "--private" in paths
    paths = [p for p in paths if p != "--private"]
    if not paths:
        print("usage: python -m compute_functions.permissions [--private] PATH...", file=sys.stderr)
        return 2
    with private_modes(private):
        for path in paths:
            counts = share_tree(path)
            dir_mode, file_mode = modes(path)
            print(f"{path}: {counts['dirs']} folders {dir_mode:o}, {counts['files']} files {file_mode:o}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
