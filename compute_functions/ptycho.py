"""PLACEHOLDER for beamline 7.0.1.2 ptychography: a STXM transmission map from a ptychography scan.

This is not a ptychographic reconstruction. It stands in for the real code (run in its own image at NERSC)
so the 7.0.1.2 pipeline runs end to end: it reads the diffraction patterns of a CXI file
(``/entry_1/data_1/data`` [position, y, x], positions ``/entry_1/sample_1/geometry_1/translation`` [position,
3] in metres), sums each pattern (the transmitted intensity at that position) and grids the sums into an
image: what a scanning transmission X-ray microscope would have recorded. It writes
``<out_dir>/<dataset>_stxm.tiff`` (float32, normalised to the brightest position) and ``summary.json``.

CLI: ``python -m compute_functions.ptycho SCAN.h5 OUT_DIR`` (prints the summary as its last stdout line;
exits 1 with one ``error: ...`` line for an unreadable scan). ``--sample OUT.h5`` writes a synthetic scan.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import h5py
import numpy as np

from compute_functions.errors import print_summary

DATA = "/entry_1/data_1/data"
TRANSLATION = "/entry_1/sample_1/geometry_1/translation"
#: Positions closer than this (metres) are the same grid line of a raster scan.
POSITION_TOLERANCE_M = 1e-10


class PtychoError(ValueError):
    """The scan cannot be read as a ptychography (CXI) scan."""


def stxm_map(intensity: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Grid per-position intensities into an image [y, x]; a raster scan maps one position per pixel."""
    xs = np.round(positions[:, 0] / POSITION_TOLERANCE_M).astype(np.int64)
    ys = np.round(positions[:, 1] / POSITION_TOLERANCE_M).astype(np.int64)
    ux, uy = np.unique(xs), np.unique(ys)
    if len(ux) * len(uy) <= 4 * len(intensity):  # a raster (or close to one): one column per x, one row per y
        col, row = np.searchsorted(ux, xs), np.searchsorted(uy, ys)
        shape = (len(uy), len(ux))
    else:  # scattered positions (e.g. a spiral scan): a square grid of about one position per pixel
        n = max(1, math.ceil(math.sqrt(len(intensity))))
        col = np.minimum(((xs - xs.min()) / max(np.ptp(xs), 1) * n).astype(int), n - 1)
        row = np.minimum(((ys - ys.min()) / max(np.ptp(ys), 1) * n).astype(int), n - 1)
        shape = (n, n)
    total, count = np.zeros(shape), np.zeros(shape)
    np.add.at(total, (row, col), intensity)
    np.add.at(count, (row, col), 1)
    image = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    image = np.where(np.isnan(image), np.nanmean(image), image)
    peak = image.max()
    return (image / peak if peak > 0 else image).astype(np.float32)


def reconstruct(scan_path: str | Path, out_dir: str | Path) -> dict:
    """Write the STXM map of ``scan_path`` into ``out_dir``; return the summary."""
    import tifffile

    scan_path, out_dir = Path(scan_path), Path(out_dir)
    try:
        with h5py.File(scan_path, "r") as f:
            if DATA not in f or TRANSLATION not in f:
                raise PtychoError(f"{scan_path}: not a CXI ptychography scan (needs {DATA} and {TRANSLATION})")
            data, positions = f[DATA], np.asarray(f[TRANSLATION][...], dtype=float)
            if data.ndim != 3 or positions.ndim != 2 or positions.shape[0] != data.shape[0]:
                raise PtychoError(f"{scan_path}: {DATA} {data.shape} and {TRANSLATION} {positions.shape} disagree")
            intensity = np.array([float(data[i].sum(dtype=np.float64)) for i in range(data.shape[0])])
            frame = list(data.shape[1:])
    except OSError as exc:
        raise PtychoError(f"{scan_path}: cannot read: {exc}") from None
    image = stxm_map(intensity, positions)
    dataset = scan_path.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    tiff = out_dir / f"{dataset}_stxm.tiff"
    tifffile.imwrite(tiff, image)
    summary = {
        "placeholder": "STXM map, not a ptychographic reconstruction",
        "dataset": dataset,
        "positions": len(intensity),
        "frame": frame,
        "image": str(tiff),
        "shape": list(image.shape),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def write_sample(path: str | Path, *, grid: int = 8, frame: int = 16) -> Path:
    """A synthetic raster scan of an absorbing disk (transmission 0.2 inside, 1 outside)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    step = 50e-9
    yy, xx = np.mgrid[0:grid, 0:grid]
    centre = (grid - 1) / 2
    transmission = np.where((yy - centre) ** 2 + (xx - centre) ** 2 <= (grid / 4) ** 2, 0.2, 1.0)
    probe = np.exp(-((np.arange(frame) - frame / 2) ** 2) / (frame / 3) ** 2)
    pattern = np.outer(probe, probe) * 100
    with h5py.File(path, "w") as f:
        f.create_dataset(DATA, data=np.stack([pattern * t for t in transmission.ravel()]).astype(np.float32))
        positions = np.stack([xx.ravel() * step, yy.ravel() * step, np.zeros(grid * grid)], axis=1)
        f.create_dataset(TRANSLATION, data=positions)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compute_functions.ptycho", description=__doc__.splitlines()[0])
    parser.add_argument("scan", type=Path, nargs="?")
    parser.add_argument("out_dir", type=Path, nargs="?")
    parser.add_argument("--sample", type=Path, help="write a synthetic scan here and exit")
    args = parser.parse_args(argv)
    if args.sample:
        print(write_sample(args.sample))
        return 0
    if args.scan is None or args.out_dir is None:
        parser.error("SCAN and OUT_DIR are required")
    return print_summary(lambda: reconstruct(args.scan, args.out_dir), (PtychoError,))


if __name__ == "__main__":
    sys.exit(main())
