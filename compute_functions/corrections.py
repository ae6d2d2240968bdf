"""Projection corrections that mix detector rows: tilt, lens distortion and Paganin phase retrieval.

Each needs a margin of detector rows around the rows being reconstructed (:attr:`GeometryCorrection.margin`,
:func:`phase_margin`): the pipeline reads ``margin`` extra rows on each side of every slab, corrects, and
keeps the rows it reconstructs. Arrays are [angle, row, column] float32.

Also here: :func:`fresnel_propagate`, the forward model the tests use to make a phase-contrast scan.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from scipy import ndimage as ndi

PLANCK_EV_S = 4.135667696e-15
SPEED_OF_LIGHT = 299792458.0
MAX_PHASE_MARGIN = 256  # rows read beyond a slab for phase retrieval (the kernel's tail beyond is negligible)


def wavelength_m(energy_kev: float) -> float:
    return PLANCK_EV_S * SPEED_OF_LIGHT / (energy_kev * 1e3)


class GeometryCorrection:
    """Tilt (rotation about ``tilt_center``) then lens distortion (backward polynomial model), as one resampling.

    An output pixel (row ``r``, column ``c``) takes the input at ``rotate(undistort_source(r, c))``:
    ``undistort_source`` is the backward model ``x_d = x_c + (x - x_c) * sum_i k_i r_u^i`` (same for y) of
    algotom's ``unwarp_projection``, and ``rotate`` turns a point by ``tilt`` degrees about ``tilt_center``.
    """

    def __init__(
        self,
        n_rows: int,
        n_cols: int,
        *,
        tilt_deg: float = 0.0,
        tilt_center: tuple[float, float] | None = None,
        distortion_center: tuple[float, float] | None = None,
        distortion_factors: list[float] | None = None,
    ):
        self.n_rows, self.n_cols = n_rows, n_cols
        self.tilt = float(tilt_deg)
        self.tilt_center = tilt_center if tilt_center is not None else ((n_rows - 1) / 2.0, (n_cols - 1) / 2.0)
        self.distortion_center = distortion_center  # (x, y)
        self.factors = None if distortion_factors is None else [float(f) for f in distortion_factors]
        self.active = bool(self.tilt) or self.factors is not None
        self.margin = self._margin() if self.active else 0

    def source(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Input (row, column) coordinates of output pixels (broadcast arrays)."""
        r = np.asarray(rows, dtype=np.float64)
        c = np.asarray(cols, dtype=np.float64)
        if self.factors is not None:
            xc, yc = self.distortion_center or (self.n_cols / 2, self.n_rows / 2)
            xu, yu = c - xc, r - yc
            ru = np.hypot(xu, yu)
            fact = sum(k * ru**i for i, k in enumerate(self.factors))
            c, r = xc + fact * xu, yc + fact * yu
        if self.tilt:
            t = np.deg2rad(self.tilt)
            rc, cc = self.tilt_center
            dc, dr = c - cc, r - rc
            c, r = cc + np.cos(t) * dc - np.sin(t) * dr, rc + np.sin(t) * dc + np.cos(t) * dr
        return r, c

    def _margin(self) -> int:
        rows = np.arange(0, self.n_rows, max(1, self.n_rows // 64), dtype=np.float64)
        rows = np.union1d(rows, [self.n_rows - 1])
        cols = np.union1d(np.arange(0, self.n_cols, max(1, self.n_cols // 64)), [self.n_cols - 1])
        r, _ = self.source(rows[:, None], cols[None, :])
        return int(np.ceil(np.max(np.abs(r - rows[:, None])))) + 2

    def apply(self, slab: np.ndarray, slab_row0: int, out_r0: int, out_r1: int) -> np.ndarray:
        """Corrected rows ``[out_r0, out_r1)`` from ``slab`` [angle, row, column] (detector rows from ``slab_row0``)."""
        rows = np.arange(out_r0, out_r1, dtype=np.float64)[:, None]
        cols = np.arange(self.n_cols, dtype=np.float64)[None, :]
        r, c = self.source(rows, cols)
        coords = np.stack([np.broadcast_to(r - slab_row0, (rows.size, cols.size)), np.broadcast_to(c, r.shape)])
        coords = coords.astype(np.float32)
        out = np.empty((slab.shape[0], out_r1 - out_r0, self.n_cols), dtype=np.float32)
        for i in range(slab.shape[0]):
            ndi.map_coordinates(slab[i], coords, output=out[i], order=1, mode="nearest")
        return out


def paganin_length_px(pixel_m: float, distance_m: float, energy_kev: float, delta_beta: float) -> float:
    """Decay length (pixels) of Paganin's kernel: ``sqrt(lambda z (delta/beta) / (4 pi)) / pixel``."""
    return float(np.sqrt(wavelength_m(energy_kev) * distance_m * delta_beta / (4 * np.pi)) / pixel_m)


def phase_margin(pixel_m: float, distance_m: float, energy_kev: float, delta_beta: float) -> int:
    return int(min(MAX_PHASE_MARGIN, np.ceil(4 * paganin_length_px(pixel_m, distance_m, energy_kev, delta_beta)) + 4))


def paganin_filter(shape: tuple[int, int], pixel_m: float, distance_m: float, energy_kev: float, delta_beta: float):
    """``1 / (1 + pi lambda z (delta/beta) |u|^2)`` on the ``rfft2`` grid of ``shape`` (float32)."""
    u_r = np.fft.fftfreq(shape[0], d=pixel_m)
    u_c = np.fft.rfftfreq(shape[1], d=pixel_m)
    u2 = u_r[:, None] ** 2 + u_c[None, :] ** 2
    return (1.0 / (1.0 + np.pi * wavelength_m(energy_kev) * distance_m * delta_beta * u2)).astype(np.float32)


def retrieve_phase(
    att: np.ndarray,
    *,
    pixel_m: float,
    distance_m: float,
    energy_kev: float,
    delta_beta: float,
    pad: int | None = None,
    workers: int = 1,
) -> np.ndarray:
    """Paganin's single-material retrieval of -log projections [angle, row, column], in place; returns ``att``.

    Each projection goes back to transmission ``exp(-att)``, is edge-padded by ``pad`` pixels (default: the
    kernel's reach) to a fast FFT size, filtered by :func:`paganin_filter` and returned to ``-log``: the
    result is ``mu * thickness`` (``mu = 4 pi beta / lambda``), so a reconstruction gives the material's
    attenuation coefficient inside it.
    """
    n_angles, n_rows, n_cols = att.shape
    length = paganin_length_px(pixel_m, distance_m, energy_kev, delta_beta)
    pad = int(min(4 * MAX_PHASE_MARGIN, np.ceil(4 * length) + 8)) if pad is None else pad
    shape = (scipy.fft.next_fast_len(n_rows + 2 * pad, real=True), scipy.fft.next_fast_len(n_cols + 2 * pad, real=True))
    filt = paganin_filter(shape, pixel_m, distance_m, energy_kev, delta_beta)
    top, left = (shape[0] - n_rows) // 2, (shape[1] - n_cols) // 2
    widths = ((top, shape[0] - n_rows - top), (left, shape[1] - n_cols - left))
    for i in range(n_angles):
        trans = np.exp(-att[i])
        padded = np.pad(trans, widths, mode="edge")
        spec = scipy.fft.rfft2(padded, workers=workers)
        spec *= filt
        out = scipy.fft.irfft2(spec, s=shape, workers=workers)[top : top + n_rows, left : left + n_cols]
        att[i] = -np.log(np.maximum(out, 1e-6))
    return att


def fresnel_propagate(
    thickness_m: np.ndarray, *, delta: float, beta: float, energy_kev: float, distance_m: float, pixel_m: float
) -> np.ndarray:
    """Intensity after ``distance_m`` of free space behind a single material of projected ``thickness_m`` [row, col].

    Exit wave ``exp(-k (beta + i delta) T)``, then the Fresnel propagator ``exp(-i pi lambda z |u|^2)`` on a
    padded grid (edge values, so the field is smooth at the border). The forward model of the phase tests.
    """
    lam = wavelength_m(energy_kev)
    k = 2 * np.pi / lam
    n_rows, n_cols = thickness_m.shape
    pad_r, pad_c = n_rows // 2, n_cols // 2
    t = np.pad(np.asarray(thickness_m, dtype=np.float64), ((pad_r, pad_r), (pad_c, pad_c)), mode="edge")
    wave = np.exp(-k * (beta + 1j * delta) * t)
    u_r = np.fft.fftfreq(t.shape[0], d=pixel_m)
    u_c = np.fft.fftfreq(t.shape[1], d=pixel_m)
    prop = np.exp(-1j * np.pi * lam * distance_m * (u_r[:, None] ** 2 + u_c[None, :] ** 2))
    out = np.abs(np.fft.ifft2(np.fft.fft2(wave) * prop)) ** 2
    return out[pad_r : pad_r + n_rows, pad_c : pad_c + n_cols]
