"""Multiscale OME-Zarr from a reconstruction's TIFF stack, streamed in bounded memory.

``python -m compute_functions.multiscale TIFF_DIR [--zarr OUT] [--raw SCAN.h5]`` writes ``rec<dataset>.zarr``
beside ``TIFF_DIR``: level 0 is the TIFFs bit for bit, each further level halves z, y and x by the mean of
2x2x2 blocks, until the smallest dimension would drop below `MIN_LEVEL_SIZE`. The stack is read in slabs of
one chunk layer (double-buffered: the next slab is read while this one is written); each slab is written to
level 0 and pushed down the pyramid, where every level keeps only one chunk layer of its own. Buffers take
about ``2.5 * chunk_depth * slice_bytes`` whatever the number of slices, and the chunk depth is lowered for
very large slices to keep that under ``memory_mb``. See docs/multiscale.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from compute_functions.errors import print_summary
from compute_functions.permissions import makedirs
from compute_functions.preview import write_preview
from compute_functions.tiff_stack import StackError, TiffStack, open_tiff_stack

log = logging.getLogger(__name__)

NGFF_VERSIONS = ("0.4", "0.5")
#: The preview PNG written into the store (its root holds it beside the NGFF metadata).
PREVIEW_NAME = "preview.png"
COMPRESSORS = ("lz4", "zstd", "none")
DEFAULT_CHUNK = (32, 256, 256)
MIN_CHUNK_DEPTH = 4
MIN_LEVEL_SIZE = 16
DEFAULT_MEMORY_MB = 640
# Two slabs (one read ahead) + the chunk layers of levels >= 1 (1/4 + 1/16 + ...) + one plane of temporaries.
BUFFER_LAYERS = 2.5
AXES = ("z", "y", "x")


class MultiscaleError(ValueError):
    """Bad input for the multiscale step; the message is one line fit for a user."""


# ---------------------------------------------------------------------------------------------------- planning


def default_levels(shape: Sequence[int], min_size: int = MIN_LEVEL_SIZE) -> int:
    """Levels such that each one halves every axis and the smallest axis of the last is still >= ``min_size``.

    With ``min_size=1`` this is the most levels possible: halving stops once an axis is down to one voxel.
    """
    levels, current = 1, tuple(shape)
    while min(current) >= 2:
        current = tuple(math.ceil(s / 2) for s in current)
        if min(current) < min_size:
            break
        levels += 1
    return levels


def level_shapes(shape: Sequence[int], levels: int) -> list[tuple[int, ...]]:
    """Shape of every level: each axis ``ceil(n / 2)`` of the level above."""
    shapes = [tuple(shape)]
    for _ in range(levels - 1):
        shapes.append(tuple(math.ceil(s / 2) for s in shapes[-1]))
    return shapes


def downsample_mean(block: np.ndarray) -> np.ndarray:
    """Mean of 2x2x2 blocks of a (z, y, x) array; an odd trailing edge averages the voxels it has.

    Edges are padded by repeating the last plane/row/column, which weights the present voxels equally, so a
    partial block's value is exactly the mean of its voxels. Floats are reduced in their own precision,
    integers in float32 and rounded back. Works one pair of planes at a time (:func:`mean_of_pair`).
    """
    nz, ny, nx = block.shape
    out = np.empty(((nz + 1) // 2, (ny + 1) // 2, (nx + 1) // 2), dtype=block.dtype)
    for i in range(out.shape[0]):
        mean_of_pair(block[2 * i], block[min(2 * i + 1, nz - 1)], out=out[i])
    return out


def mean_of_pair(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """One plane of the next level from two planes (``b`` is ``a`` for an odd last plane): the sum of the two,
    then of row pairs, then of column pairs (an odd last row/column doubled), times 1/8."""
    work = a.dtype if a.dtype.kind == "f" else np.dtype(np.float32)
    ny, nx = a.shape
    s = np.add(a, b, dtype=work)
    rows = np.empty(((ny + 1) // 2, nx), dtype=work)
    np.add(s[0 : ny - 1 : 2] if ny % 2 else s[0::2], s[1::2], out=rows[: ny // 2])
    if ny % 2:
        np.add(s[-1], s[-1], out=rows[-1])
    del s
    mean = np.empty(((ny + 1) // 2, (nx + 1) // 2), dtype=work)
    np.add(rows[:, 0 : nx - 1 : 2] if nx % 2 else rows[:, 0::2], rows[:, 1::2], out=mean[:, : nx // 2])
    if nx % 2:
        np.add(rows[:, -1], rows[:, -1], out=mean[:, -1])
    mean *= work.type(0.125)
    if a.dtype.kind in "iu":
        info = np.iinfo(a.dtype)
        np.clip(np.rint(mean, out=mean), info.min, info.max, out=mean)
    if out is None:
        return mean.astype(a.dtype, copy=False)
    out[...] = mean
    return out


def choose_chunk_depth(requested: int, slice_nbytes: int, memory_mb: float) -> int:
    """``requested`` halved until the streaming buffers (~2.5 chunk layers) fit in ``memory_mb``."""
    depth = requested
    while depth > MIN_CHUNK_DEPTH and BUFFER_LAYERS * depth * slice_nbytes > memory_mb * 1e6:
        depth //= 2
    return max(depth, 1)


# ---------------------------------------------------------------------------------------------------- pyramid


class _ChunkWriter:
    """Encodes and writes whole chunk layers of one array straight to its files, on a shared thread pool.

    The array (shape, chunks, codec, key encoding) was created by zarr; this only produces the chunk files,
    exactly as zarr would: edge chunks padded to the full chunk shape with the fill value 0, and all-zero chunks
    (bit for bit, so -0.0 is kept) not written at all. Bypassing zarr's per-chunk machinery halves the CPU
    per byte, which is what bounds throughput on a small shared machine.
    """

    def __init__(self, array: zarr.Array, root: Path, encoder: Any, pool: ThreadPoolExecutor):
        self.array = array
        self.root = root / array.path
        self.encoder = encoder
        self.pool = pool
        self.shape = array.shape
        self.chunks = array.chunks

    def submit(self, z: int, block: np.ndarray | list[np.ndarray]) -> list[Future]:
        """Queue the chunks of planes ``z .. z + len(block)``: ``z`` on a chunk boundary, a whole number of
        chunk layers or the array's end. ``block`` (an array, or a list of 2-D planes: no copy into a slab) must
        not change until the futures are done."""
        cz, cy, cx = self.chunks
        if z % cz or (len(block) % cz and z + len(block) != self.shape[0]):
            raise ValueError(f"planes {z}..{z + len(block)} are not whole chunk layers of {self.array.path}")
        futures = []
        for z0 in range(0, len(block), cz):
            for y0 in range(0, self.shape[1], cy):
                for x0 in range(0, self.shape[2], cx):
                    key = self.array.metadata.encode_chunk_key(((z + z0) // cz, y0 // cy, x0 // cx))
                    if isinstance(block, list):
                        view: Any = [plane[y0 : y0 + cy, x0 : x0 + cx] for plane in block[z0 : z0 + cz]]
                    else:
                        view = block[z0 : z0 + cz, y0 : y0 + cy, x0 : x0 + cx]
                    futures.append(self.pool.submit(self._write_chunk, key, view))
        return futures

    def _write_chunk(self, key: str, view: np.ndarray | list[np.ndarray]) -> None:
        if isinstance(view, list):
            view = np.stack(view)
        if view.shape == self.chunks:
            data = np.ascontiguousarray(view)
        else:
            data = np.zeros(self.chunks, dtype=view.dtype)
            data[: view.shape[0], : view.shape[1], : view.shape[2]] = view
        if not data.view(np.uint8).any():
            return
        payload = data if self.encoder is None else self.encoder.encode(data)
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(memoryview(payload).cast("B"))


def _wait(futures: list[Future]) -> None:
    """Wait for all, then raise the first failure (so no task still reads a buffer about to be reused)."""
    for future in futures:
        future.exception()
    for future in futures:
        future.result()


class _Level:
    """One pyramid level below 0: pairs planes from the level above, buffers one chunk layer, writes it."""

    def __init__(self, writer: _ChunkWriter):
        self.writer = writer
        self.buffer = np.empty((writer.chunks[0], *writer.shape[1:]), dtype=writer.array.dtype)
        self.filled = 0
        self.z = 0
        self.leftover: np.ndarray | None = None

    def push(self, planes: np.ndarray) -> np.ndarray:
        """Take planes of the level above; return this level's new planes (to feed the level below)."""
        if self.leftover is not None:
            planes = np.concatenate([self.leftover, planes], axis=0)
            self.leftover = None
        even = len(planes) - len(planes) % 2
        if even < len(planes):
            self.leftover = planes[even:].copy()
        if even == 0:
            return planes[:0, ::2, ::2]
        down = downsample_mean(planes[:even])
        self._append(down)
        return down

    def finish(self, planes: np.ndarray) -> np.ndarray:
        """Push the last planes of the level above, average an odd last plane alone, flush; return new planes."""
        down = self.push(planes)
        if self.leftover is not None:
            tail = downsample_mean(self.leftover)
            self.leftover = None
            self._append(tail)
            down = np.concatenate([down, tail], axis=0)
        if self.filled:
            self._write()
        if self.z != self.writer.shape[0]:
            raise RuntimeError(f"level {self.writer.array.path}: wrote {self.z} of {self.writer.shape[0]} planes")
        return down

    def _append(self, planes: np.ndarray) -> None:
        i = 0
        while i < len(planes):
            n = min(len(planes) - i, len(self.buffer) - self.filled)
            self.buffer[self.filled : self.filled + n] = planes[i : i + n]
            self.filled += n
            i += n
            if self.filled == len(self.buffer):
                self._write()

    def _write(self) -> None:
        _wait(self.writer.submit(self.z, self.buffer[: self.filled]))
        self.z += self.filled
        self.filled = 0


