"""Results that are complete or absent: a manifest written last into a results folder, one writer per run.

A producer (a reconstruction's TIFF folder ``rec<ds>/``, a multiscale ``rec<ds>.zarr/``) ends by calling
:func:`write`: it lists every file under the folder (relative path and size) into
``results-manifest-<count>-files-<bytes>-bytes.json``, written under a temporary name and renamed, so the
manifest exists only once everything it names does. Its name carries the totals, so anything that can list
the folder (a Globus listing on the Airflow side: include/results.py) can tell a complete copy from a partial
or mixed one without reading a file. ``python -m compute_functions.results_manifest DIR...`` writes them
from a job script.

:func:`run_once` keeps two calls of one run (the same ``key``: a Compute submit whose answer was lost, then
sent again) from both writing: the first takes a lock beside the output, a second waits for it and returns
its result without running. The lock is a lease (the caller's own timeout) that its writer renews while it
lives, so the lock of a writer that died elsewhere (OOM, walltime) expires within that lease.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compute_functions.permissions import makedirs, share_file, share_tree

PREFIX = "results-manifest"
#: ``results-manifest-<count>-files-<bytes>-bytes.json`` (the same contract: include/results.py).
NAME = re.compile(rf"^{PREFIX}-(\d+)-files-(\d+)-bytes\.json$")
#: The run-once lease when the caller gives none: the Globus Compute task timeout (GlobusComputeOperator).
DEFAULT_LEASE_SECONDS = 2 * 3600
#: The writer renews its lease this often at most (and at least 10 times per lease).
RENEW_SECONDS = 60.0


class ManifestError(RuntimeError):
    """A results folder does not match its manifest, or has none."""


def manifest_name(count: int, nbytes: int) -> str:
    return f"{PREFIX}-{count}-files-{nbytes}-bytes.json"


def _files(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` (hidden ones too: a Zarr's ``.zattrs``) but manifests and their temporary
    files: relative POSIX path -> size."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not (
            path.parent == folder and (NAME.match(path.name) or path.name.startswith(f".{PREFIX}"))
        ):
            found[path.relative_to(folder).as_posix()] = path.stat().st_size
    return found


def write(folder: str | os.PathLike) -> dict[str, Any]:
    """Write the manifest of ``folder`` (replacing an older one); ``{"manifest", "count", "bytes"}``.

    The complete tree is shared first (folders 2775, files 664: compute_functions/permissions.py), and the
    manifest is written 664, so the service account of the group can delete the results."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ManifestError(f"{folder}: no such results folder")
    share_tree(folder)
    files = _files(folder)
    count, nbytes = len(files), sum(files.values())
    name = manifest_name(count, nbytes)
    document = {"folder": folder.name, "count": count, "bytes": nbytes, "files": files, "written_at": time.time()}
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(document, indent=1, sort_keys=True))
    share_file(tmp)
    for old in folder.iterdir():
        if NAME.match(old.name) and old.name != name:
            old.unlink()
    os.replace(tmp, folder / name)
    return {"manifest": name, "count": count, "bytes": nbytes}


