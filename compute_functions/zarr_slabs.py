"""One pass to TIFF and Zarr: the reconstruction's workers write the multiscale store as they reconstruct.

The reconstruction creates the store's group and arrays (:func:`compute_functions.multiscale.create_arrays`,
the layout the multiscale step would choose for the stack) in a hidden sibling of ``rec<dataset>.zarr``, then
each worker process pushes its slices through its own pyramid (:class:`SlabPyramid`) and writes the chunk
files of every level straight to disk. Workers get contiguous blocks of slices that start on a multiple of
:func:`block_alignment` (the level-0 chunk depth and ``2**(levels - 1)``), so each worker's planes pair up on
its own at every level and no chunk file is written by two processes: a chunk layer of a coarse level that
spans two blocks is saved by each worker as a piece (``.npy``) and :func:`merge_pieces` writes it once, in
the parent, after every worker succeeded. :func:`seal` then records the TIFF stack the store was made from
and renames the store to ``.<rec<dataset>.zarr>.staged``.

The multiscale step (:func:`compute_functions.multiscale.write_multiscale`) takes that store
(:func:`take_staged`) when it matches the TIFF stack (names, sizes, times) and the layout, compressor and NGFF
version asked for; it then only writes the NGFF metadata and the preview and renames the store into place.
Otherwise it reads the TIFFs back as before. Either way the store is the same, byte for byte.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compute_functions.zarr_handoff import SEAL, discard, fingerprint, staged_path

log = logging.getLogger(__name__)

PIECES = "pieces"  # partial chunk layers of coarse levels, one .npy per worker and layer


def zarr_path_of(tiff_dir: str | Path) -> Path:
    """The store the multiscale step writes by default for a TIFF folder: ``<folder>.zarr`` beside it."""
    tiff_dir = Path(tiff_dir)
    return tiff_dir.with_name(f"{tiff_dir.name}.zarr")


@dataclass(frozen=True)
class SlabStore:
    """What a worker needs to write its slab (picklable): the store being built and its layout and codec."""

    path: str
    layout: Any  # compute_functions.multiscale.StoreLayout
    compressor: str
    ngff: str

    @property
    def zarr_format(self) -> int:
        return 2 if self.ngff == "0.4" else 3


def block_alignment(layout: Any) -> int:
    """Slices per alignment unit of the workers' blocks: the level-0 chunk depth and ``2**(levels - 1)``."""
    return math.lcm(layout.level_chunks(0)[0], 2 ** (len(layout.shapes) - 1))


def create(zarr_path: Path, shape: tuple[int, int, int], dtype: Any, options: dict[str, Any]) -> SlabStore:
    """An empty store for a stack of ``shape`` (the multiscale step's ``options``: chunk, levels, memory_mb,
    compressor, ngff) at a fresh hidden sibling of ``zarr_path``, named so the multiscale step's clean-up of
    interrupted runs removes it if this run dies."""
    from compute_functions.permissions import makedirs

    partial = zarr_path.with_name(f".{zarr_path.name}.partial-{uuid.uuid4().hex[:8]}")
    store = describe(partial, shape, dtype, options)
    makedirs(zarr_path.parent)
    _make(store)
    return store


def describe(path: Path, shape: tuple[int, int, int], dtype: Any, options: dict[str, Any]) -> SlabStore:
    """The store at ``path`` for a stack of ``shape`` with the multiscale step's ``options`` (nothing written)."""
    from compute_functions import multiscale as ms

    ngff = options.get("ngff", "0.4")
    if ngff not in ms.NGFF_VERSIONS:
        raise ms.MultiscaleError(f"ngff must be one of {', '.join(ms.NGFF_VERSIONS)}, not {ngff!r}")
    layout = ms.store_layout(
        shape,
        dtype,
        levels=options.get("levels"),
        chunk=options.get("chunk", ms.DEFAULT_CHUNK),
        memory_mb=options.get("memory_mb", ms.DEFAULT_MEMORY_MB),
    )
    return SlabStore(str(path), layout, options.get("compressor", "lz4"), ngff)


def shared(store: SlabStore) -> SlabStore:
    """``store``, made once by whichever of several slab tasks comes first (compute_functions/slabs.py): built
    aside and renamed into place, so a store is never seen half made; a later caller takes the one that is."""
    from compute_functions.permissions import makedirs

    path = Path(store.path)
    if path.is_dir():
        return store
    makedirs(path.parent)
    aside = dataclasses.replace(store, path=str(path.with_name(f".{path.name}.new-{uuid.uuid4().hex[:8]}")))
    _make(aside)
    try:
        Path(aside.path).rename(path)  # fails when another slab's store is already there
    except OSError:
        shutil.rmtree(aside.path, ignore_errors=True)
        if not path.is_dir():
            raise
    return store


def _make(store: SlabStore) -> None:
    from compute_functions import multiscale as ms

    ms.create_arrays(
        Path(store.path), store.layout, ms._codecs(store.compressor, store.zarr_format)[0], store.zarr_format
    )
    (Path(store.path) / PIECES).mkdir()


