"""Whether a results folder is complete, from a listing alone (a Globus listing on the Airflow side).

A producer writes its results manifest last (compute_functions/results_manifest.py); the manifest's name,
``results-manifest-<count>-files-<bytes>-bytes.json``, carries how many files the folder holds besides it and
their total size. A folder is complete when it holds exactly one manifest and the other files add up to it:
a copy still under way, a partial result and a mix of two runs all differ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from include.paths import EndpointPath
from include.records import FolderLister, Folders

#: The manifest's name (the same contract: compute_functions/results_manifest.py NAME).
MANIFEST_NAME = re.compile(r"^results-manifest-(\d+)-files-(\d+)-bytes\.json$")
#: A manifest being written (renamed into place when complete).
TEMPORARY = ".results-manifest"


@dataclass(frozen=True)
class Completeness:
    """How a results folder stands: ``complete``, and why not (``reason``)."""

    where: EndpointPath
    complete: bool
    reason: str
    count: int = 0
    nbytes: int = 0
    #: every file but temporary manifests: relative path -> (size, modification time as Globus lists it)
    files: dict[str, tuple[int, str | None]] = field(default_factory=dict, compare=False, repr=False)

    def same_as(self, other: Completeness) -> bool:
        """Both complete and holding the same files with the same sizes and times (Globus preserves a copy's
        times, so a copy of the same results matches and a later run's results, same sizes or not, do not)."""
        return self.complete and other.complete and self.files == other.files


def files_under(hook: FolderLister, where: EndpointPath) -> dict[str, int]:
    """Every file under ``where`` (relative path -> size), listing folder by folder (include.records)."""
    return {name: size for name, (size, _) in _entries(hook, where).items()}


def _entries(hook: FolderLister, where: EndpointPath) -> dict[str, tuple[int, str | None]]:
    entries = Folders(hook).walk(where, limit=None)
    if entries is None:
        raise FileNotFoundError(str(where))
    return {
        name: (int(entry.get("size") or 0), entry.get("last_modified"))
        for name, entry in entries.items()
        if entry.get("type") != "dir"
    }


def completeness(hook: FolderLister, where: EndpointPath) -> Completeness:
    """Whether ``where`` holds one manifest and exactly the files it counts (a missing folder: not complete)."""
    try:
        entries = _entries(hook, where)
    except FileNotFoundError:
        return Completeness(where, False, "absent")
    kept = {name: entry for name, entry in entries.items() if not name.startswith(TEMPORARY)}
    manifests = [name for name in kept if MANIFEST_NAME.match(name)]
    others = {name: size for name, (size, _) in kept.items() if name not in manifests}
    count, nbytes = len(others), sum(others.values())
    if len(manifests) != 1:
        reason = f"{len(manifests)} results manifests among {count} files"
        return Completeness(where, False, reason, count, nbytes, kept)
    want_count, want_bytes = (int(n) for n in MANIFEST_NAME.match(manifests[0]).groups())
    if (count, nbytes) != (want_count, want_bytes):
        reason = f"{count} files, {nbytes} bytes where {manifests[0]} counts {want_count} files, {want_bytes} bytes"
        return Completeness(where, False, reason, count, nbytes, kept)
    return Completeness(where, True, f"complete: {count} files, {nbytes} bytes", count, nbytes, kept)