@dataclass(frozen=True)
class StoreLayout:
    """Shapes and chunks of every level of a store, and its dtype (picklable: the one-pass workers get it)."""

    shapes: tuple[tuple[int, ...], ...]
    chunks: tuple[int, int, int]
    dtype: str

    def level_chunks(self, level: int) -> tuple[int, ...]:
        return tuple(min(c, s) for c, s in zip(self.chunks, self.shapes[level], strict=True))


def store_layout(
    shape: Sequence[int],
    dtype: Any,
    *,
    levels: int | None = None,
    chunk: Sequence[int] = DEFAULT_CHUNK,
    memory_mb: float = DEFAULT_MEMORY_MB,
) -> StoreLayout:
    """The levels and chunks of a stack's store (the chunk depth lowered to fit ``memory_mb``, y/x widened)."""
    shape = tuple(int(s) for s in shape)
    max_levels = default_levels(shape, min_size=1)
    if levels is None:
        levels = default_levels(shape)
    if not 1 <= levels <= max_levels:
        raise MultiscaleError(f"levels must be 1..{max_levels} for shape {shape}, not {levels}")
    if len(chunk) != 3 or min(chunk) < 1:
        raise MultiscaleError(f"chunk must be three positive sizes (z, y, x), not {tuple(chunk)}")
    dtype = np.dtype(dtype)
    depth = choose_chunk_depth(int(chunk[0]), shape[1] * shape[2] * dtype.itemsize, memory_mb)
    widen = math.isqrt(int(chunk[0]) // depth)  # a shallower chunk gets wider: about as many bytes, as few files
    chunks = (depth, int(chunk[1]) * widen, int(chunk[2]) * widen)
    return StoreLayout(tuple(level_shapes(shape, levels)), chunks, dtype.str)


def create_arrays(path: Path, layout: StoreLayout, codec: Any, zarr_format: int) -> list[zarr.Array]:
    """A fresh group at ``path`` with one empty array per level (zarr writes their metadata)."""
    group = zarr.open_group(zarr.storage.LocalStore(path), mode="w", zarr_format=zarr_format)
    arrays = []
    for level, shape in enumerate(layout.shapes):
        kwargs: dict[str, Any] = {"compressors": codec}
        if zarr_format == 2:
            kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        else:
            kwargs["dimension_names"] = AXES
        chunks = layout.level_chunks(level)
        arrays.append(
            group.create_array(str(level), shape=shape, chunks=chunks, dtype=layout.dtype, fill_value=0, **kwargs)
        )
    return arrays


# ---------------------------------------------------------------------------------------------------- writing


def resolve_pixel_size(stack: TiffStack, raw: str | Path | None, pixel_size_um: float | None) -> tuple[float, str]:
    """The µm pixel size and where it came from: argument, ``--raw`` scan, TIFF metadata, else 1.0 (warned).

    The scan's detector pixel is multiplied by the stack's row step, which is the binning factor.
    """
    if pixel_size_um is not None:
        if not (math.isfinite(pixel_size_um) and pixel_size_um > 0):
            raise MultiscaleError(f"pixel size must be a positive number of µm, not {pixel_size_um}")
        return float(pixel_size_um), "argument"
    if raw is not None:
        size = _raw_pixel_size_um(Path(raw)) * stack.step  # a binned reconstruction: rows named b apart
        if stack.step > 1:
            log.info("slices are %d detector rows apart: pixel size %.4g µm (binned)", stack.step, size)
        if stack.pixel_size_um is not None and not math.isclose(size, stack.pixel_size_um, rel_tol=1e-3):
            log.warning("pixel size %.4g µm from %s, but the TIFFs say %.4g µm", size, raw, stack.pixel_size_um)
        return size, "raw"
    if stack.pixel_size_um is not None:
        return stack.pixel_size_um, "tiff"
    log.warning("no pixel size from --raw or the TIFF metadata of %s: using 1.0 µm", stack.directory)
    return 1.0, "default"


def _raw_pixel_size_um(raw: Path) -> float:
    import h5py

    from compute_functions.scan_io import read_metadata

    if not raw.is_file():
        raise MultiscaleError(f"{raw}: no such scan file")
    if not h5py.is_hdf5(raw):
        raise MultiscaleError(f"{raw}: not an HDF5 file")
    try:
        meta = read_metadata(raw)
    except Exception as exc:
        raise MultiscaleError(f"{raw}: cannot read scan metadata ({' '.join(str(exc).split())})") from exc
    if meta.pixel_size_mm is None or not meta.pixel_size_mm > 0:
        raise MultiscaleError(f"{raw}: no detector pixel size in the scan")
    return float(meta.pixel_size_mm) * 1000.0


def _codecs(name: str, zarr_format: int) -> tuple[Any, Any]:
    """(codec for zarr's array metadata, numcodecs encoder producing the same bytes) for a compressor name."""
    if name not in COMPRESSORS:
        raise MultiscaleError(f"compressor must be one of {', '.join(COMPRESSORS)}, not {name!r}")
    if name == "none":
        return None, None
    from numcodecs import Blosc

    encoder = Blosc(cname=name, clevel=1, shuffle=Blosc.SHUFFLE)
    if zarr_format == 2:
        return encoder, encoder
    from zarr.codecs import BloscCodec

    return BloscCodec(cname=name, clevel=1, shuffle="shuffle"), encoder


def _datasets(levels: int, pixel_size_um: float) -> list[dict[str, Any]]:
    """NGFF datasets: scale doubles per level; the translation puts each mean-voxel at the centre of its block."""
    datasets = []
    for level in range(levels):
        factor = 2**level
        datasets.append(
            {
                "path": str(level),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [pixel_size_um * factor] * 3},
                    {"type": "translation", "translation": [pixel_size_um * (factor - 1) / 2] * 3},
                ],
            }
        )
    return datasets


