"""Automatic rotation-axis (centre) finding."""

from __future__ import annotations

import numpy as np

CENTRE_METHODS = ("pc", "vo")


def opposite_pair(theta_deg: np.ndarray) -> tuple[int, int]:
    """Indices of the projection nearest its start angle and of the one nearest 180 degrees later."""
    theta = np.asarray(theta_deg, dtype=np.float64)
    first = int(np.argmin(theta))
    diff = np.abs(np.mod(theta - theta[first] - 180.0 + 180.0, 360.0) - 180.0)
    second = int(np.argmin(diff))
    if diff[second] > 1.0:
        raise ValueError(
            f"no projection within 1 degree of {theta[first] + 180:.2f} (nearest is {diff[second]:.2f} off)"
        )
    return first, second


def find_center_pc(proj_0: np.ndarray, proj_180: np.ndarray, *, upsample: int = 50) -> float:
    """Centre from the phase correlation of the 0-degree projection and the mirrored 180-degree one.

    Both are attenuation images [row, column] (or one row). With the axis at column ``c``,
    ``p180(x) = p0(2c - x)``, so the mirrored 180-degree view is the 0-degree view shifted by ``2c - (N - 1)``.
    """
    from skimage.registration import phase_cross_correlation

    a = np.atleast_2d(np.asarray(proj_0, dtype=np.float64))
    b = np.atleast_2d(np.asarray(proj_180, dtype=np.float64))[:, ::-1]
    window = np.hanning(a.shape[1])[None, :]
    a = (a - a.mean()) * window
    b = (b - b.mean()) * window
    shift, _, _ = phase_cross_correlation(a, b, upsample_factor=upsample, normalization=None)
    return float((a.shape[1] - 1 + shift[-1]) / 2.0)


def find_center_vo(sinogram: np.ndarray, *, search_radius: float | None = None) -> float:
    """Centre of a 180-degree sinogram [angle, column] by algotom's Fourier-metric search (Vo et al. 2014)."""
    from algotom.prep.calculation import find_center_vo as _vo

    n_cols = sinogram.shape[1]
    radius = search_radius if search_radius is not None else n_cols // 4
    start, stop = max(1, n_cols // 2 - radius), min(n_cols - 2, n_cols // 2 + radius)
    return float(_vo(np.asarray(sinogram, dtype=np.float32), start=start, stop=stop))
