"""An analytic 3-D Shepp-Logan-like phantom: exact slices and exact parallel-beam line integrals.

Coordinates are in detector pixels, centred on the rotation axis: ``x`` along the detector columns, ``y``
along the image rows (downwards), and a projection at angle ``theta`` integrates along the line
``x cos(theta) + y sin(theta) = s``. A reconstruction of an ``N``-column slice has the axis at pixel
``(N // 2, N // 2)``; :func:`phantom_slice` samples the phantom on that grid.
"""

from __future__ import annotations

import numpy as np

# x0, y0, z0, a, b, c, phi (degrees), density; lengths in units of the phantom radius.
ELLIPSOIDS = np.array(
    [
        (0.0, 0.0, 0.0, 0.69, 0.92, 0.90, 0.0, 1.0),
        (0.0, 0.0, 0.0, 0.6624, 0.874, 0.88, 0.0, -0.8),
        (-0.22, 0.0, -0.25, 0.41, 0.16, 0.21, 108.0, -0.2),
        (0.22, 0.0, -0.25, 0.31, 0.11, 0.22, 72.0, -0.2),
        (0.0, -0.35, -0.25, 0.21, 0.25, 0.50, 0.0, 0.1),
        (0.0, -0.1, -0.25, 0.046, 0.046, 0.046, 0.0, 0.2),
        (-0.08, 0.65, -0.25, 0.046, 0.023, 0.02, 0.0, 0.1),
        (0.06, 0.65, -0.25, 0.046, 0.023, 0.02, 90.0, 0.1),
        (0.06, 0.105, 0.625, 0.056, 0.04, 0.10, 90.0, 0.2),
        (0.0, -0.1, 0.625, 0.056, 0.056, 0.10, 0.0, -0.1),
        (0.45, 0.3, -0.25, 0.08, 0.05, 0.35, 30.0, 0.3),
    ]
)


def _sections(z: float, radius: float) -> list[tuple[float, float, float, float, float, float]]:
    """Ellipses (x0, y0, a, b, phi_rad, density) of the phantom cut at height ``z`` (units of the radius)."""
    out = []
    for x0, y0, z0, a, b, c, phi, rho in ELLIPSOIDS:
        t = (z - z0) / c
        if abs(t) >= 1.0:
            continue
        k = np.sqrt(1.0 - t * t) * radius
        out.append((x0 * radius, y0 * radius, a * k, b * k, np.deg2rad(phi), rho))
    return out


def phantom_slice(n: int, z: float, radius: float) -> np.ndarray:
    """The phantom cut at height ``z`` sampled on an ``n`` x ``n`` grid centred at ``n // 2`` (float64)."""
    y, x = np.mgrid[0:n, 0:n].astype(np.float64) - n // 2
    img = np.zeros((n, n))
    for x0, y0, a, b, phi, rho in _sections(z, radius):
        c, s = np.cos(phi), np.sin(phi)
        u = (x - x0) * c + (y - y0) * s
        v = -(x - x0) * s + (y - y0) * c
        img[(u / a) ** 2 + (v / b) ** 2 <= 1.0] += rho
    return img


def phantom_sinogram(theta_rad: np.ndarray, n_cols: int, center: float, z: float, radius: float) -> np.ndarray:
    """Exact line integrals [angle, column] (in pixel units) with the rotation axis at column ``center``."""
    theta = np.asarray(theta_rad, dtype=np.float64)[:, None]
    s = np.arange(n_cols, dtype=np.float64)[None, :] - center
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    sino = np.zeros((theta.shape[0], n_cols))
    for x0, y0, a, b, phi, rho in _sections(z, radius):
        alpha = theta - phi
        r2 = (a * np.cos(alpha)) ** 2 + (b * np.sin(alpha)) ** 2
        d = s - (x0 * cos_t + y0 * sin_t)
        chord = r2 - d * d
        sino += np.where(chord > 0, 2.0 * rho * a * b * np.sqrt(np.maximum(chord, 0.0)) / r2, 0.0)
    return sino
