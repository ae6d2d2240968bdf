"""What a copy holds, from Globus listings: one listing per folder, and a record of every file's size and time.

A :class:`Record` is taken right after a copy is made (the pipeline's ``finish``) and compared again at prune
time: the target must still hold exactly those files with those sizes and modification times (``digest``).
:class:`Folders` lists each folder once and tells a missing path (``FileNotFoundError``, raised by the
listing only for a path missing on a reachable, known collection) from every other error (propagated).
Plain Python: the listing is anything with :meth:`FolderLister.listdir` (the Globus hook has it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Protocol

from include.paths import EndpointPath


class FolderLister(Protocol):
    """A storage service's folder listing (``GlobusTransferHook.listdir``)."""

    def listdir(self, where: EndpointPath) -> list[dict[str, Any]]:
        """The entries of a folder (``{name, type, size, last_modified, checksum?}``); raises
        ``FileNotFoundError`` only when the folder is missing on a reachable, known collection."""


class TreeTooLarge(RuntimeError):
    """A folder holds more entries than the caller allows."""


@dataclass(frozen=True)
class Record:
    """What a copy held: total bytes, file count, newest modification time, and a digest of every file's
    (relative path, size, modification time); ``checksum`` of a single file where the service gave one."""

    size: int
    files: int
    mtime: str
    digest: str
    checksum: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "files": self.files, "mtime": self.mtime, "digest": self.digest,
                "checksum": self.checksum}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        return cls(
            size=int(data["size"]),
            files=int(data["files"]),
            mtime=str(data["mtime"]),
            digest=str(data["digest"]),
            checksum=data.get("checksum") or None,
        )

    def differences(self, other: Record) -> str:
        """How ``other`` differs from this record, in words (empty if it does not)."""
        if other.digest == self.digest:
            return ""
        return (
            f"{other.files} file(s), {other.size} bytes, newest {other.mtime}; recorded {self.files} file(s), "
            f"{self.size} bytes, newest {self.mtime}"
        )


def checksum_of(info: Mapping[str, Any]) -> str | None:
    value = info.get("checksum")
    return str(value).lower().split(":")[-1] if value else None


def record_of(tree: Mapping[str, Mapping[str, Any]]) -> Record:
    """The record of a tree (:meth:`Folders.tree`): only files count; ``"."`` is a single file."""
    files = sorted((rel, info) for rel, info in tree.items() if info.get("type") == "file")
    digest = hashlib.sha256()
    for rel, info in files:
        digest.update(f"{rel}\t{int(info.get('size') or 0)}\t{info.get('last_modified')}\n".encode())
    single = checksum_of(files[0][1]) if len(files) == 1 and files[0][0] == "." else None
    return Record(
        size=sum(int(info.get("size") or 0) for _, info in files),
        files=len(files),
        mtime=max((str(info.get("last_modified") or "") for _, info in files), default=""),
        digest=digest.hexdigest()[:32],
        checksum=single,
    )


class Folders:
    """Folder listings, each folder listed once (``None``: the folder is missing)."""

    def __init__(self, lister: FolderLister) -> None:
        self.lister = lister
        self.cache: dict[str, dict[str, dict[str, Any]] | None] = {}
        self.listings = 0

    def children(self, where: EndpointPath) -> dict[str, dict[str, Any]] | None:
        key = str(where)
        if key not in self.cache:
            self.listings += 1
            try:
                self.cache[key] = {item["name"]: dict(item) for item in self.lister.listdir(where)}
            except FileNotFoundError:
                self.cache[key] = None
        return self.cache[key]

    def info(self, where: EndpointPath) -> dict[str, Any] | None:
        """A path's entry in its parent's listing, or ``None`` when it is missing."""
        if not where.path.name:
            raise ValueError(f"{where}: an endpoint root is never a copy")
        parent = EndpointPath(where.endpoint, str(where.path.parent))
        found = self.children(parent)
        return None if found is None else found.get(where.path.name)

    def tree(self, where: EndpointPath, *, limit: int = 200_000) -> dict[str, dict[str, Any]] | None:
        """Every entry of a file (key ``"."``) or below a folder (relative paths), or ``None`` if missing."""
        top = self.info(where)
        if top is None:
            return None
        if top.get("type") != "dir":
            return {".": top}
        return self.walk(where, limit=limit) or {}

    def walk(self, folder: EndpointPath, *, limit: int | None = 200_000) -> dict[str, dict[str, Any]] | None:
        """Every entry below ``folder`` (relative paths), folder by folder, or ``None`` if it is missing;
        ``limit``: most entries (:class:`TreeTooLarge` beyond), ``None`` for no bound."""
        if self.children(folder) is None:
            return None
        found: dict[str, dict[str, Any]] = {}
        pending = [PurePosixPath(".")]
        while pending:
            rel = pending.pop()
            below = self.children(folder if str(rel) == "." else folder.child(str(rel)))
            for name, item in (below or {}).items():
                child = str(rel / name) if str(rel) != "." else name
                found[child] = item
                if limit is not None and len(found) > limit:
                    raise TreeTooLarge(f"{folder} holds more than {limit} entries; raise max_tree_entries to check it")
                if item.get("type") == "dir":
                    pending.append(PurePosixPath(child))
        return found
