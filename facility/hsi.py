"""A stand-in for NERSC's ``hsi`` client (HPSS), the commands the archive job uses, on a local folder.

``python -m facility.hsi [-q] "cmd; cmd ..."`` runs, in order: ``mkdir [-p] DIR``, ``put [-p] SRC : DST``,
``hashcreate [-H alg] PATH`` (reads the stored file back and records its checksum, as hsi does from HPSS),
``hashlist PATH`` (prints ``<hex> <alg> <path> (hsi)``) and ``hashverify PATH`` (reads it back and compares). As
hsi, it writes its messages to stderr and exits non-zero at the first failing command. HPSS paths are local
paths here (the local profile's HPSS collection folder); checksums are kept in ``$HSI_HASHES`` (default
``~/.hsi-stand-in-hashes.json``), outside the archive, as HPSS keeps them in its metadata.

``HSI_FAULT=corrupt_put`` stores a ``put`` with one byte flipped (a bad write to tape, silent), for tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

ALGORITHMS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")


class HsiError(RuntimeError):
    """A command failed (hsi prints the message and exits with status 72, as for an HPSS error)."""


def _hashes() -> Path:
    return Path(os.environ.get("HSI_HASHES") or Path.home() / ".hsi-stand-in-hashes.json")


def _load() -> dict[str, list[str]]:
    try:
        return json.loads(_hashes().read_text())
    except (OSError, ValueError):
        return {}


def _store(path: str, algorithm: str | None) -> None:
    hashes = _load()
    if algorithm is None:
        hashes.pop(path, None)
    else:
        hashes[path] = [algorithm, _digest(Path(path), algorithm)]
    _hashes().write_text(json.dumps(hashes, indent=1, sort_keys=True))


def _digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _options(words: list[str], flags: str, valued: str) -> tuple[dict[str, str | bool], list[str]]:
    found: dict[str, str | bool] = {}
    while words and words[0].startswith("-") and len(words[0]) == 2:
        flag = words.pop(0)[1]
        if flag in valued and words:
            found[flag] = words.pop(0)
        elif flag in flags:
            found[flag] = True
        else:
            raise HsiError(f"unknown option -{flag}")
    return found, words


def _file(path: str) -> Path:
    target = Path(path)
    if not target.is_file():
        raise HsiError(f"{path}: HPSS_ENOENT: No such file or directory")
    return target


def run(command: str) -> None:
    """One hsi command line (``;``-separated commands)."""
    for part in (p.strip() for p in command.split(";")):
        if not part:
            continue
        words = shlex.split(part)
        name, args = words[0], words[1:]
        if name == "mkdir":
            _, args = _options(args, "p", "")
            for folder in args:
                Path(folder).mkdir(parents=True, exist_ok=True)
        elif name == "put":
            options, args = _options(args, "pP", "cH")
            if len(args) != 3 or args[1] != ":":
                raise HsiError("usage: put [-p] local_file : hpss_file")
            source, destination = Path(args[0]), Path(args[2])
            if not source.is_file():
                raise HsiError(f"{source}: No such file or directory")
            partial = destination.with_name(f".{destination.name}.hsi-put")
            shutil.copyfile(source, partial)
            if os.environ.get("HSI_FAULT") == "corrupt_put" and partial.stat().st_size:
                with partial.open("r+b") as handle:  # one byte flipped: a bad write, size unchanged
                    first = handle.read(1)
                    handle.seek(0)
                    handle.write(bytes([first[0] ^ 0xFF]))
            if options.get("p"):
                shutil.copystat(source, partial)
            os.replace(partial, destination)
            _store(str(destination), None)  # a new file has no hash until one is created
            print(f"put  '{source}' : '{destination}' ( {source.stat().st_size} bytes)", file=sys.stderr)
        elif name == "hashcreate":
            options, args = _options(args, "", "H")
            algorithm = str(options.get("H", "md5")).lower()
            if algorithm not in ALGORITHMS:
                raise HsiError(f"unsupported hash type {algorithm}")
            for path in args:
                _file(path)
                _store(path, algorithm)
        elif name in ("hashlist", "lshash"):
            hashes = _load()
            for path in args:
                _file(path)
                algorithm, value = hashes.get(path, ["none", "-"])
                print(f"{value} {algorithm} {path} (hsi)", file=sys.stderr)
        elif name == "hashverify":
            hashes = _load()
            for path in args:
                if path not in hashes:
                    raise HsiError(f"{path}: no checksum hash to verify")
                algorithm, value = hashes[path]
                if _digest(_file(path), algorithm) != value:
                    raise HsiError(f"{path}: checksum verification failed")
                print(f"{path}: ({algorithm}) OK", file=sys.stderr)
        else:
            raise HsiError(f"{name}: command not supported by the stand-in")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    while args and args[0] in ("-q", "-P"):
        args.pop(0)
    try:
        run(" ".join(args))
    except HsiError as exc:
        print(f"*** hsi: {exc}", file=sys.stderr)
        return 72
    return 0


if __name__ == "__main__":
    sys.exit(main())