class _LevelSlab:
    """One level of one worker's block: planes ``[z0, z1)`` of the level, gathered one chunk layer at a time
    (references, not copies). A layer wholly inside the block is written (while the next one fills: at most
    two layers held); a layer the block shares with another worker is saved as a piece."""

    def __init__(self, writer: Any, level: int, z0: int, z1: int, pieces: Path):
        self.writer, self.level, self.z0, self.z1, self.pieces = writer, level, z0, z1, pieces
        self.depth = writer.chunks[0]
        self.planes: list[np.ndarray] = []
        self.pending: list[Future] = []
        self.z = z0  # next plane of this level
        self.start = z0  # first plane of the layer being gathered

    def add(self, plane: np.ndarray) -> None:
        if not self.planes:
            self.start = self.z
        self.planes.append(plane)
        self.z += 1
        if self.z in ((self.start // self.depth + 1) * self.depth, self.z1):
            self._flush()

    def _flush(self) -> None:
        from compute_functions.multiscale import _wait

        layer = self.start - self.start % self.depth
        whole = self.start == layer and self.z in (layer + self.depth, self.writer.shape[0])
        _wait(self.pending)
        self.pending = []
        if whole:
            self.pending = self.writer.submit(self.start, self.planes)
        else:
            np.save(self.pieces / f"{self.level}-{self.start:08d}.npy", np.stack(self.planes))
        self.planes = []

    def close(self) -> None:
        from compute_functions.multiscale import _wait

        if self.planes:
            raise RuntimeError(f"level {self.level}: block ends at plane {self.z}, inside a layer")
        if self.z != self.z1:
            raise RuntimeError(f"level {self.level}: wrote planes {self.z0}..{self.z} of {self.z0}..{self.z1}")
        _wait(self.pending)


class SlabPyramid:
    """A worker's slices ``[z0, z1)`` of level 0 into every level of the store: add them in order, then close.

    Each level gathers the planes of one chunk layer (the slices themselves at level 0: no copy) and hands it
    to a writer thread, which encodes and writes it while the next layer is gathered. Planes pair up exactly as
    in the multiscale step (:func:`compute_functions.multiscale.mean_of_pair`; an odd last plane alone).
    """

    def __init__(self, store: SlabStore, z0: int, z1: int):
        import zarr

        from compute_functions.multiscale import _ChunkWriter, _codecs

        layout = store.layout
        n = layout.shapes[0][0]
        if z0 % block_alignment(layout) or not (z1 == n or z1 % block_alignment(layout) == 0):
            raise ValueError(f"slices {z0}..{z1} are not a block aligned to {block_alignment(layout)}")
        root = Path(store.path)
        encoder = _codecs(store.compressor, store.zarr_format)[1]
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onepass-write")
        group = zarr.open_group(zarr.storage.LocalStore(root), mode="r")
        self.levels = []
        for level, shape in enumerate(layout.shapes):
            writer = _ChunkWriter(group[str(level)], root, encoder, self.pool)
            lo, hi = z0 >> level, (z1 >> level if z1 != n else shape[0])
            self.levels.append(_LevelSlab(writer, level, lo, hi, root / PIECES))
        self.partner: list[np.ndarray | None] = [None] * len(self.levels)
        self.last = z1 == n

    def add(self, plane: np.ndarray) -> None:
        """The next slice of level 0 (kept until written: pass a fresh array)."""
        self._push(0, plane)

    def _push(self, level: int, plane: np.ndarray) -> None:
        from compute_functions.multiscale import mean_of_pair

        self.levels[level].add(plane)
        if level + 1 == len(self.levels):
            return
        if self.partner[level] is None:
            self.partner[level] = plane
            return
        partner, self.partner[level] = self.partner[level], None
        self._push(level + 1, mean_of_pair(partner, plane))

    def close(self) -> None:
        """Average an odd last plane alone (the stack's end only), flush, wait for every chunk file."""
        from compute_functions.multiscale import mean_of_pair

        try:
            for level in range(len(self.levels) - 1):
                if self.partner[level] is not None:
                    if not self.last:
                        raise RuntimeError(f"level {level}: an unpaired plane inside the stack")
                    odd, self.partner[level] = self.partner[level], None
                    self._push(level + 1, mean_of_pair(odd, odd))
            for level in self.levels:
                level.close()
        finally:
            self.pool.shutdown(wait=True)


def merge_pieces(store: SlabStore) -> None:
    """Write the chunk layers that several workers shared (their pieces, concatenated), once."""
    import zarr

    from compute_functions.multiscale import _ChunkWriter, _codecs, _wait

    root = Path(store.path)
    pieces: dict[tuple[int, int], list[Path]] = {}
    group = zarr.open_group(zarr.storage.LocalStore(root), mode="r")
    for path in sorted((root / PIECES).glob("*.npy")):
        level, start = (int(x) for x in path.stem.split("-"))
        depth = store.layout.level_chunks(level)[0]
        pieces.setdefault((level, start - start % depth), []).append(path)
    encoder = _codecs(store.compressor, store.zarr_format)[1]
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="onepass-merge") as pool:
        for (level, layer), paths in sorted(pieces.items()):
            writer = _ChunkWriter(group[str(level)], root, encoder, pool)
            parts = [np.load(p) for p in paths]
            starts = [int(p.stem.split("-")[1]) for p in paths]
            ends = [start + len(part) for start, part in zip(starts, parts, strict=True)]
            block = np.concatenate(parts)
            expected = min(layer + writer.chunks[0], writer.shape[0]) - layer
            if starts[0] != layer or starts[1:] != ends[:-1] or len(block) != expected:
                raise RuntimeError(f"level {level}: layer at plane {layer} has {len(block)} of {expected} planes")
            _wait(writer.submit(layer, block))
    shutil.rmtree(root / PIECES)


def seal(store: SlabStore, tiff_dir: Path, zarr_path: Path) -> Path:
    """Record the TIFF stack and layout in the store and move it to :func:`staged_path` (replacing any)."""
    root = Path(store.path)
    seal_data = {
        "fingerprint": fingerprint(tiff_dir),
        "shapes": [list(s) for s in store.layout.shapes],
        "chunks": list(store.layout.chunks),
        "dtype": store.layout.dtype,
        "compressor": store.compressor,
        "ngff": store.ngff,
    }
    (root / SEAL).write_text(json.dumps(seal_data))
    staged = staged_path(zarr_path)
    discard(zarr_path)
    root.rename(staged)
    return staged
