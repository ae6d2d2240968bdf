"""Reconstruct a scan to a float32 TIFF stack ``OUT_DIR/rec<dataset>/<dataset>_<NNNNN>.tiff`` (SPEC §1, §5).

Pipeline, a chunk of detector rows at a time: dark/flat normalisation, clamp, -log, optional binning, ring
(stripe) removal, automatic or given centre, reconstruction, division by the pixel size in cm (1/cm),
circular mask. The stack is written to a hidden sibling folder and renamed into place: a re-run replaces
the previous stack, a crash never leaves a partial ``rec<dataset>/``.

CLI: ``python -m compute_functions.reconstruct SCAN.h5 OUT_DIR [--center C] [--rows A:B] [--engine NAME]``
``[--no-ring-removal] [--ring-strength S] [--binning N]``; prints the JSON summary as its last line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from compute_functions.centre import find_center_pc, opposite_pair
from compute_functions.engines import ENGINES, make_engine, resolve_engine
from compute_functions.preprocessing import RING_METHODS, bin_projections, binned_center, normalize, remove_stripes
from compute_functions.scan_io import Scan, ScanError, open_scan

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 2**20  # projections held in memory per chunk of rows
CENTRE_ROWS = 32  # detector rows used to find the centre


def parse_rows(text: str | None, n_rows: int) -> tuple[int, int]:
    """``"A:B"`` (either side optional) -> a half-open detector row range inside ``[0, n_rows)``."""
    if text is None:
        return 0, n_rows
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0].strip() else 0
        stop = int(parts[1]) if parts[1].strip() else n_rows
    except ValueError:
        raise ScanError(f"bad --rows {text!r}: expected A:B") from None
    if not 0 <= start < stop <= n_rows:
        raise ScanError(f"bad --rows {text!r}: need 0 <= A < B <= {n_rows}")
    return start, stop


def rows_range(rows: str | tuple[int, int] | range | None, n_rows: int) -> tuple[int, int]:
    if rows is None or isinstance(rows, str):
        return parse_rows(rows, n_rows)
    start, stop = (rows.start, rows.stop) if isinstance(rows, range) else rows
    return parse_rows(f"{start}:{stop}", n_rows)


def circular_mask(size: int, ratio: float = 1.0) -> np.ndarray:
    """True inside the circle of radius ``ratio * size / 2`` around the axis pixel ``size // 2``."""
    y, x = np.ogrid[:size, :size]
    c = size // 2
    return (x - c) ** 2 + (y - c) ** 2 <= (ratio * size / 2.0) ** 2


