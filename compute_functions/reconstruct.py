"""Reconstruct a scan to a TIFF stack ``OUT_DIR/rec<dataset>/<dataset>_<NNNNN>.tiff`` (SPEC §1, §5).

The options are the ``recon`` conf (:mod:`compute_functions.options`, ``docs/recon-options.md``). Order, one
slab of detector rows at a time: read → outliers 1-D / 2-D → flat/dark normalisation, clamp, -log → beam
hardening → sinogram ring filter → binning → 360°→180° stitching → reconstruction → 1/cm, circular mask → polar
ring filter → cast → TIFF. Corrections that mix rows (tilt, lens distortion, phase retrieval) run after beam
hardening in a first pass over whole projections (a chunk of projections at a time, into a scratch file), and the
sinogram steps then read their rows from it: memory stays bounded whatever margin of rows they need.

The centre is found once (``center_method``), from the rows being reconstructed. Slabs are spread over worker
processes (one thread each); each writes its slices into a hidden sibling folder, renamed into place when
all succeed: a re-run replaces the previous stack, a crash never leaves a partial ``rec<dataset>/``.

CLI: ``python -m compute_functions.reconstruct SCAN.h5 OUT_DIR [--options JSON] [--center C] [--rows A:B]``
``[--engine NAME] [--no-ring-removal] [--ring-method M] [--ring-strength S] [--binning N] [--filter F]``
``[--threads N] [--workers N] [--no-zarr]``; prints the JSON summary as its last stdout line. A bad scan or option
(:class:`compute_functions.errors.ScanError`) exits 2 with one stderr line ``reconstruct: <reason>``; any
other failure exits 1 with a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import math
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compute_functions import options as opts
from compute_functions.errors import EXIT_DATA_ERROR, ScanError, data_error_exit
from compute_functions.permissions import makedirs
from compute_functions.scan_io import DATA, Scan, open_scan

log = logging.getLogger(__name__)

CHUNK_BYTES = 128 * 2**20  # float32 projections held in memory per slab, per worker
CENTRE_ROWS = 32  # detector rows used by the pc centre
CENTRE_SINO_ROWS = 8  # detector rows averaged into the sinogram of the vo, nm and 360-degree centres
MIN_SLICES_PER_WORKER = 4  # fewer slices than this per extra worker: stay in one process
SLICES_PER_CALL = 2  # slices 2k, 2k + 1 reconstructed together (the nufft engine's pairs: one FFT for two)
FFTW_MEASURE_SLICES = 32  # a worker with this many slices lets FFTW time its plans (~7 s once, ~0.2 s/slice less)
REUSE_BYTES = 256 * 2**20  # freed blocks up to this size stay in the process for reuse (reuse_freed_memory)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
DEFAULT_ENERGY_KEV = 24.0
DEFAULT_DISTANCE_MM = 75.0
STEPS = ("setup", "read", "normalize", "rings", "corrections", "reconstruct", "write", "zarr")


def _rows_text(rows: Any) -> str | None:
    """Older callers pass rows as ``(a, b)``, ``range`` or ``"a:b"``; the options take ``"a:b"``."""
    if rows is None or isinstance(rows, str):
        return rows
    if isinstance(rows, range):
        return f"{rows.start}:{rows.stop}" + (f":{rows.step}" if rows.step != 1 else "")
    try:
        start, stop = rows
    except (TypeError, ValueError):
        raise ScanError(f"rows: {rows!r} is not A:B") from None
    return f"{int(start)}:{int(stop)}"


def circular_mask(size: int, ratio: float = 1.0) -> np.ndarray:
    """True inside the circle of radius ``ratio * size / 2`` around the axis pixel ``size // 2``."""
    y, x = np.ogrid[:size, :size]
    c = size // 2
    return (x - c) ** 2 + (y - c) ** 2 <= (ratio * size / 2.0) ** 2


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """A fresh hidden sibling of ``final`` that replaces ``final`` when the block succeeds; removed otherwise.
    Folders made above ``final`` are shared (2775: compute_functions/permissions.py)."""
    makedirs(final.parent)
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

    tifffile.imwrite(path, image, description=json.dumps(meta), metadata=None)


# --------------------------------------------------------------------------------------------------------
# The plan: everything a worker needs, decided once in the parent (picklable).
# --------------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    scan_path: str
    dataset: str
    options: dict[str, Any]
    n_rows: int
    n_cols: int
    proj_index: np.ndarray  # projections used (sorted file indices)
    proj_slice: tuple[int, int, int]  # the file range read (start, stop, step) before dropping ignored ones
    proj_keep: np.ndarray  # positions kept inside that range
    theta_deg: np.ndarray  # angles of proj_index minus angle_offset
    groups: list[int]  # first detector row of every output slice
    binning: int
    engine: str
    filter_name: str
    pixel_um: float | None  # detector pixel (unbinned) after any override
    margin: int = 0  # geo_margin + phase_margin
    geo_margin: int = 0
    phase_margin: int = 0
    geometry: dict[str, Any] | None = None
    phase: dict[str, float] | None = None
    center: float | None = None  # detector columns, unbinned
    rec_theta_deg: np.ndarray | None = None
    rec_center: float | None = None
    rec_size: int | None = None
    tmp_dir: str = ""
    nthreads: int = 1
    chunk_groups: int = 1
    extra_tags: dict[str, Any] = field(default_factory=dict)
    slab_store: Any = None  # compute_functions.zarr_slabs.SlabStore: the workers also write the Zarr

    @property
    def out_pixel_um(self) -> float | None:
        return None if self.pixel_um is None else self.pixel_um * self.binning

    @property
    def scale(self) -> float:
        return 1.0 if self.out_pixel_um is None else 1.0 / (self.out_pixel_um * 1e-4)  # 1/pixel -> 1/cm


