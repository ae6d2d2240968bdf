"""Write a synthetic 8.3.2 scan in the full Data Exchange layout (SPEC §4), with its ground truth.

The scan is the analytic phantom of :mod:`compute_functions.phantom` seen through a detector with photon
(Poisson) noise, flats and darks, an off-centre rotation axis and per-column gain errors that the flats do
not capture (ring artefacts). Projections are generated a block of rows at a time, so even the ``full``
layout (1313 x 2160 x 2560) keeps memory bounded.

CLI: ``python -m compute_functions.sample_scan OUT.h5 [--size tiny] [--seed N]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from compute_functions.phantom import phantom_sinogram, phantom_slice

# (angles, rows, columns); "tiny" reconstructs end to end in well under a second.
SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (121, 4, 128),
    "small": (361, 16, 256),
    "medium": (721, 64, 512),
    "full": (1313, 2160, 2560),
}
PIXEL_SIZE_MM = 0.00325
ENERGY_EV = 25000.0
CAMERA_DISTANCE_MM = 50.0
FLAT_COUNTS = 20000.0
DARK_COUNTS = 100.0
MAX_LINE_INTEGRAL = 2.0  # attenuation along the most absorbing ray
N_FLATS = 10
N_DARKS = 10


@dataclass(frozen=True)
class SampleGeometry:
    """Where the phantom sits: everything needed to regenerate the projections or the truth."""

    n_angles: int
    n_rows: int
    n_cols: int
    center: float
    radius: float
    pixel_size_mm: float
    scale: float  # attenuation per pixel of a phantom density of 1
    range_deg: float

    @property
    def theta_deg(self) -> np.ndarray:
        endpoint = self.range_deg <= 300
        return np.linspace(0.0, self.range_deg, self.n_angles, endpoint=endpoint)

    def z(self, row: int) -> float:
        """Height of a detector row, in phantom radii (rows span the classic slice at z = -0.25)."""
        return -0.25 + 0.5 * (row + 0.5 - self.n_rows / 2) / max(self.n_rows, 8)


def resolve_shape(size: str | tuple[int, int, int]) -> tuple[int, int, int]:
    if isinstance(size, str):
        try:
            return SIZES[size]
        except KeyError:
            raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}") from None
    shape = tuple(int(n) for n in size)
    if len(shape) != 3 or min(shape) < 1 or shape[2] < 16:
        raise ValueError(f"shape must be (angles, rows, columns >= 16), got {size!r}")
    return shape  # type: ignore[return-value]


def geometry(
    size: str | tuple[int, int, int] = "tiny",
    *,
    center_offset: float | None = None,
    range_deg: float = 180.0,
    pixel_size_mm: float = PIXEL_SIZE_MM,
) -> SampleGeometry:
    """The geometry of a sample scan; the default axis sits 1.25 % of the width (+0.3 px) right of centre."""
    n_angles, n_rows, n_cols = resolve_shape(size)
    offset = 0.0125 * n_cols + 0.3 if center_offset is None else float(center_offset)
    radius = 0.42 * n_cols - abs(offset)
    if radius < 0.2 * n_cols:
        raise ValueError(f"center_offset {offset} leaves no room for the sample in {n_cols} columns")
    # The densest ray crosses the outer shell twice plus the interior; normalise by the exact maximum of a view.
    probe = phantom_sinogram(np.array([0.0, np.pi / 2]), n_cols, n_cols / 2, -0.25, radius)
    scale = MAX_LINE_INTEGRAL / float(probe.max())
    return SampleGeometry(n_angles, n_rows, n_cols, n_cols / 2 + offset, radius, pixel_size_mm, scale, range_deg)


def ground_truth(geom: SampleGeometry, rows: range | list[int] | None = None) -> np.ndarray:
    """True attenuation (1/cm) of the given detector rows [row, N, N], on the reconstruction grid."""
    rows = range(geom.n_rows) if rows is None else rows
    per_cm = geom.scale / (geom.pixel_size_mm / 10.0)
    return np.stack([phantom_slice(geom.n_cols, geom.z(r), geom.radius) * per_cm for r in rows]).astype(np.float32)


def line_integrals(geom: SampleGeometry, row: int) -> np.ndarray:
    """Noise-free attenuation line integrals [angle, column] of one detector row."""
    theta = np.deg2rad(geom.theta_deg)
    return phantom_sinogram(theta, geom.n_cols, geom.center, geom.z(row), geom.radius) * geom.scale


def _column_gain(rng: np.random.Generator, n_cols: int, strength: float) -> np.ndarray:
    """Per-column gain errors not seen by the flats: a few strong stripes over a faint background."""
    gain = 1.0 + rng.normal(0.0, 0.1 * strength, n_cols)
    bad = rng.choice(n_cols, size=max(2, n_cols // 25), replace=False)
    gain[bad] += rng.choice([-1.0, 1.0], size=bad.size) * rng.uniform(0.5, 1.0, bad.size) * strength
    return gain


def _bytes(value: str) -> np.ndarray:
    return np.array([value.encode()])


def _write_metadata(f: h5py.File, path: Path, geom: SampleGeometry, rng: np.random.Generator, fallback: bool) -> None:
    n = geom.n_angles
    m = f.require_group("measurement")
    inst = m.require_group("instrument")
    inst["instrument_name"] = _bytes("8.3.2 micro-tomography")
    sample = m.require_group("sample")
    sample["file_name"] = _bytes(path.stem)
    sample["sample_name"] = _bytes("synthetic phantom")
    exp = sample.require_group("experiment")
    exp["pi"] = _bytes("Dula Parkinson")
    exp["proposal"] = _bytes("ALS-11234")
    exp["beamline"] = _bytes("8.3.2")
    exp["title"] = _bytes("Synthetic Shepp-Logan phantom")
    sample.require_group("experimenter")["email"] = _bytes("DYParkinson@lbl.gov")
    sample["experimenter"]["name"] = _bytes("Dula Parkinson")
    det = inst.require_group("detector")
    det["dimension_x"] = np.array([geom.n_cols], dtype=np.int64)
    det["dimension_y"] = np.array([geom.n_rows], dtype=np.int64)
    det["pixel_size"] = np.array([geom.pixel_size_mm])
    det["binning_x"] = np.array([1], dtype=np.int64)
    det["binning_y"] = np.array([1], dtype=np.int64)
    det["exposure_time"] = np.full(n, 0.05) + rng.normal(0, 1e-4, n)
    det["model"] = _bytes("PCO.edge 5.5")
    inst.require_group("monochromator")["energy"] = np.array([ENERGY_EV])
    inst.require_group("camera_motor_stack/setup")["camera_distance"] = np.array([CAMERA_DISTANCE_MM])
    inst.require_group("detection_system/objective")["camera_objective"] = _bytes("5x")
    inst.require_group("detection_system/scintillator")["scintillator_type"] = _bytes("LuAG:Ce 50um")
    inst.require_group("slits")["horizontal_size"] = np.array([float(geom.n_cols) * geom.pixel_size_mm])
    src = inst.require_group("source")
    src["current"] = 500.0 + rng.normal(0, 0.3, n)
    src["source_name"] = _bytes("Advanced Light Source")
    stack = inst.require_group("sample_motor_stack/setup")
    stack["sample_x"] = 1.25 + rng.normal(0, 1e-4, n)
    stack["sample_y"] = -0.50 + rng.normal(0, 1e-4, n)
    stack["rotation_angle"] = geom.theta_deg.copy()
    inst["time_stamp"] = time.time() - 0.05 * np.arange(n)[::-1]
    acq = f.require_group("process/acquisition")
    rot = acq.require_group("rotation")
    step = geom.range_deg / (n if geom.range_deg > 300 else max(n - 1, 1))
    rot["rotation_start"] = np.array([0.0])
    rot["rotation_step"] = np.array([step])
    rot["num_angles"] = np.array([n], dtype=np.int64)
    rot["range"] = np.array([geom.range_deg])
    acq.require_group("flat_fields")["num_flat_fields"] = np.array([N_FLATS], dtype=np.int64)
    acq["flat_fields"]["i0cycle"] = np.array([0], dtype=np.int64)
    acq.require_group("dark_fields")["num_dark_fields"] = np.array([N_DARKS], dtype=np.int64)
    acq.require_group("mosaic")["tile_xmovedist"] = np.array([0.0])
    f.require_group("exchange")
    if not fallback:
        f["exchange/theta"] = geom.theta_deg
    f["implements"] = _bytes("exchange:measurement:process")


def write_sample_scan(
    path: str | Path,
    *,
    size: str | tuple[int, int, int] = "tiny",
    seed: int = 0,
    center_offset: float | None = None,
    rings: bool = True,
    ring_strength: float = 0.03,
    noise: bool = True,
    range_deg: float = 180.0,
    fallback_layout: bool = False,
    block_rows: int = 8,
) -> Path:
    """Write a synthetic scan and return its path; the ground truth comes from :func:`geometry`/:func:`ground_truth`.

    ``fallback_layout`` stores flats, darks and angles only under ``/process/acquisition`` (no
    ``/exchange/data_white``, ``data_dark`` or ``theta``) to exercise the reader's fallbacks.
    """
    path = Path(path)
    geom = geometry(size, center_offset=center_offset, range_deg=range_deg)
    n_angles, n_rows, n_cols = geom.n_angles, geom.n_rows, geom.n_cols
    rng = np.random.default_rng(seed)
    gain = _column_gain(rng, n_cols, ring_strength) if rings else np.ones(n_cols)
    # Beam profile: a smooth bump across the detector, which the flats capture.
    beam = FLAT_COUNTS * (0.8 + 0.2 * np.cos(np.linspace(-1.2, 1.2, n_cols)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    block = max(1, min(block_rows, n_rows))
    with h5py.File(tmp, "w") as f:
        _write_metadata(f, path, geom, rng, fallback_layout)
        chunks = (min(n_angles, 64), block, n_cols)
        data = f.create_dataset("exchange/data", (n_angles, n_rows, n_cols), dtype=np.uint16, chunks=chunks)
        flat_path = "process/acquisition/flat_fields/flat_field_value" if fallback_layout else "exchange/data_white"
        dark_path = "process/acquisition/dark_fields/dark_field_value" if fallback_layout else "exchange/data_dark"
        flats = f.create_dataset(flat_path, (N_FLATS, n_rows, n_cols), dtype=np.uint16)
        darks = f.create_dataset(dark_path, (N_DARKS, n_rows, n_cols), dtype=np.uint16)
        for r0 in range(0, n_rows, block):
            r1 = min(n_rows, r0 + block)
            shape = (r1 - r0, n_cols)
            flat_mean = np.broadcast_to(beam, shape)
            darks[:, r0:r1] = _counts(rng, np.full((N_DARKS, *shape), DARK_COUNTS), noise)
            flats[:, r0:r1] = _counts(rng, np.broadcast_to(flat_mean + DARK_COUNTS, (N_FLATS, *shape)), noise)
            proj = np.stack([line_integrals(geom, r) for r in range(r0, r1)], axis=1)  # [angle, row, col]
            expected = flat_mean[None] * gain * np.exp(-proj) + DARK_COUNTS
            data[:, r0:r1] = _counts(rng, expected, noise)
    tmp.replace(path)
    return path


def write_transmission_scan(
    path: str | Path,
    transmission: np.ndarray,
    theta_deg: np.ndarray,
    *,
    pixel_size_mm: float | None = PIXEL_SIZE_MM,
    energy_ev: float = ENERGY_EV,
    camera_distance_mm: float = CAMERA_DISTANCE_MM,
    flat_counts: float = FLAT_COUNTS,
    noise: bool = False,
    seed: int = 0,
) -> Path:
    """A Data Exchange scan whose projections are ``flat_counts * transmission + dark`` ([angle, row, column]).

    For tests that build the truth themselves (phase contrast, beam hardening, zingers, 360-degree scans): uint16
    counts, 4 flats, 4 darks, ``/exchange/theta`` and the energy, distance and pixel size of the beamline layout.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    trans = np.asarray(transmission, dtype=np.float64)
    _, n_rows, n_cols = trans.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["exchange/data"] = _counts(rng, flat_counts * trans + DARK_COUNTS, noise)
        f["exchange/data_white"] = _counts(rng, np.full((4, n_rows, n_cols), flat_counts + DARK_COUNTS), noise)
        f["exchange/data_dark"] = _counts(rng, np.full((4, n_rows, n_cols), DARK_COUNTS), noise)
        f["exchange/theta"] = np.asarray(theta_deg, dtype=np.float64)
        inst = f.require_group("measurement/instrument")
        if pixel_size_mm is not None:
            inst["detector/pixel_size"] = np.array([pixel_size_mm])
        inst["monochromator/energy"] = np.array([energy_ev])
        inst["camera_motor_stack/setup/camera_distance"] = np.array([camera_distance_mm])
    return path


def _counts(rng: np.random.Generator, expected: np.ndarray, noise: bool) -> np.ndarray:
    values = rng.poisson(expected) if noise else np.rint(expected)
    return np.clip(values, 0, np.iinfo(np.uint16).max).astype(np.uint16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compute_functions.sample_scan", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="output .h5 (name it <YYYYMMDD>_<HHMMSS>_<text>.h5, SPEC §1)")
    parser.add_argument("--size", default="tiny", choices=sorted(SIZES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--center-offset", type=float, default=None, help="axis offset from the detector middle (px)")
    parser.add_argument("--no-rings", action="store_true", help="no per-column gain errors")
    parser.add_argument("--no-noise", action="store_true", help="no photon noise")
    parser.add_argument("--range", type=float, default=180.0, dest="range_deg", help="rotation range in degrees")
    args = parser.parse_args(argv)
    try:
        out = write_sample_scan(
            args.out,
            size=args.size,
            seed=args.seed,
            center_offset=args.center_offset,
            rings=not args.no_rings,
            noise=not args.no_noise,
            range_deg=args.range_deg,
        )
    except (ValueError, OSError) as exc:
        print(f"sample_scan: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
