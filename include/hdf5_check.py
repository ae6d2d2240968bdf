"""Is an HDF5 file complete? Its superblock says so, read from the first bytes of the file.

HDF5 writes the final end-of-file address into the superblock when the file is closed (and truncates the
file to it), so a file still being written, or copied byte by byte, has a superblock whose end-of-file
address differs from its size; a version-3 superblock (``libver="latest"``, SWMR) is also flagged "open for
write access" while a writer holds it. Plain Python on bytes: the caller reads them (over SFTP, from disk).

Usage: for each offset of :func:`superblock_offsets` read ``len(HDF5_SIGNATURE)`` bytes; where they are
the signature, :func:`parse_superblock` the next :data:`SUPERBLOCK_READ_SIZE` bytes and ask
:func:`completeness_problem`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Bytes from the signature that hold every superblock field read here (versions 0-3, 8-byte offsets).
SUPERBLOCK_READ_SIZE = 96
_UNDEFINED_ADDRESS = {4: 0xFFFFFFFF, 8: 0xFFFFFFFFFFFFFFFF}


@dataclass(frozen=True)
class Superblock:
    """The fields of an HDF5 superblock that say whether the file is complete."""

    offset: int
    version: int
    base_address: int
    eof_address: int
    flags: int

    @property
    def end(self) -> int:
        """Absolute end of the file the superblock describes.

        The end-of-file address is absolute (the spec says so, and the library writes it so): a user block
        before the superblock is counted in it, the base address is not added again.
        """
        return self.eof_address


def parse_superblock(data: bytes, offset: int) -> Superblock:
    """Parse the superblock that starts (with its signature) at ``data[0]``, found at file ``offset``.

    Versions 0-3 (HDF5 file format spec, "Superblock"); raises ValueError on anything else.
    """
    if not data.startswith(HDF5_SIGNATURE) or len(data) < 12:
        raise ValueError("no HDF5 signature")
    version = data[8]
    if version in (0, 1):
        size_of_offsets, flags_at, base_at = data[13], 20, 24 if version == 0 else 28
        flags = struct.unpack_from("<I", data, flags_at)[0] if len(data) >= 24 else 0
    elif version in (2, 3):
        size_of_offsets, base_at = data[9], 12
        flags = data[11]
    else:
        raise ValueError(f"unknown superblock version {version}")
    if size_of_offsets not in _UNDEFINED_ADDRESS:
        raise ValueError(f"unsupported size of offsets {size_of_offsets}")
    fmt = "<I" if size_of_offsets == 4 else "<Q"
    # base, then (free-space | superblock-extension) address, then end-of-file address
    eof_at = base_at + 2 * size_of_offsets
    if len(data) < eof_at + size_of_offsets:
        raise ValueError("superblock truncated")
    base = struct.unpack_from(fmt, data, base_at)[0]
    eof = struct.unpack_from(fmt, data, eof_at)[0]
    if eof == _UNDEFINED_ADDRESS[size_of_offsets]:
        raise ValueError("end-of-file address undefined")
    return Superblock(offset=offset, version=version, base_address=base, eof_address=eof, flags=flags)


def superblock_offsets(size: int) -> list[int]:
    """Where a superblock may start: 0, 512, 1024, 2048, ... (after a user block), below ``size``."""
    offsets, at = [0], 512
    while at < size:
        offsets.append(at)
        at *= 2
    return offsets


def completeness_problem(superblock: Superblock, size: int) -> str | None:
    """Why the file is not a complete HDF5 file by its superblock, or ``None``."""
    if superblock.version >= 3 and superblock.flags & 0b101:
        return "superblock says the file is still open for writing"
    if superblock.end != size:
        return f"superblock end-of-file address {superblock.end} != size {size} (still being written?)"
    return None


def problem_of(read: Callable[[int, int], bytes], size: int) -> str | None:
    """Why a file of ``size`` bytes is not a complete HDF5 file, or ``None``; ``read(offset, length)`` gives
    its bytes (from SFTP, from disk). The synchronous form of the watcher's superblock check."""
    for offset in superblock_offsets(size):
        if read(offset, len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
            continue
        try:
            superblock = parse_superblock(read(offset, SUPERBLOCK_READ_SIZE), offset)
        except ValueError as exc:
            return f"bad HDF5 superblock at {offset}: {exc}"
        problem = completeness_problem(superblock, size)
        return f"incomplete HDF5: {problem}" if problem else None
    return "not HDF5 (no signature at 0)"