def _multiscales(name: str, levels: int, pixel_size_um: float, ngff: str) -> dict[str, Any]:
    multiscale = {
        "name": name,
        "axes": [{"name": axis, "type": "space", "unit": "micrometer"} for axis in AXES],
        "datasets": _datasets(levels, pixel_size_um),
        "type": "mean",
        "metadata": {"description": "2x2x2 block mean per level", "method": "compute_functions.multiscale"},
    }
    if ngff == "0.4":
        return {"multiscales": [{"version": "0.4", **multiscale}]}
    return {"ome": {"version": "0.5", "multiscales": [multiscale]}}


def write_multiscale(
    tiff_dir: str | Path,
    zarr_path: str | Path | None = None,
    *,
    raw: str | Path | None = None,
    pixel_size_um: float | None = None,
    levels: int | None = None,
    chunk: Sequence[int] = DEFAULT_CHUNK,
    workers: int = 2,
    ngff: str = "0.4",
    compressor: str = "lz4",
    memory_mb: float = DEFAULT_MEMORY_MB,
    preview: bool = True,
) -> dict[str, Any]:
    """Write the TIFF stack ``tiff_dir`` as a multiscale OME-Zarr and return a JSON-serialisable summary.

    With ``preview`` the store also holds ``preview.png`` (compute_functions.preview: the three central
    orthogonal slices), so the preview travels with the Zarr for the run's notes and SciCat.

    ``zarr_path`` defaults to ``rec<dataset>.zarr`` beside ``tiff_dir``. The µm scale comes from
    ``pixel_size_um``, else ``raw`` (the scan's HDF5), else the TIFFs' ``pixel_size_um``, else 1.0 with a
    warning. ``chunk`` is (z, y, x); if the buffers would not fit in ``memory_mb`` its depth is lowered (y and x
    widened by the square root of that factor, to keep the file count down).
    ``ngff`` "0.4" writes Zarr v2, "0.5" Zarr v3. The store is built at a hidden sibling path and renamed into
    place, replacing an earlier result; a failure leaves no partial store. Raises `MultiscaleError` with a
    one-line reason on bad input.
    """
    started = time.perf_counter()
    try:
        stack = open_tiff_stack(tiff_dir)
    except StackError as exc:
        raise MultiscaleError(str(exc)) from exc
    if ngff not in NGFF_VERSIONS:
        raise MultiscaleError(f"ngff must be one of {', '.join(NGFF_VERSIONS)}, not {ngff!r}")
    zarr_format = 2 if ngff == "0.4" else 3
    codecs = _codecs(compressor, zarr_format)
    scale, scale_source = resolve_pixel_size(stack, raw, pixel_size_um)
    layout = store_layout(stack.shape, stack.dtype, levels=levels, chunk=chunk, memory_mb=memory_mb)
    shapes, chunks, levels = layout.shapes, layout.chunks, len(layout.shapes)

    out = Path(zarr_path) if zarr_path is not None else stack.directory.parent / f"rec{stack.dataset}.zarr"
    out = out.absolute()
    makedirs(out.parent)  # folders made above the store are shared (compute_functions/permissions.py)
    _remove_leftovers(out)
    from compute_functions.zarr_handoff import take_staged

    staged = take_staged(out, stack, layout, compressor, ngff)  # written by the reconstruction's workers
    tmp = staged or out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        if staged is None:
            _write_store(stack, tmp, layout, codecs, zarr_format, max(1, workers))
        _write_attrs(zarr.open_group(zarr.storage.LocalStore(tmp), mode="r+"), stack, levels, scale, ngff)
        if preview:
            write_preview(tmp, tmp / PREVIEW_NAME)
        _replace(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, StackError):  # a slice that passed the header check but cannot be decoded
            raise MultiscaleError(str(exc)) from exc
        raise
    seconds = time.perf_counter() - started
    return {
        "zarr": str(out),
        "ngff": ngff,
        "zarr_format": zarr_format,
        "dataset": stack.dataset,
        "levels": levels,
        "shapes": [list(s) for s in shapes],
        "chunks": list(chunks),
        "dtype": str(stack.dtype),
        "compressor": compressor,
        "pixel_size_um": scale,
        "pixel_size_source": scale_source,
        "scale_um": [[scale * 2**level] * 3 for level in range(levels)],
        "bytes": stack.nbytes,
        "seconds": round(seconds, 3),
        "mb_per_s": round(stack.nbytes / 1e6 / seconds, 1) if seconds > 0 else None,
        "preview": str(out / PREVIEW_NAME) if preview else None,
        "one_pass": staged is not None,
    }