def auto_center(scan: Scan, row_start: int, row_stop: int, min_transmission: float) -> float:
    """Centre (detector columns) by phase correlation of the 0- and 180-degree projections of central rows."""
    first, second = opposite_pair(scan.metadata.theta_deg)
    mid = (row_start + row_stop) // 2
    r0 = max(row_start, mid - CENTRE_ROWS // 2)
    r1 = min(row_stop, r0 + CENTRE_ROWS)
    views = np.stack([scan._data[i, r0:r1, :] for i in (first, second)]).astype(np.float32)
    att = normalize(views, scan.flats((r0, r1)), scan.darks((r0, r1)), min_transmission=min_transmission)
    return find_center_pc(att[0], att[1])


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """A fresh hidden sibling of ``final`` that replaces ``final`` when the block succeeds; removed otherwise."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
    if final.exists():
        final.rename(old)  # the old stack stays whole until the new one is in place
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def write_tiff(path: Path, image: np.ndarray, meta: dict[str, Any]) -> None:
    import tifffile

    tifffile.imwrite(path, image.astype(np.float32, copy=False), description=json.dumps(meta), metadata=None)


def reconstruct_scan(
    scan_path: str | Path,
    out_dir: str | Path,
    *,
    rows: str | tuple[int, int] | range | None = None,
    center: float | None = None,
    ring_removal: bool = True,
    ring_method: str = "sorting",
    ring_strength: float = 21.0,
    engine: str = "auto",
    binning: int = 1,
    filter_name: str = "shepp",
    min_transmission: float = 0.01,
    mask_ratio: float | None = 1.0,
    nthreads: int | None = None,
    chunk_rows: int | None = None,
) -> dict[str, Any]:
    """Reconstruct detector ``rows`` of a scan into ``out_dir/rec<dataset>/``; returns a JSON-able summary.

    ``center`` is in detector columns (unbinned); ``None`` finds it. ``binning`` averages b x b pixels (a
    quick preview): slice files are then named by the first detector row of each group of ``b`` rows.
    """
    if binning < 1:
        raise ScanError(f"bad binning {binning}: must be >= 1")
    if ring_method not in RING_METHODS:
        raise ScanError(f"unknown ring removal method {ring_method!r}")
    try:
        engine_name = resolve_engine(engine)
    except ValueError as exc:
        raise ScanError(str(exc)) from None
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    with open_scan(scan_path) as scan:
        meta = scan.metadata
        row_start, row_stop = rows_range(rows, meta.n_rows)
        n_groups = (row_stop - row_start) // binning
        if n_groups < 1 or meta.n_cols // binning < 8:
            raise ScanError(f"binning {binning} leaves nothing of rows {row_start}:{row_stop} x {meta.n_cols} columns")
        if center is None:
            t = time.perf_counter()
            center = auto_center(scan, row_start, row_stop, min_transmission)
            seconds["centre"] = time.perf_counter() - t
        elif not 0 <= center < meta.n_cols:
            raise ScanError(f"bad center {center}: outside 0..{meta.n_cols - 1}")
        n_cols = meta.n_cols // binning
        c_binned = binned_center(center, binning)
        recon = make_engine(engine_name, meta.theta_rad, n_cols, filter_name=filter_name, nthreads=nthreads)
        pixel_um = None if meta.pixel_size_um is None else meta.pixel_size_um * binning
        scale = 1.0 if pixel_um is None else 1.0 / (pixel_um * 1e-4)  # 1/pixel -> 1/cm
        mask = circular_mask(n_cols, mask_ratio) if mask_ratio else None
        per_row = meta.n_angles * meta.n_cols * 4
        groups_per_chunk = chunk_rows or max(1, CHUNK_BYTES // (per_row * binning))
        final = Path(out_dir) / f"rec{meta.dataset}"
        for key in ("read", "normalize", "rings", "reconstruct", "write"):
            seconds[key] = 0.0
        with atomic_dir(final) as tmp:
            for g0 in range(0, n_groups, groups_per_chunk):
                g1 = min(n_groups, g0 + groups_per_chunk)
                r0, r1 = row_start + g0 * binning, row_start + g1 * binning
                t = time.perf_counter()
                slab = scan.read_sinograms(r0, r1)
                flats, darks = scan.flats((r0, r1)), scan.darks((r0, r1))
                seconds["read"] += time.perf_counter() - t
                t = time.perf_counter()
                att = bin_projections(normalize(slab, flats, darks, min_transmission=min_transmission), binning)
                sinos = np.ascontiguousarray(np.moveaxis(att, 1, 0))  # [row, angle, column]
                del slab, att
                seconds["normalize"] += time.perf_counter() - t
                if ring_removal:
                    t = time.perf_counter()
                    for i in range(sinos.shape[0]):
                        sinos[i] = remove_stripes(sinos[i], method=ring_method, strength=ring_strength)
                    seconds["rings"] += time.perf_counter() - t
                t = time.perf_counter()
                images = recon(sinos, c_binned) * np.float32(scale)
                if mask is not None:
                    images[:, ~mask] = 0.0
                seconds["reconstruct"] += time.perf_counter() - t
                t = time.perf_counter()
                for i, image in enumerate(images):
                    row = r0 + i * binning
                    tags = {
                        "dataset": meta.dataset,
                        "row": row,
                        "pixel_size_um": pixel_um,
                        "units": "1/cm" if pixel_um is not None else "1/pixel",
                        "center": center,
                        "engine": engine_name,
                        "binning": binning,
                        "ring_removal": ring_method if ring_removal else None,
                        "filter": filter_name,
                    }
                    write_tiff(tmp / f"{meta.dataset}_{row:05d}.tiff", image, tags)
                seconds["write"] += time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    return {
        "dataset": meta.dataset,
        "tiff_dir": str(final),
        "n_slices": n_groups,
        "rows": [row_start, row_start + n_groups * binning],
        "center": round(float(center), 3),
        "engine": engine_name,
        "binning": binning,
        "pixel_size_um": pixel_um,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compute_functions.reconstruct", description=__doc__.split("\n")[0])
    parser.add_argument("scan", type=Path, help="Data Exchange HDF5 scan")
    parser.add_argument("out_dir", type=Path, help="folder that receives rec<dataset>/")
    parser.add_argument("--center", type=float, default=None, help="rotation axis in detector columns (default: auto)")
    parser.add_argument("--rows", default=None, help="detector rows A:B (half-open; default all)")
    parser.add_argument("--engine", default="auto", choices=ENGINES)
    parser.add_argument("--no-ring-removal", action="store_true")
    parser.add_argument("--ring-method", default="sorting", choices=RING_METHODS)
    parser.add_argument("--ring-strength", type=float, default=21.0, help="sorting: window (px); fw: sigma")
    parser.add_argument("--binning", type=int, default=1)
    parser.add_argument("--filter", default="shepp", dest="filter_name")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = reconstruct_scan(
            args.scan,
            args.out_dir,
            rows=args.rows,
            center=args.center,
            ring_removal=not args.no_ring_removal,
            ring_method=args.ring_method,
            ring_strength=args.ring_strength,
            engine=args.engine,
            binning=args.binning,
            filter_name=args.filter_name,
            nthreads=args.threads,
        )
    except (ScanError, OSError) as exc:
        print(f"reconstruct: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
