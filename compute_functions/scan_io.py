"""Read a beamline 8.3.2 scan in the Data Exchange HDF5 layout (SPEC §4), with every documented fallback.

Projections ``/exchange/data`` [angle, row, column]; flats ``/exchange/data_white`` else
``/process/acquisition/flat_fields/flat_field_value``; darks ``/exchange/data_dark`` else
``/process/acquisition/dark_fields/dark_field_value`` (else zero); angles ``/exchange/theta`` (degrees) else
``/process/acquisition/rotation/{rotation_start,rotation_step,num_angles,range}``. Metadata values may be
1-element arrays or one value per frame; strings are stored as bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from compute_functions.errors import ScanError

log = logging.getLogger(__name__)

DATA = "/exchange/data"
FLATS = "/exchange/data_white"
DARKS = "/exchange/data_dark"
THETA = "/exchange/theta"
FLAT_FALLBACK = "/process/acquisition/flat_fields/flat_field_value"
DARK_FALLBACK = "/process/acquisition/dark_fields/dark_field_value"
ROTATION = "/process/acquisition/rotation"
DETECTOR = "/measurement/instrument/detector"
PIXEL_SIZE = f"{DETECTOR}/pixel_size"
ENERGY = "/measurement/instrument/monochromator/energy"
CAMERA_DISTANCE = "/measurement/instrument/camera_motor_stack/setup/camera_distance"
INSTRUMENT_NAME = "/measurement/instrument/instrument_name"
SAMPLE_FILE_NAME = "/measurement/sample/file_name"


__all__ = ["Scan", "ScanError", "ScanMetadata", "open_scan", "read_metadata"]


@dataclass(frozen=True, eq=False)
class ScanMetadata:
    """What the reconstruction and the multiscale step need to know about a scan."""

    path: Path
    dataset: str
    n_angles: int
    n_rows: int
    n_cols: int
    dtype: str
    pixel_size_mm: float | None
    energy_ev: float | None
    camera_distance: float | None
    theta_deg: np.ndarray = field(repr=False)
    is_360: bool
    theta_source: str
    flat_source: str | None
    dark_source: str | None
    instrument_name: str | None = None
    sample_file_name: str | None = None

    @property
    def pixel_size_um(self) -> float | None:
        return None if self.pixel_size_mm is None else self.pixel_size_mm * 1000.0

    @property
    def theta_rad(self) -> np.ndarray:
        return np.deg2rad(self.theta_deg)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.n_angles, self.n_rows, self.n_cols)


def _get(f: h5py.File, path: str) -> h5py.Dataset | None:
    obj = f.get(path)
    return obj if isinstance(obj, h5py.Dataset) else None


def _first(value: Any) -> Any:
    """The first element of a scalar, 1-element or per-frame value; bytes decoded."""
    arr = np.asarray(value)
    item = arr.reshape(-1)[0] if arr.size else None
    if isinstance(item, bytes | np.bytes_):
        return item.decode("utf-8", "replace").strip()
    if isinstance(item, np.generic):
        return item.item()
    return item


def read_value(f: h5py.File, path: str) -> Any:
    """A metadata value as a Python scalar or string (first frame of a per-frame array); None if absent."""
    ds = _get(f, path)
    if ds is None:
        return None
    try:
        return _first(ds[()])
    except (OSError, ValueError, TypeError):
        return None


def read_float(f: h5py.File, path: str) -> float | None:
    value = read_value(f, path)
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def _theta_from_rotation(f: h5py.File, n_angles: int) -> tuple[np.ndarray, float | None] | None:
    start = read_float(f, f"{ROTATION}/rotation_start")
    step = read_float(f, f"{ROTATION}/rotation_step")
    rng = read_float(f, f"{ROTATION}/range")
    num = read_float(f, f"{ROTATION}/num_angles")
    if step is None and rng is None:
        return None
    num_angles = int(num) if num else n_angles
    if num_angles != n_angles:
        log.warning("rotation/num_angles=%s but /exchange/data has %d angles; using the data", num_angles, n_angles)
    if step is None:
        assert rng is not None
        step = rng / n_angles if rng > 300 else rng / max(n_angles - 1, 1)
    return (start or 0.0) + step * np.arange(n_angles, dtype=np.float64), rng


def _read_theta(f: h5py.File, n_angles: int) -> tuple[np.ndarray, bool, str]:
    ds = _get(f, THETA)
    if ds is not None and ds.size == n_angles:
        theta = np.asarray(ds[()], dtype=np.float64).reshape(-1)
        span = float(theta.max() - theta.min()) if theta.size else 0.0
        return theta, span > 300, THETA
    if ds is not None:
        log.warning("%s has %d values for %d projections; trying the rotation metadata", THETA, ds.size, n_angles)
    from_rotation = _theta_from_rotation(f, n_angles)
    if from_rotation is not None:
        theta, rng = from_rotation
        span = rng if rng is not None else float(theta.max() - theta.min())
        return theta, span > 300, ROTATION
    log.warning("no angles in the scan; assuming %d angles evenly over [0, 180)", n_angles)
    return np.linspace(0.0, 180.0, n_angles, endpoint=False), False, "default"


def _field_source(f: h5py.File, primary: str, fallback: str) -> str | None:
    for path in (primary, fallback):
        if _get(f, path) is not None:
            return path
    return None


def _open_h5(path: Path) -> h5py.File:
    if not path.is_file():
        raise ScanError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise ScanError(f"{path}: not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ScanError(f"{path}: cannot open HDF5 file ({exc})") from exc


def _metadata(path: Path, f: h5py.File) -> ScanMetadata:
    data = _get(f, DATA)
    if data is None:
        raise ScanError(f"{path}: no {DATA} dataset")
    if data.ndim != 3 or min(data.shape) < 1:
        raise ScanError(f"{path}: {DATA} has shape {data.shape}, expected [angle, row, column]")
    n_angles, n_rows, n_cols = (int(n) for n in data.shape)
    theta, is_360, theta_source = _read_theta(f, n_angles)
    pixel = read_float(f, PIXEL_SIZE)
    name = read_value(f, INSTRUMENT_NAME)
    sample = read_value(f, SAMPLE_FILE_NAME)
    return ScanMetadata(
        path=path,
        dataset=path.stem,
        n_angles=n_angles,
        n_rows=n_rows,
        n_cols=n_cols,
        dtype=str(data.dtype),
        pixel_size_mm=pixel if pixel and pixel > 0 else None,
        energy_ev=read_float(f, ENERGY),
        camera_distance=read_float(f, CAMERA_DISTANCE),
        theta_deg=theta,
        is_360=bool(is_360),
        theta_source=theta_source,
        flat_source=_field_source(f, FLATS, FLAT_FALLBACK),
        dark_source=_field_source(f, DARKS, DARK_FALLBACK),
        instrument_name=None if name is None else str(name),
        sample_file_name=None if sample is None else str(sample),
    )


def read_metadata(path: str | Path) -> ScanMetadata:
    """Shape, angles, pixel size, energy... of a scan, without reading its projections."""
    path = Path(path)
    with _open_h5(path) as f:
        return _metadata(path, f)


def _row_slice(rows: slice | tuple[int, int] | None, n_rows: int) -> slice:
    if rows is None:
        return slice(0, n_rows)
    if isinstance(rows, tuple):
        rows = slice(*rows)
    start, stop, step = rows.indices(n_rows)
    if step != 1 or stop <= start:
        raise ScanError(f"bad row range {start}:{stop} for {n_rows} rows")
    return slice(start, stop)


class Scan:
    """An open scan: metadata plus slab readers. Use through :func:`open_scan`."""

    def __init__(self, path: Path, f: h5py.File):
        self._file = f
        self.metadata = _metadata(path, f)
        self._data = f[DATA]

    @property
    def theta_rad(self) -> np.ndarray:
        return self.metadata.theta_rad

    def read_sinograms(self, row_start: int, row_stop: int) -> np.ndarray:
        """Projections of detector rows [row_start, row_stop) as float32 [angle, row, column]."""
        rows = _row_slice(slice(row_start, row_stop), self.metadata.n_rows)
        return np.asarray(self._data[:, rows, :], dtype=np.float32)

    def _field(self, source: str | None, rows: slice | tuple[int, int] | None) -> np.ndarray | None:
        if source is None:
            return None
        sl = _row_slice(rows, self.metadata.n_rows)
        ds = self._file[source]
        n_rows, n_cols = sl.stop - sl.start, self.metadata.n_cols
        if ds.ndim == 3 and ds.shape[1:] == (self.metadata.n_rows, n_cols):
            return np.asarray(ds[:, sl, :], dtype=np.float32)
        if ds.ndim == 2 and ds.shape == (self.metadata.n_rows, n_cols):
            return np.asarray(ds[sl, :], dtype=np.float32)[None]
        if ds.size >= 1 and ds.ndim <= 1:  # one value (or one per frame): a uniform field
            value = float(np.mean(np.asarray(ds[()], dtype=np.float64)))
            return np.full((1, n_rows, n_cols), value, dtype=np.float32)
        raise ScanError(f"{self.metadata.path}: {source} has shape {ds.shape}, not usable as a field")

    def flats(self, rows: slice | tuple[int, int] | None = None) -> np.ndarray:
        """Flat fields of the rows as float32 [frame, row, column] (one frame for a uniform fallback value)."""
        out = self._field(self.metadata.flat_source, rows)
        if out is None:
            raise ScanError(f"{self.metadata.path}: no flat fields ({FLATS} or {FLAT_FALLBACK})")
        return out

    def darks(self, rows: slice | tuple[int, int] | None = None) -> np.ndarray:
        """Dark fields of the rows as float32 [frame, row, column]; zeros when the scan has none."""
        out = self._field(self.metadata.dark_source, rows)
        if out is None:
            sl = _row_slice(rows, self.metadata.n_rows)
            return np.zeros((1, sl.stop - sl.start, self.metadata.n_cols), dtype=np.float32)
        return out


@contextmanager
def open_scan(path: str | Path) -> Iterator[Scan]:
    """Open a scan for slab reads; raises :class:`ScanError` when it is not a usable Data Exchange file."""
    path = Path(path)
    f = _open_h5(path)
    try:
        yield Scan(path, f)
    finally:
        f.close()