def check(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of ``folder`` if the files match it; :class:`ManifestError` naming the difference."""
    folder = Path(folder)
    names = [p.name for p in folder.iterdir() if NAME.match(p.name)] if folder.is_dir() else []
    if len(names) != 1:
        raise ManifestError(f"{folder}: {len(names)} results manifests (want 1)")
    document = json.loads((folder / names[0]).read_text())
    files = _files(folder)
    if files != document["files"]:
        extra = sorted(set(files) - set(document["files"]))[:3]
        missing = sorted(set(document["files"]) - set(files))[:3]
        raise ManifestError(f"{folder}: files differ from {names[0]} (extra {extra}, missing or changed {missing})")
    return {"manifest": names[0], "count": document["count"], "bytes": document["bytes"]}


def produce_once(
    run_key: str | None,
    output: str | os.PathLike,
    folder_key: str,
    produce: Callable[[], dict],
    *,
    lease_seconds: float | None = None,
) -> dict:
    """:func:`run_once` of ``produce`` (leased for ``lease_seconds``), then the manifest of the folder its summary
    names (``folder_key``).

    The summary gains ``manifest`` (:func:`write`'s answer). The one call each Compute function makes.
    """

    def produce_with_manifest() -> dict:
        summary = produce()
        if not isinstance(summary, dict) or folder_key not in summary:
            return summary
        return {**summary, "manifest": write(summary[folder_key])}

    return run_once(output, run_key, produce_with_manifest, lease_seconds=lease_seconds)


def remote_summary(summary: Any, producer: str, started: float, **defaults: Any) -> dict:
    """What a Compute function returns: the JSON copy of ``producer``'s summary (a dict, else TypeError), with
    ``defaults`` where it has none, the host, and the wall seconds since ``started`` (``time.time()``)."""
    if not isinstance(summary, dict):
        raise TypeError(f"{producer} returned {type(summary).__name__}, expected a dict")
    summary = json.loads(json.dumps(summary, default=str))
    for key, value in defaults.items():
        summary.setdefault(key, value)
    summary["host"] = platform.node()
    summary["wall_seconds"] = round(time.time() - started, 3)
    return summary


def run_once(
    output: str | os.PathLike, key: str | None, produce: Callable[[], dict], *, lease_seconds: float | None = None
) -> dict:
    """``produce()`` unless another call with the same ``key`` wrote ``output``; then that call's result.

    The lock ``.<output name>.run-lock`` beside ``output`` holds the key, host, pid and lease of the writer; the
    result of a finished call is kept in ``.<output name>.run-result`` for calls of the same key. A later call of
    another key (a re-run) waits for a live writer, then runs. ``key=None``: just ``produce()``.

    The lock is a lease of ``lease_seconds`` (the task's own timeout; default :data:`DEFAULT_LEASE_SECONDS`):
    the writer renews it (the lock's mtime) every ``min(RENEW_SECONDS, lease / 10)`` s while it runs; a lock not
    renewed for its lease (its writer died on another host) is taken over, as is one of a dead pid here.
    """
    if not key:
        return produce()
    output = Path(output)
    makedirs(output.parent)
    lock, done = output.parent / f".{output.name}.run-lock", output.parent / f".{output.name}.run-result"
    while True:
        previous = _read(done)
        if previous.get("key") == key:
            print(f"run_once: {output} was written by an earlier call of {key}; not running again", file=sys.stderr)
            return {**previous["result"], "duplicate_of_earlier_call": True}
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(lock)
            if _stale(lock, holder):
                lock.unlink(missing_ok=True)
            else:
                time.sleep(1.0)
            continue
        lease = float(lease_seconds or DEFAULT_LEASE_SECONDS)
        with os.fdopen(fd, "w") as handle:
            holder = {"key": key, "host": socket.gethostname(), "pid": os.getpid(), "at": time.time(), "lease": lease}
            json.dump(holder, handle)
        stop = threading.Event()
        renewer = threading.Thread(target=_renew, args=(lock, lease, stop), name="run-once-lease", daemon=True)
        renewer.start()
        try:
            result = produce()
            write_json(done, {"key": key, "result": result})
            return result
        finally:
            stop.set()
            renewer.join()
            lock.unlink(missing_ok=True)


def write_json(path: Path, data: dict) -> None:
    """``data`` as JSON at ``path``, shared (664) and whole: written aside, then renamed into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data, default=str))
    share_file(tmp)
    os.replace(tmp, path)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _renew(lock: Path, lease: float, stop: threading.Event) -> None:
    """Touch ``lock`` every ``min(RENEW_SECONDS, lease / 10)`` s until ``stop``: the writer's lease lives on."""
    while not stop.wait(min(RENEW_SECONDS, lease / 10)):
        try:
            os.utime(lock)
        except FileNotFoundError:
            return


def _stale(lock: Path, holder: dict) -> bool:
    """Whether the lock's writer is gone: a dead pid on this host, or a lease not renewed in time elsewhere."""
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    try:
        lease = float(holder.get("lease") or DEFAULT_LEASE_SECONDS)
        return time.time() - lock.stat().st_mtime > lease
    except FileNotFoundError:
        return True


def main(argv: list[str] | None = None) -> int:
    """``python -m compute_functions.results_manifest DIR...``: write each folder's manifest, print it."""
    folders = sys.argv[1:] if argv is None else argv
    if not folders:
        print("usage: python -m compute_functions.results_manifest DIR...", file=sys.stderr)
        return 2
    for folder in folders:
        written = write(folder)
        print(f"{folder}: {written['manifest']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
