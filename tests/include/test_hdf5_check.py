"""include.hdf5_check: the HDF5 superblock says whether a file is complete (files written by h5py)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest

from include.hdf5_check import (
    HDF5_SIGNATURE,
    SUPERBLOCK_READ_SIZE,
    Superblock,
    completeness_problem,
    parse_superblock,
    problem_of,
    superblock_offsets,
)


def write_scan(path: Path, *, libver: str = "earliest", userblock_size: int = 0) -> bytes:
    """A small Data Exchange scan written by h5py; returns its bytes."""
    with h5py.File(path, "w", libver=libver, userblock_size=userblock_size) as h5:
        h5["exchange/data"] = np.arange(20 * 4 * 32, dtype="u2").reshape(20, 4, 32)
        h5["exchange/theta"] = np.linspace(0, 180, 20)
    return path.read_bytes()


def find_superblock(data: bytes) -> Superblock:
    """What a caller does: look for the signature where a superblock may start, then parse there."""
    for offset in superblock_offsets(len(data)):
        if data[offset : offset + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE:
            return parse_superblock(data[offset : offset + SUPERBLOCK_READ_SIZE], offset)
    raise AssertionError("no signature")


@pytest.mark.parametrize(("libver", "version"), [("earliest", 0), ("v108", 2), ("latest", 3)])
def test_superblock_of_a_complete_file(tmp_path, libver, version):
    data = write_scan(tmp_path / "scan.h5", libver=libver)
    superblock = parse_superblock(data[:SUPERBLOCK_READ_SIZE], 0)
    assert superblock.version == version
    assert superblock.end == len(data)
    assert completeness_problem(superblock, len(data)) is None


def test_superblock_after_a_user_block(tmp_path):
    data = write_scan(tmp_path / "scan.h5", userblock_size=1024)
    assert data[:8] != HDF5_SIGNATURE
    superblock = find_superblock(data)
    assert (superblock.offset, superblock.base_address) == (1024, 1024)
    assert completeness_problem(superblock, len(data)) is None


def test_a_half_written_file_is_not_complete(tmp_path):
    data = write_scan(tmp_path / "scan.h5", libver="latest")
    superblock = parse_superblock(data[:SUPERBLOCK_READ_SIZE], 0)
    problem = completeness_problem(superblock, len(data) // 2)
    assert problem == f"superblock end-of-file address {len(data)} != size {len(data) // 2} (still being written?)"


def test_a_file_open_for_writing_is_not_complete(tmp_path):
    path = tmp_path / "scan.h5"
    write_scan(path, libver="latest")
    with h5py.File(path, "r+", libver="latest") as h5:  # a writer holds it: the flags say so
        h5.swmr_mode = True
        head = path.read_bytes()[:SUPERBLOCK_READ_SIZE]
        superblock = parse_superblock(head, 0)
        assert superblock.flags & 0b101
        assert completeness_problem(superblock, superblock.end) == "superblock says the file is still open for writing"
    # closed again: complete
    data = path.read_bytes()
    assert completeness_problem(parse_superblock(data[:SUPERBLOCK_READ_SIZE], 0), len(data)) is None


def test_open_flags_of_old_superblocks_are_not_read_as_open(tmp_path):
    """Versions 0-2 have no "open for writing" flag: only the end-of-file address counts."""
    data = bytearray(write_scan(tmp_path / "scan.h5", libver="earliest")[:SUPERBLOCK_READ_SIZE])
    struct.pack_into("<I", data, 20, 0b101)
    superblock = parse_superblock(bytes(data), 0)
    assert completeness_problem(superblock, superblock.end) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda data: os.urandom(SUPERBLOCK_READ_SIZE), "no HDF5 signature"),
        (lambda data: data[:8], "no HDF5 signature"),
        (lambda data: data[:8] + bytes([7]) + data[9:], "unknown superblock version 7"),
        (lambda data: data[:9] + bytes([2]) + data[10:], "unsupported size of offsets 2"),
        (lambda data: data[:30], "superblock truncated"),
        (lambda data: data[:28] + b"\xff" * 8 + data[36:], "end-of-file address undefined"),
    ],
)
def test_bad_superblocks_are_refused(tmp_path, change, message):
    data = write_scan(tmp_path / "scan.h5", libver="latest")[:SUPERBLOCK_READ_SIZE]  # v3: eof at 28..36
    with pytest.raises(ValueError, match=message):
        parse_superblock(change(data), 0)


def test_superblock_offsets():
    assert superblock_offsets(100) == [0]
    assert superblock_offsets(5000) == [0, 512, 1024, 2048, 4096]


def reader(data: bytes):
    """``read(offset, length)`` over ``data``, as plan reads a scan (SFTP or disk); counts the reads."""
    reads = []

    def read(offset: int, length: int) -> bytes:
        reads.append((offset, length))
        return data[offset : offset + length]

    return read, reads


@pytest.mark.parametrize(("libver", "userblock"), [("earliest", 0), ("latest", 0), ("earliest", 1024)])
def test_problem_of_a_complete_file_is_none(tmp_path, libver, userblock):
    data = write_scan(tmp_path / "scan.h5", libver=libver, userblock_size=userblock)
    read, reads = reader(data)
    assert problem_of(read, len(data)) is None
    assert all(length <= SUPERBLOCK_READ_SIZE for _, length in reads)  # the first bytes only, never the file


def test_problem_of_plain_text_and_of_a_truncated_file(tmp_path):
    text = b"not an HDF5 file, just text\n" * 100
    assert problem_of(reader(text)[0], len(text)) == "not HDF5 (no signature at 0)"
    assert problem_of(reader(b"")[0], 0) == "not HDF5 (no signature at 0)"
    data = write_scan(tmp_path / "scan.h5")
    cut = data[: len(data) // 2]
    assert problem_of(reader(cut)[0], len(cut)) == (
        f"incomplete HDF5: superblock end-of-file address {len(data)} != size {len(cut)} (still being written?)"
    )


def test_problem_of_a_damaged_superblock(tmp_path):
    data = bytearray(write_scan(tmp_path / "scan.h5"))
    data[8] = 9  # superblock version 9 does not exist
    assert problem_of(reader(bytes(data))[0], len(data)) == "bad HDF5 superblock at 0: unknown superblock version 9"
