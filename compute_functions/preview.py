"""Preview PNG of a reconstruction: the three central orthogonal slices (xy | xz | yz) side by side.

Reads only what it shows: from an OME-Zarr the finest pyramid level whose largest axis is <= ``max_size``
(three planes of it); from a TIFF folder the central slice plus one row and one column of every ``step``-th
slice, one slice in memory at a time. Grey levels are stretched between two percentiles of the shown
voxels (exact zeros, e.g. the reconstruction's circular mask, are left out when anything else is there).

    python -m compute_functions.preview SOURCE PNG [--max-size 512]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from compute_functions.tiff_stack import StackError, open_tiff_stack

DEFAULT_MAX_SIZE = 512
GAP = 4


class PreviewError(ValueError):
    """The source cannot be previewed; the message is one line fit for a user."""


def is_zarr(path: Path) -> bool:
    return any((path / name).is_file() for name in ("zarr.json", ".zgroup", ".zarray"))


def central_planes(source: str | Path, max_size: int = DEFAULT_MAX_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xy, xz, yz) central planes of a TIFF folder or (OME-)Zarr, at most about ``max_size`` voxels a side."""
    source = Path(source)
    if not source.is_dir():
        raise PreviewError(f"{source}: no such folder")
    return _zarr_planes(source, max_size) if is_zarr(source) else _tiff_planes(source, max_size)


def _zarr_planes(path: Path, max_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import zarr

    try:
        node = zarr.open(zarr.storage.LocalStore(path, read_only=True), mode="r")
    except Exception as exc:
        raise PreviewError(f"{path}: cannot open Zarr ({' '.join(str(exc).split())})") from exc
    if isinstance(node, zarr.Array):
        array = node
    else:
        attrs = node.attrs.asdict()
        multiscales = attrs.get("ome", attrs).get("multiscales")
        if not multiscales:
            raise PreviewError(f"{path}: no OME-Zarr multiscales metadata")
        paths = [d["path"] for d in multiscales[0]["datasets"]]
        arrays = [node[p] for p in paths]
        array = next((a for a in arrays if max(a.shape[-3:]) <= max_size), arrays[-1])
    if array.ndim < 3 or any(n > 1 for n in array.shape[:-3]):
        raise PreviewError(f"{path}: expected a 3-D (z, y, x) image, found shape {array.shape}")
    lead = (0,) * (array.ndim - 3)
    z, y, x = (n // 2 for n in array.shape[-3:])
    return array[(*lead, z)], array[(*lead, slice(None), y)], array[(*lead, slice(None), slice(None), x)]


def _tiff_planes(path: Path, max_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        stack = open_tiff_stack(path)
        step = max(1, math.ceil(max(stack.shape) / max_size))
        nz, ny, nx = stack.shape
        xy = stack.read_slice(nz // 2)[::step, ::step]
        rows, cols = [], []
        for z in range(0, nz, step):
            plane = stack.read_slice(z)
            rows.append(plane[ny // 2, ::step].copy())
            cols.append(plane[::step, nx // 2].copy())
    except StackError as exc:
        raise PreviewError(str(exc)) from exc
    return xy, np.stack(rows), np.stack(cols)


def contrast_limits(
    planes: Sequence[np.ndarray], percentiles: tuple[float, float] = (0.5, 99.5)
) -> tuple[float, float]:
    """Grey-level window: percentiles of the finite voxels, ignoring exact zeros if other values exist."""
    values = np.concatenate([p[np.isfinite(p)].ravel() for p in planes])
    nonzero = values[values != 0]
    if nonzero.size:
        values = nonzero
    if not values.size:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, percentiles))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def compose(planes: Sequence[np.ndarray], limits: tuple[float, float] | None = None, gap: int = GAP) -> np.ndarray:
    """8-bit image of the planes side by side, top-aligned, separated by ``gap`` black columns."""
    lo, hi = limits or contrast_limits(planes)
    height = max(p.shape[0] for p in planes)
    width = sum(p.shape[1] for p in planes) + gap * (len(planes) - 1)
    canvas = np.zeros((height, width), dtype=np.uint8)
    x = 0
    for plane in planes:
        scaled = (np.nan_to_num(plane.astype(np.float64), nan=lo) - lo) * (255.0 / (hi - lo))
        canvas[: plane.shape[0], x : x + plane.shape[1]] = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        x += plane.shape[1] + gap
    return canvas


def write_preview(
    source: str | Path,
    png_path: str | Path,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    percentiles: tuple[float, float] = (0.5, 99.5),
) -> Path:
    """Write the xy | xz | yz preview of ``source`` (TIFF folder or OME-Zarr) to ``png_path``; return the path."""
    from PIL import Image

    planes = central_planes(source, max_size)
    image = compose(planes, contrast_limits(planes, percentiles))
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = png_path.with_name(f".{png_path.name}.partial-{os.getpid()}")
    try:
        Image.fromarray(image).save(tmp, format="PNG")  # uint8 2-D -> mode "L"
        os.replace(tmp, png_path)
    finally:
        tmp.unlink(missing_ok=True)
    return png_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compute_functions.preview", description=__doc__.splitlines()[0])
    parser.add_argument("source", help="TIFF folder rec<dataset>/ or OME-Zarr rec<dataset>.zarr")
    parser.add_argument("png", help="output PNG")
    parser.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE, help="largest side of a plane, voxels")
    args = parser.parse_args(argv)
    try:
        print(write_preview(args.source, args.png, max_size=args.max_size))
    except (PreviewError, OSError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