def _projection_selection(o: dict[str, Any], n_angles: int) -> tuple[tuple[int, int, int], np.ndarray, np.ndarray]:
    start, stop, step = (0, n_angles, 1)
    if "projections" in o:
        start, stop, step = opts.parse_range(o["projections"], n_angles, "projections")
    in_range = np.arange(start, stop, step)
    ignore = set(o.get("ignore_projections", []))
    bad = sorted(i for i in ignore if i >= n_angles)
    if bad:
        raise ScanError(f"ignore_projections: {bad[0]} is beyond the {n_angles} projections")
    keep = np.array([i for i, p in enumerate(in_range) if p not in ignore], dtype=np.intp)
    if keep.size < 8:
        raise ScanError(f"projections: only {keep.size} projections left to reconstruct (need at least 8)")
    return (start, stop, step), keep, in_range[keep]


def _row_groups(o: dict[str, Any], n_rows: int, binning: int) -> list[int]:
    if "middle_rows" in o:
        count = min(o["middle_rows"], n_rows)  # upstream: floor(n/2) - ceil(N/2) .. floor(n/2) + floor(N/2)
        start = max(0, n_rows // 2 - (count + 1) // 2)
        stop, step = start + count, 1
    elif "rows" in o:
        start, stop, step = opts.parse_range(o["rows"], n_rows, "rows")
    else:
        start, stop, step = 0, n_rows, 1
    groups = list(range(start, stop - binning + 1, binning * step))
    if not groups:
        raise ScanError(f"binning: {binning} leaves no slice in rows {start}:{stop}")
    return groups


def make_plan(scan: Scan, o: dict[str, Any], *, engine: str, nthreads: int) -> Plan:
    from compute_functions.corrections import GeometryCorrection, phase_margin

    meta = scan.metadata
    if meta.n_angles < 8:
        raise ScanError(f"{meta.path}: only {meta.n_angles} projections")
    binning = o["binning"]
    if meta.n_cols // binning < 8:
        raise ScanError(f"binning: {binning} leaves fewer than 8 of {meta.n_cols} columns")
    proj_slice, keep, proj_index = _projection_selection(o, meta.n_angles)
    theta = meta.theta_deg[proj_index] - o["angle_offset"]  # upstream: theta - angle_offset (then negated for tomopy)
    if not np.all(np.isfinite(theta)):
        raise ScanError(f"{meta.path}: the angles are not all finite numbers")
    if np.ptp(theta) < 150:
        raise ScanError(f"{meta.path}: the projections span only {np.ptp(theta):.1f} degrees (need about 180)")
    if o["half_acquisition"] and np.ptp(theta) < 270:
        raise ScanError(f"half_acquisition: the scan spans {np.ptp(theta):.1f} degrees, not 360")
    pixel_um = o.get("pixel_size_um", meta.pixel_size_um)
    geometry = None
    geo_margin = phase_rows = 0
    if o["tilt"] or o["lens_distortion"]:
        geometry = {
            "tilt_deg": o["tilt"],
            "tilt_center": tuple(o["tilt_center"]) if "tilt_center" in o else None,
            "distortion_center": tuple(o["lens_distortion_center"]) if o["lens_distortion"] else None,
            "distortion_factors": list(o["lens_distortion_factors"]) if o["lens_distortion"] else None,
        }
        geo_margin = GeometryCorrection(meta.n_rows, meta.n_cols, **geometry).margin
    phase = None
    if o["phase_retrieval"]:
        if pixel_um is None:
            raise ScanError("phase_retrieval: the scan has no pixel size; give pixel_size_um")
        energy = o.get("energy_kev") or (meta.energy_ev / 1000.0 if meta.energy_ev else DEFAULT_ENERGY_KEV)
        distance = o.get("propagation_distance_mm") or meta.camera_distance or DEFAULT_DISTANCE_MM
        delta_beta = o["delta_beta"] if "delta_beta" in o else 4.0 / o.get("phase_alpha", 1e-5)
        phase = {
            "pixel_m": pixel_um * 1e-6,
            "distance_m": distance * 1e-3,
            "energy_kev": float(energy),
            "delta_beta": float(delta_beta),
        }
        phase_rows = phase_margin(phase["pixel_m"], phase["distance_m"], phase["energy_kev"], phase["delta_beta"])
    margin = geo_margin + phase_rows
    per_row = keep.size * meta.n_cols * 4
    plan = Plan(
        scan_path=str(meta.path),
        dataset=meta.dataset,
        options=o,
        n_rows=meta.n_rows,
        n_cols=meta.n_cols,
        proj_index=proj_index,
        proj_slice=proj_slice,
        proj_keep=keep,
        theta_deg=theta,
        groups=_row_groups(o, meta.n_rows, binning),
        binning=binning,
        engine=engine,
        filter_name=o["filter"],
        pixel_um=pixel_um,
        margin=margin,
        geo_margin=geo_margin,
        phase_margin=phase_rows,
        geometry=geometry,
        phase=phase,
        nthreads=nthreads,
    )
    plan.chunk_groups = max(1, CHUNK_BYTES // (per_row * binning))
    if phase is not None:
        plan.extra_tags["phase"] = {k: round(v, 9) for k, v in phase.items()}
    return plan


# --------------------------------------------------------------------------------------------------------
# Slab processing
# --------------------------------------------------------------------------------------------------------


def _read(
    scan: Scan, plan: Plan, rows: slice | list[int], proj_subset: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw projections [angle, row, column] float32 of the selected projections, and the flats and darks."""
    start, stop, step = plan.proj_slice
    try:
        if proj_subset is not None:
            idx = plan.proj_index[proj_subset]
            if idx.size > 1 and np.all(np.diff(idx) == idx[1] - idx[0]) and idx[1] > idx[0]:  # a regular run: one read
                sl = slice(int(idx[0]), int(idx[-1]) + 1, int(idx[1] - idx[0]))
                raw = np.asarray(scan._data[sl, rows, :], dtype=np.float32)
            else:
                raw = np.stack([np.asarray(scan._data[i, rows, :], dtype=np.float32) for i in idx])
        else:
            raw = np.asarray(scan._data[start:stop:step, rows, :], dtype=np.float32)
            if raw.shape[0] != plan.proj_keep.size:
                raw = raw[plan.proj_keep]
        if isinstance(rows, slice):
            flats, darks = scan.flats((rows.start, rows.stop)), scan.darks((rows.start, rows.stop))
        else:
            flats = np.concatenate([scan.flats((r, r + 1)) for r in rows], axis=1)
            darks = np.concatenate([scan.darks((r, r + 1)) for r in rows], axis=1)
    except (OSError, RuntimeError, KeyError) as exc:
        raise ScanError(f"{plan.scan_path}: cannot read {DATA} (truncated or corrupt file: {exc})") from None
    return raw, flats, darks


def corrected_rows(
    scan: Scan,
    plan: Plan,
    r0: int,
    r1: int,
    seconds: dict[str, float],
    *,
    phase: bool = True,
    rings: bool = True,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Rows ``[r0, r1)`` after outliers, normalisation, beam hardening, the sinogram ring filter (``rings``),
    tilt/distortion and phase retrieval, in upstream's order, as [row, angle, column] float32 (into ``out``,
    e.g. a memory-mapped file, when given).

    The corrections that mix rows work on whole projections (rows ``r0 - margin .. r1 + margin``), so the
    projections go through a chunk at a time: memory stays within ``CHUNK_BYTES`` whatever the margin. The ring
    filter needs whole sinograms first: those rows are filtered a few at a time into a scratch array (above
    ``CHUNK_BYTES`` an unlinked temporary file, beside ``out`` when ``out`` is a memory-mapped file).
    """
    from compute_functions.corrections import GeometryCorrection

    p_margin = plan.phase_margin if (phase and plan.phase) else 0
    margin = plan.geo_margin + p_margin
    lo, hi = max(0, r0 - margin), min(plan.n_rows, r1 + margin)
    g0, g1 = max(0, r0 - p_margin), min(plan.n_rows, r1 + p_margin)
    geo = GeometryCorrection(plan.n_rows, plan.n_cols, **plan.geometry) if plan.geometry else None
    n_sel = plan.proj_index.size
    out = np.empty((r1 - r0, n_sel, plan.n_cols), dtype=np.float32) if out is None else out
    filtered = None
    with contextlib.ExitStack() as stack:
        if rings and plan.options["ring_method"] != "none":
            filtered = _ring_filtered_rows(scan, plan, lo, hi, seconds, getattr(out, "filename", None), stack)
        _correct_projections(scan, plan, (lo, hi, g0, g1, r0, r1), geo, p_margin, filtered, out, seconds)
    return out


def _ring_filtered_rows(
    scan: Scan,
    plan: Plan,
    lo: int,
    hi: int,
    seconds: dict[str, float],
    beside: str | None,
    stack: contextlib.ExitStack,
) -> np.ndarray:
    """Rows ``[lo, hi)`` normalised and ring-filtered, [row, angle, column] (upstream: rings before tilt)."""
    import tempfile

    n_sel, n_cols = plan.proj_index.size, plan.n_cols
    shape = (hi - lo, n_sel, n_cols)
    if np.prod(shape) * 4 > CHUNK_BYTES:  # on disk (unlinked at once: nothing is left if the process dies)
        folder = Path(beside).parent if beside else None
        scratch = tempfile.TemporaryFile(dir=folder, prefix=".rings-")  # noqa: SIM115 (the stack closes it)
        handle = stack.enter_context(scratch)
        filtered = np.memmap(handle, dtype=np.float32, mode="w+", shape=shape)
    else:
        filtered = np.empty(shape, dtype=np.float32)
    per_row = n_sel * n_cols * 4
    step = max(1, CHUNK_BYTES // (3 * per_row))
    for a in range(lo, hi, step):
        b = min(hi, a + step)
        t = time.perf_counter()
        raw, flats, darks = _read(scan, plan, slice(a, b))
        seconds["read"] += time.perf_counter() - t
        att = _normalised(raw, flats, darks, plan, seconds)
        del raw
        t = time.perf_counter()
        filtered[a - lo : b - lo] = _remove_rings(np.moveaxis(att, 1, 0), plan.options)
        seconds["rings"] += time.perf_counter() - t
    return filtered


def _correct_projections(scan, plan, bounds, geo, p_margin, filtered, out, seconds) -> None:
    """Tilt/distortion and phase retrieval of rows ``bounds`` = (lo, hi, g0, g1, r0, r1), a chunk of
    projections at a time, from the file (normalised here) or from ``filtered`` rows ``[lo, hi)``."""
    from compute_functions.corrections import retrieve_phase

    lo, hi, g0, g1, r0, r1 = bounds
    n_sel = plan.proj_index.size
    per_proj = (hi - lo) * plan.n_cols * 4
    step = max(1, CHUNK_BYTES // (3 * per_proj))
    for a0 in range(0, n_sel, step):
        subset = np.arange(a0, min(n_sel, a0 + step))
        t = time.perf_counter()
        if filtered is not None:
            att = np.ascontiguousarray(np.moveaxis(filtered[:, a0 : a0 + subset.size], 1, 0))
            seconds["read"] += time.perf_counter() - t
        else:
            raw, flats, darks = _read(scan, plan, slice(lo, hi), subset)
            seconds["read"] += time.perf_counter() - t
            att = _normalised(raw, flats, darks, plan, seconds)
        t = time.perf_counter()
        row0 = lo
        if geo is not None:
            att = geo.apply(att, lo, g0, g1)
            row0 = g0
        if p_margin:
            retrieve_phase(att, **plan.phase)
        out[:, a0 : a0 + subset.size, :] = np.moveaxis(att[:, r0 - row0 : r1 - row0, :], 1, 0)
        seconds["corrections"] += time.perf_counter() - t


def _remove_rings(sino_rows: np.ndarray, o: dict[str, Any]) -> np.ndarray:
    """The sinogram ring filter of ``o`` on each row of ``sino_rows`` [row, angle, column] (a float32 copy)."""
    from compute_functions.preprocessing import remove_stripes

    params = {
        "size": o["ring_sort_size"],
        "sigma": o["ring_sigma"],
        "level": o["ring_level"],
        "wavelet": o["ring_wavelet"],
        "nblock": o["ring_nblock"],
        "alpha": o["ring_alpha"],
        "sf_size": o["ring_sf_size"],
        "snr": o["ring_snr"],
        "large_size": o["ring_large_size"],
    }
    out = np.array(sino_rows, dtype=np.float32, copy=True)
    for i in range(out.shape[0]):
        out[i] = remove_stripes(out[i], method=o["ring_method"], **params)
    return out


def _normalised(raw: np.ndarray, flats: np.ndarray, darks: np.ndarray, plan: Plan, seconds: dict[str, float]):
    from compute_functions.preprocessing import beam_hardening, normalize, remove_outliers

    o = plan.options
    t = time.perf_counter()
    if o["outliers_1d"]:
        remove_outliers(raw, o["outlier_diff_1d"], o["outlier_size_1d"], dims=1)
    if o["outliers_2d"]:
        remove_outliers(raw, o["outlier_diff_2d"], o["outlier_size_2d"], dims=2)
    att = normalize(raw, flats, darks, min_transmission=o["min_transmission"], flat_ratio=o["flat_exposure_ratio"])
    if o["beam_hardening"]:
        att = beam_hardening(att, o["beam_hardening_coefficients"])
    seconds["normalize"] += time.perf_counter() - t
    return att


def prepare(
    scan: Scan | None,
    plan: Plan,
    groups: list[int],
    seconds: dict[str, float],
    *,
    proj_subset: np.ndarray | None = None,
    rings: bool = True,
    phase: bool = True,
    binning: int | None = None,
    stitch: bool = True,
    corrected: tuple[np.ndarray, int] | None = None,
) -> np.ndarray:
    """Sinograms [slice, angle, column] of the output slices starting at ``groups``, ready to reconstruct.

    ``corrected``: (rows [row, angle, column] from :func:`corrected_rows`, its first row) to take the rows from
    instead of the file (ring filter and row-mixing corrections already done, in upstream's order).
    """
    from compute_functions.preprocessing import bin_projections

    o = plan.options
    b = plan.binning if binning is None else binning
    need = sorted({r for g in groups for r in range(g, g + b)})
    if corrected is not None:
        rows_arr, first = corrected
        t = time.perf_counter()
        sino_rows = np.asarray(rows_arr[need[0] - first : need[-1] + 1 - first])  # [row, angle, column]
        sino_rows = sino_rows[[r - need[0] for r in need]]
        seconds["read"] += time.perf_counter() - t
    elif plan.margin and (plan.geo_margin or (phase and plan.phase)) and proj_subset is None:
        sino_rows = corrected_rows(scan, plan, need[0], need[-1] + 1, seconds, phase=phase, rings=rings)
        sino_rows = sino_rows[[r - need[0] for r in need]]
        rings = False  # done before the row-mixing corrections, as upstream
    else:
        contiguous = need[-1] - need[0] + 1 == len(need)
        rows: slice | list[int] = slice(need[0], need[-1] + 1) if contiguous else need
        t = time.perf_counter()
        raw, flats, darks = _read(scan, plan, rows, proj_subset)
        seconds["read"] += time.perf_counter() - t
        if plan.geo_margin and proj_subset is not None:  # the pc views: geometry on whole views
            from compute_functions.corrections import GeometryCorrection

            lo, hi = max(0, need[0] - plan.geo_margin), min(plan.n_rows, need[-1] + 1 + plan.geo_margin)
            raw, flats, darks = _read(scan, plan, slice(lo, hi), proj_subset)
            att = _normalised(raw, flats, darks, plan, seconds)
            att = GeometryCorrection(plan.n_rows, plan.n_cols, **plan.geometry).apply(att, lo, need[0], need[-1] + 1)
        else:
            att = _normalised(raw, flats, darks, plan, seconds)
        del raw
        t = time.perf_counter()
        sino_rows = np.ascontiguousarray(np.moveaxis(att, 1, 0))  # [row, angle, column]
        del att
        seconds["normalize"] += time.perf_counter() - t
    if rings and corrected is None and o["ring_method"] != "none":  # corrected rows: filtered already
        t = time.perf_counter()
        sino_rows = _remove_rings(sino_rows, o)
        seconds["rings"] += time.perf_counter() - t
    t = time.perf_counter()
    if b > 1:
        sinos = np.stack(
            [
                bin_projections(np.moveaxis(sino_rows[[need.index(r) for r in range(g, g + b)]], 0, 1), b)[:, 0]
                for g in groups
            ]
        )
    else:
        sinos = np.asarray(sino_rows, dtype=np.float32)
        if len(groups) != len(need):
            sinos = sinos[[need.index(g) for g in groups]]
    del sino_rows
    if stitch and o["half_acquisition"] and plan.center is not None:
        from compute_functions.centre import stitch_360_to_180
        from compute_functions.preprocessing import binned_center

        sinos, _, _ = stitch_360_to_180(sinos, plan.theta_deg, binned_center(plan.center, b))
    seconds["normalize"] += time.perf_counter() - t
    return sinos


# --------------------------------------------------------------------------------------------------------
# Centre
# --------------------------------------------------------------------------------------------------------


def _check_signal(scan: Scan, plan: Plan, row: int) -> None:
    raw, flats, darks = _read(scan, plan, slice(row, row + 1))
    if not np.any(raw):
        raise ScanError(f"{plan.scan_path}: the projections are all zero")
    if not np.any(flats.mean(axis=0) - darks.mean(axis=0) > 0):
        raise ScanError(f"{plan.scan_path}: the flats are not brighter than the darks")


def find_center(scan: Scan, plan: Plan, seconds: dict[str, float]) -> tuple[float, str]:
    """The axis in detector columns and the method that found it."""
    from compute_functions import centre

    o = plan.options
    rows = [g + plan.binning // 2 for g in plan.groups]
    row = o.get("center_row", rows[len(rows) // 2])
    if not 0 <= row < plan.n_rows:
        raise ScanError(f"center_row: {row} is outside 0..{plan.n_rows - 1}")
    _check_signal(scan, plan, row)
    method = o["center_method"]
    theta = plan.theta_deg

    def sinogram() -> np.ndarray:
        """The sinogram of up to 8 rows around ``row``, averaged (noise and per-row stripes average out)."""
        r0 = min(max(0, row - CENTRE_SINO_ROWS // 2), max(0, plan.n_rows - CENTRE_SINO_ROWS))
        rows = list(range(r0, min(plan.n_rows, r0 + CENTRE_SINO_ROWS)))
        return prepare(scan, plan, rows, seconds, phase=False, binning=1, stitch=False).mean(axis=0)

    if o["half_acquisition"]:
        return centre.find_center_360(sinogram(), theta), "360-overlap"
    pair = centre.has_opposite_pair(theta)
    if method == "pc" and not pair:
        raise ScanError("center_method: pc needs a projection within 1 degree of 180 from the first; use vo or nm")
    opposite = centre.opposite_view(theta)  # the view at exactly 180 degrees (measured or interpolated)
    if method == "pc" or (method == "auto" and opposite is not None):
        if opposite is None:  # pc asked for, no view at or around 180: the nearest one (as upstream; biased)
            first, second = centre.opposite_pair(theta)
            opposite = (first, [(second, 1.0)])
        first, weights = opposite
        r0 = max(0, row - CENTRE_ROWS // 2)
        groups = list(range(r0, min(plan.n_rows, r0 + CENTRE_ROWS)))
        views = prepare(
            scan,
            plan,
            groups,
            seconds,
            proj_subset=np.array([first] + [i for i, _ in weights]),
            rings=False,
            phase=False,
            binning=1,
            stitch=False,
        )  # [row, view, column]
        mirror = sum(np.float32(w) * views[:, 1 + k, :] for k, (_, w) in enumerate(weights))
        return centre.find_center_pc(views[:, 0, :], mirror), "pc"
    sino = sinogram()
    guess = o.get("center")
    vo = centre.find_center_vo(sino, theta, guess=guess, search_radius=min(o["center_search"], plan.n_cols / 4))
    if method == "nm":
        radius = min(o["center_search"], 10.0)
        return centre.find_center_nm(sino, np.deg2rad(theta), guess=vo, search_radius=radius), "nm"
    return vo, "vo"


# --------------------------------------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------------------------------------


def _finish(image: np.ndarray, plan: Plan, mask: np.ndarray | None) -> np.ndarray:
    from compute_functions.preprocessing import remove_rings_polar

    o = plan.options
    image *= np.float32(plan.scale)
    for _ in range(o["polar_ring_passes"]):
        image = remove_rings_polar(
            image,
            arc_deg=o["polar_ring_arc"],
            max_width=o["polar_ring_max_width"],
            tmin=o["polar_ring_tmin"],
            tmax=o["polar_ring_tmax"],
            threshold=o["polar_ring_threshold"],
        )
    if mask is not None:
        image[~mask] = 0.0
    if o["cast"] != "float32":
        top = 255 if o["cast"] == "uint8" else 65535
        lo, hi = o["cast_min"], o["cast_max"]
        scaled = (image - np.float32(lo)) * np.float32(top / (hi - lo))
        image = np.clip(np.rint(scaled), 0, top).astype(o["cast"])
        if mask is not None:
            image[~mask] = 0
    return image


def reuse_freed_memory() -> None:
    """Let glibc keep freed blocks of up to ``REUSE_BYTES`` for reuse (its default returns every block above
    32 MB to the system at once, so each slice's 10-50 MB arrays were mapped and page-faulted afresh: ~10 % of
    a slice's time here). Process-wide, for the rest of the process; nothing where the C library is not glibc."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, REUSE_BYTES)
        libc.mallopt(M_TRIM_THRESHOLD, 2 * REUSE_BYTES)
    except (OSError, AttributeError):  # musl or another libc: keep its defaults
        pass


def run_groups(plan: Plan, groups: list[int]) -> dict[str, float]:
    """Reconstruct and write the slices starting at ``groups`` (one process); returns seconds per step."""
    from compute_functions.engines import make_engine

    reuse_freed_memory()
    seconds = dict.fromkeys(STEPS, 0.0)
    o = plan.options
    t = time.perf_counter()
    engine = make_engine(
        plan.engine,
        np.deg2rad(plan.rec_theta_deg),
        plan.rec_size,
        filter_name=plan.filter_name,
        nthreads=plan.nthreads,
        batch=1,
        fftw_measure=len(groups) >= FFTW_MEASURE_SLICES,
        pairs=len(groups) > 1,  # nufft: two slices per transform
    )
    seconds["setup"] += time.perf_counter() - t
    mask = circular_mask(plan.rec_size, o["mask_ratio"]) if o["mask_ratio"] else None
    unit = "1/cm" if plan.out_pixel_um is not None else "1/pixel"
    tags = {
        "dataset": plan.dataset,
        "pixel_size_um": plan.out_pixel_um,
        "units": unit if o["cast"] == "float32" else f"{o['cast']} of [{o['cast_min']}, {o['cast_max']}] {unit}",
        "center": plan.center,
        "engine": plan.engine,
        "binning": plan.binning,
        "row_step": plan.groups[1] - plan.groups[0] if len(plan.groups) > 1 else plan.binning,
        "ring_removal": None if o["ring_method"] == "none" else o["ring_method"],
        "filter": plan.filter_name,
        **plan.extra_tags,
        "options": o,
    }
    tmp = Path(plan.tmp_dir)
    corrected = None
    with open_scan(plan.scan_path) as scan, contextlib.ExitStack() as stack:
        pyramid = None
        if plan.slab_store is not None:
            from compute_functions.zarr_slabs import SlabPyramid

            z0 = plan.groups.index(groups[0])
            pyramid = SlabPyramid(plan.slab_store, z0, z0 + len(groups))
        if plan.margin:  # row-mixing corrections: one pass over whole projections into a scratch file
            r0, r1 = groups[0], groups[-1] + plan.binning
            scratch = tmp.parent / f".{tmp.name}.rows-{r0}-{r1}-{os.getpid()}.npy"
            stack.callback(lambda: scratch.unlink(missing_ok=True))
            shape = (r1 - r0, plan.proj_index.size, plan.n_cols)
            mm = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.float32, shape=shape)
            corrected = (corrected_rows(scan, plan, r0, r1, seconds, out=mm), r0)
        step = -(-plan.chunk_groups // SLICES_PER_CALL) * SLICES_PER_CALL  # pairs never split across chunks
        for start in range(0, len(groups), step):
            chunk = groups[start : start + step]
            sinos = prepare(scan, plan, chunk, seconds, corrected=corrected)
            for i in range(0, len(chunk), SLICES_PER_CALL):
                t = time.perf_counter()
                images = engine(sinos[i : i + SLICES_PER_CALL], plan.rec_center)
                seconds["reconstruct"] += time.perf_counter() - t
                for row, image in zip(chunk[i : i + SLICES_PER_CALL], images, strict=True):
                    t = time.perf_counter()
                    image = _finish(image, plan, mask)
                    seconds["reconstruct"] += time.perf_counter() - t
                    t = time.perf_counter()
                    write_tiff(tmp / f"{plan.dataset}_{row:05d}.tiff", image, {**tags, "row": row})
                    seconds["write"] += time.perf_counter() - t
                    if pyramid is not None:
                        t = time.perf_counter()
                        pyramid.add(image)
                        seconds["zarr"] += time.perf_counter() - t
                del images
            del sinos
        if pyramid is not None:
            t = time.perf_counter()
            pyramid.close()
            seconds["zarr"] += time.perf_counter() - t
    return seconds


def blocks(groups: list[int], parts: int, align: int = 1) -> list[list[int]]:
    """``groups`` in ``parts`` contiguous, nearly equal blocks (some empty when there are too few slices), each
    starting on a multiple of ``align`` slices (the one-pass Zarr: no chunk file shared by two workers) and of
    ``SLICES_PER_CALL`` (the engine's pairs are slices 2k and 2k + 1 whatever the split: the same images for any
    number of workers or nodes)."""
    align = math.lcm(align, SLICES_PER_CALL)
    n = len(groups)
    bounds = [min(n, round(i * n / parts / align) * align) for i in range(parts)] + [n]
    return [groups[a:b] for a, b in itertools.pairwise(bounds)]


def _split(groups: list[int], workers: int, align: int = 1) -> list[list[int]]:
    """The non-empty :func:`blocks` of ``groups`` for ``workers`` processes."""
    return [block for block in blocks(groups, workers, align) if block]


def _run_parallel(plan: Plan, workers: int, groups: list[int]) -> list[dict[str, float]]:
    """One contiguous block of ``groups`` per worker process: one scan handle, one NUFFT plan, one pass each."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    align = 1
    if plan.slab_store is not None:
        from compute_functions.zarr_slabs import block_alignment

        align = block_alignment(plan.slab_store.layout)
    parts = _split(groups, workers, align)
    if len(parts) == 1:
        return [run_groups(plan, parts[0])]
    ctx = multiprocessing.get_context("spawn")  # no fork: finufft/OpenMP and open HDF5 handles are not fork-safe
    with ProcessPoolExecutor(max_workers=len(parts), mp_context=ctx) as pool:
        return list(pool.map(run_groups, [plan] * len(parts), parts))


# --------------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------------


def _legacy_options(
    options: dict[str, Any] | None,
    *,
    ring_strength: float | None,
    filter_name: str | None,
    option_kwargs: dict[str, Any],
) -> dict[str, Any]:
    merged = dict(options or {})
    for key, value in option_kwargs.items():
        if value is None:
            continue
        if key == "rows":
            value = _rows_text(value)
        merged[key] = value
    if merged.get("mask_ratio", 1.0) is None:
        merged["mask_ratio"] = 0.0
    if filter_name is not None:
        merged["filter"] = filter_name
    if ring_strength is not None:
        method = merged.get("ring_method", "sorting")
        if method == "fw":
            merged["ring_sigma"] = float(ring_strength)
        elif method in ("sorting", "all"):
            merged["ring_sort_size"] = max(3, round(ring_strength) | 1)
        elif method == "sf":
            merged["ring_sf_size"] = max(3, round(ring_strength))
    if merged.get("ring_removal") is False:
        merged.pop("ring_method", None)
    return merged


def default_tiff_dir(scan_path: str | Path, out_dir: str | Path) -> Path:
    """``<out_dir>/rec<dataset>``: where a scan's TIFFs go unless the caller names the folder (Airflow names it,
    from include/paths.py ``Results``, the one authority of result names on its side)."""
    return Path(out_dir) / f"rec{Path(scan_path).stem}"


def reconstruct_scan(
    scan_path: str | Path,
    out_dir: str | Path,
    options: dict[str, Any] | None = None,
    *,
    tiff_dir: str | Path | None = None,
    ring_strength: float | None = None,
    filter_name: str | None = None,
    nthreads: int | None = None,
    workers: int | None = None,
    chunk_rows: int | None = None,
    zarr: bool | dict[str, Any] = True,
    slab: tuple[int, int] | None = None,
    slab_store: str | Path | None = None,
    **option_kwargs: Any,
) -> dict[str, Any]:
    """Reconstruct a scan into ``tiff_dir`` (default :func:`default_tiff_dir`, ``out_dir/rec<dataset>/``); returns
    a JSON-able summary.

    ``options`` is the ``recon`` conf (keys of :data:`compute_functions.options.RECON_SCHEMA`); the same keys
    may also be given as keyword arguments (they win over ``options``), e.g. ``rows=(0, 4)``, ``center=65.9``,
    ``engine="nufft"``, ``ring_removal=False``, ``binning=2``, ``mask_ratio=None``. Older keywords:
    ``ring_strength`` (sorting window or fw sigma), ``filter_name``. ``nthreads``: threads in all (default:
    the CPUs available); ``workers``: processes (default: one per thread when there are enough slices).
    ``zarr``: the workers also write the multiscale OME-Zarr of the stack as they go (one pass,
    :mod:`compute_functions.zarr_slabs`), staged beside ``<tiff_dir>.zarr`` for the multiscale step to finish;
    a dict gives that step's options when they are not its defaults (chunk, levels, memory_mb, compressor,
    ngff); False: TIFFs only. ``slab=(k, n)``: only the k-th of n blocks of the slices (one node's share of a
    reconstruction across nodes, :mod:`compute_functions.slabs`): the centre and every other choice are made over
    the whole scan, so the n slabs together are the one-node stack; with ``slab_store`` the slabs' workers write
    the whole stack's one-pass store there (made by the first slab; its pieces merged and the store sealed once,
    by ``compute_functions.slabs.gather``). Raises :class:`ScanError` for a bad scan or option.
    """
    from compute_functions.engines import default_threads, resolve_engine

    merged = _legacy_options(options, ring_strength=ring_strength, filter_name=filter_name, option_kwargs=option_kwargs)
    o = opts.resolved_options(merged)
    try:
        engine_name = resolve_engine(o["engine"])
    except ValueError as exc:
        raise ScanError(f"engine: {exc}") from None
    threads = nthreads or default_threads()
    seconds: dict[str, float] = {"centre": 0.0, **dict.fromkeys(STEPS, 0.0)}
    t0 = time.perf_counter()
    with open_scan(scan_path) as scan:
        meta = scan.metadata
        plan = make_plan(scan, o, engine=engine_name, nthreads=1)
        if chunk_rows:
            plan.chunk_groups = max(1, int(chunk_rows))
        t = time.perf_counter()
        if "center" in o:
            center, how = float(o["center"]), "given"
            if not 0 <= center < meta.n_cols and not o["half_acquisition"]:
                raise ScanError(f"center: bad center {center}: outside 0..{meta.n_cols - 1}")
        else:
            scratch = dict.fromkeys(STEPS, 0.0)
            try:
                center, how = find_center(scan, plan, scratch)
            except ScanError:
                raise
            except (ValueError, np.linalg.LinAlgError) as exc:  # a method that cannot work on this scan
                raise ScanError(f"center_method: {o['center_method']}: {exc}") from None
            seconds["centre"] = time.perf_counter() - t
        if not np.isfinite(center):
            raise ScanError(f"center: the {how} method found no axis")
    plan.center = center
    from compute_functions.preprocessing import binned_center

    n_cols = meta.n_cols // plan.binning
    c_binned = binned_center(center, plan.binning)
    if o["half_acquisition"]:
        from compute_functions.centre import stitch_360_to_180

        probe, rec_theta, rec_center = stitch_360_to_180(
            np.zeros((1, plan.theta_deg.size, n_cols), np.float32), plan.theta_deg, c_binned
        )
        plan.rec_theta_deg, plan.rec_center, plan.rec_size = rec_theta, rec_center, probe.shape[-1]
    else:
        plan.rec_theta_deg, plan.rec_center, plan.rec_size = plan.theta_deg, c_binned, n_cols
    from compute_functions import zarr_slabs

    groups, shared = plan.groups, None
    zarr_options = zarr if isinstance(zarr, dict) else {}
    stack_shape = (len(plan.groups), plan.rec_size, plan.rec_size)
    if slab is not None:
        index, count = slab
        parts = blocks(plan.groups, count)
        if zarr is not False and slab_store is not None:
            shared = zarr_slabs.describe(Path(slab_store), stack_shape, o["cast"], zarr_options)
            aligned = blocks(plan.groups, count, zarr_slabs.block_alignment(shared.layout))
            if sum(map(bool, aligned)) < sum(map(bool, parts)):
                shared = None  # too few slices for aligned slabs on every node: TIFFs only
            else:
                parts = aligned
        groups, zarr = parts[index], False
    n_workers = workers or max(1, min(threads, len(groups) // MIN_SLICES_PER_WORKER))
    n_workers = max(1, min(n_workers, len(groups)))
    if shared is not None and groups:  # every worker's block aligned to the store's chunks, or fewer workers
        n_workers = len(_split(groups, n_workers, zarr_slabs.block_alignment(shared.layout)))
    plan.nthreads = max(1, threads // n_workers)
    plan.extra_tags["center_method"] = how
    final = Path(tiff_dir) if tiff_dir is not None else default_tiff_dir(scan_path, out_dir)

    zarr_path = zarr_slabs.zarr_path_of(final)
    with atomic_dir(final) as tmp:
        plan.tmp_dir = str(tmp)
        if shared is not None and groups:
            plan.slab_store = zarr_slabs.shared(shared)  # the slabs' store: kept whatever this slab does
        elif zarr is not False:
            store = zarr_slabs.create(zarr_path, stack_shape, o["cast"], zarr_options)
            if len(_split(plan.groups, n_workers, zarr_slabs.block_alignment(store.layout))) < n_workers:
                shutil.rmtree(store.path)  # too few slices for aligned blocks: the multiscale step reads the TIFFs
            else:
                plan.slab_store = store
        try:
            if not groups:
                results = []
            elif n_workers == 1:
                results = [run_groups(plan, groups)]
            else:
                results = _run_parallel(plan, n_workers, groups)
            if plan.slab_store is not None and slab is None:
                zarr_slabs.merge_pieces(plan.slab_store)
        except BaseException:
            if plan.slab_store is not None and slab is None:
                shutil.rmtree(plan.slab_store.path, ignore_errors=True)
            raise
    staged = None  # a slab's store is sealed by the gather, once every slab wrote its part
    if slab is None and plan.slab_store is not None:
        staged = zarr_slabs.seal(plan.slab_store, final, zarr_path)
    elif slab is None:
        zarr_slabs.discard(zarr_path)
    for res in results:
        for key, value in res.items():
            seconds[key] += value
    seconds["total"] = time.perf_counter() - t0
    n = len(groups)
    summary = {
        "dataset": meta.dataset,
        "tiff_dir": str(final),
        "n_slices": n,
        "rows": [groups[0], groups[-1] + plan.binning] if groups else [],
        "center": round(float(center), 3),
        "center_method": how,
        "engine": engine_name,
        "binning": plan.binning,
        "pixel_size_um": plan.out_pixel_um,
        "slice_size": plan.rec_size,
        "workers": n_workers,
        "zarr_staged": None if staged is None else str(staged),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "seconds_per_slice": round(seconds["total"] / max(n, 1), 4),
        "options": {**o, "center": round(float(center), 3)},
    }
    if slab is not None:
        summary["slab"] = {"index": slab[0], "of": slab[1], "total_slices": len(plan.groups)}
        if plan.slab_store is not None:  # what gather needs to finish the slabs' store
            summary["slab"]["zarr"] = {
                "path": plan.slab_store.path,
                "shape": list(stack_shape),
                "dtype": o["cast"],
                "options": zarr_options,
            }
    return summary


def options_argument(text: str | None) -> dict[str, Any]:
    """A command line's ``--options``: the recon conf as one JSON object (``{}`` when absent); ScanError else."""
    if text is None:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScanError(f"--options: not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(options, dict):
        raise ScanError("--options: expected a JSON object")
    return options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compute_functions.reconstruct", description=__doc__.split("\n")[0])
    parser.add_argument("scan", type=Path, help="Data Exchange HDF5 scan")
    parser.add_argument("out_dir", type=Path, help="folder that receives rec<dataset>/")
    parser.add_argument("--options", default=None, help="the recon conf as one JSON object (docs/recon-options.md)")
    parser.add_argument("--center", type=float, default=None, help="rotation axis in detector columns (default: auto)")
    parser.add_argument("--rows", default=None, help="detector rows A:B (half-open; default all)")
    parser.add_argument("--engine", default=None, help=f"one of {', '.join(opts.ENGINES)}")
    parser.add_argument("--no-ring-removal", action="store_true")
    parser.add_argument("--ring-method", default=None, help=f"one of {', '.join(opts.RING_METHODS)}")
    parser.add_argument("--ring-strength", type=float, default=None, help="sorting: window (px); fw: sigma")
    parser.add_argument("--binning", type=int, default=None)
    parser.add_argument("--filter", default=None, dest="filter_name")
    parser.add_argument("--threads", type=int, default=None, help="threads in all (default: the CPUs available)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per thread)")
    parser.add_argument("--no-zarr", action="store_true", help="TIFFs only (no one-pass Zarr for the multiscale step)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed one usage line and the error
        return EXIT_DATA_ERROR if exc.code else 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        options = options_argument(args.options)
        flags = {
            "center": args.center,
            "rows": args.rows,
            "engine": args.engine,
            "ring_method": args.ring_method,
            "binning": args.binning,
        }
        if args.no_ring_removal:
            flags["ring_removal"] = False
        if args.binning is not None and args.binning < 1:
            raise ScanError(f"binning: bad binning {args.binning}: must be >= 1")
        summary = reconstruct_scan(
            args.scan,
            args.out_dir,
            options,
            ring_strength=args.ring_strength,
            filter_name=args.filter_name,
            nthreads=args.threads,
            workers=args.workers,
            zarr=not args.no_zarr,
            **flags,
        )
    except (ScanError, FileNotFoundError) as exc:
        return data_error_exit("reconstruct", exc)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