def _write_store(
    stack: TiffStack, path: Path, layout: StoreLayout, codecs: tuple[Any, Any], zarr_format: int, workers: int
) -> None:
    """Create the group and arrays with zarr, then stream the stack through the pyramid into chunk files."""
    arrays = create_arrays(path, layout, codecs[0], zarr_format)
    depth = arrays[0].chunks[0]
    buffers = [np.empty((depth, *stack.shape[1:]), dtype=stack.dtype) for _ in range(2)]
    starts = range(0, stack.shape[0], depth)

    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="multiscale-read") as reader,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="multiscale-write") as pool,
    ):
        level0 = _ChunkWriter(arrays[0], path, codecs[1], pool)
        pyramid = [_Level(_ChunkWriter(a, path, codecs[1], pool)) for a in arrays[1:]]
        reading = reader.submit(stack.read_into, 0, buffers[0])
        for k, z in enumerate(starts):
            n = reading.result()
            slab = buffers[k % 2][:n]
            if k + 1 < len(starts):  # the other buffer's chunks were all written in the previous iteration
                reading = reader.submit(stack.read_into, starts[k + 1], buffers[(k + 1) % 2])
            writing = level0.submit(z, slab)
            try:
                planes = slab
                last = k + 1 == len(starts)
                for level in pyramid:
                    planes = level.finish(planes) if last else level.push(planes)
            finally:
                _wait(writing)
        reading.result()


def _write_attrs(group: zarr.Group, stack: TiffStack, levels: int, scale: float, ngff: str) -> None:
    """The NGFF metadata, then the options the reconstruction used (from its first TIFF)."""
    group.attrs.update(_multiscales(stack.dataset, levels, scale, ngff))
    recon = reconstruction_attrs(stack)
    if recon:
        group.attrs["reconstruction"] = recon


def reconstruction_attrs(stack: TiffStack) -> dict[str, Any]:
    """What ``compute_functions.reconstruct`` recorded in the first TIFF (options, centre, engine...), minus ``row``."""
    from compute_functions.tiff_stack import _description

    meta = _description(stack.files[0])
    meta.pop("row", None)
    return json.loads(json.dumps(meta, default=str))


def _remove_leftovers(out: Path) -> None:
    """Delete hidden ``.<name>.partial-*`` / ``.old-*`` siblings that a killed earlier run of ``out`` left."""
    for stale in out.parent.glob(f".{out.name}.*"):
        if stale.name.startswith((f".{out.name}.partial-", f".{out.name}.old-")):
            log.info("removing %s left by an interrupted run", stale)
            shutil.rmtree(stale, ignore_errors=True)


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished store ``tmp`` to ``out``; an existing ``out`` is swapped away first, then deleted."""
    old = None
    if out.exists() or out.is_symlink():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


# ---------------------------------------------------------------------------------------------------- CLI


def _chunk(text: str) -> tuple[int, int, int]:
    parts = tuple(int(p) for p in text.split(","))
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("expected Z,Y,X")
    return parts  # type: ignore[return-value]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m compute_functions.multiscale",
        description="Write a reconstruction's TIFF stack as a multiscale OME-Zarr (prints a JSON summary).",
    )
    parser.add_argument("tiff_dir", metavar="TIFF_DIR", help="folder rec<dataset>/ of <dataset>_<NNNNN>.tiff")
    parser.add_argument("--zarr", metavar="OUT", help="output store (default rec<dataset>.zarr beside TIFF_DIR)")
    parser.add_argument("--raw", metavar="SCAN.h5", help="the scan, for the detector pixel size")
    parser.add_argument("--pixel-size-um", type=float, help="pixel size in µm (overrides --raw and the TIFFs)")
    parser.add_argument("--levels", type=int, help="number of pyramid levels (default: until an axis < 16)")
    parser.add_argument("--chunk", type=_chunk, default=DEFAULT_CHUNK, metavar="Z,Y,X", help="chunk shape")
    parser.add_argument("--ngff", choices=NGFF_VERSIONS, default="0.4", help="0.4 = Zarr v2 (default), 0.5 = v3")
    parser.add_argument("--compressor", choices=COMPRESSORS, default="lz4", help="Blosc codec, level 1, shuffle")
    parser.add_argument("--workers", type=int, default=2, help="threads encoding and writing chunks")
    parser.add_argument("--memory-mb", type=float, default=DEFAULT_MEMORY_MB, help="budget for the slab buffers")
    parser.add_argument("--no-preview", action="store_true", help="do not write preview.png into the store")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return print_summary(
        lambda: write_multiscale(
            args.tiff_dir,
            args.zarr,
            raw=args.raw,
            pixel_size_um=args.pixel_size_um,
            levels=args.levels,
            chunk=args.chunk,
            workers=args.workers,
            ngff=args.ngff,
            compressor=args.compressor,
            memory_mb=args.memory_mb,
            preview=not args.no_preview,
        ),
        (MultiscaleError, OSError),
    )


if __name__ == "__main__":
    sys.exit(main())
