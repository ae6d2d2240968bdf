"""Automatic rotation-axis (centre) finding, and the 360-to-180 degree conversion of half-acquisition scans.

Centres are detector columns with pixel centres at 0, 1, ... (the convention of :mod:`compute_functions.engines`).

- ``pc``: phase correlation of the 0-degree view and the mirrored 180-degree view, iterated so that the window
  does not pull the estimate towards the detector middle. Needs a view within 1 degree of 180 from the first;
  :func:`opposite_view` gives the view at exactly 180 degrees (measured, or interpolated between two views).
- ``vo``: Vo's Fourier metric (algotom) on one 180-degree sinogram, coarse on a reduced sinogram then fine
  (0.05 px steps); works with sparse angles (no 0/180 pair needed); irregular angles are resampled first.
- ``nm``: minimum entropy of a reconstructed slice (upstream's Nelder-Mead on image entropy), coarse grid then
  bounded scalar minimisation.
- 360-degree scans with the axis near an edge: :func:`find_center_360` matches every view with the mirrored
  view 180 degrees later over all overlaps at once (FFT correlation), and :func:`stitch_360_to_180` builds the
  180-degree sinograms of about twice the width.
"""

from __future__ import annotations

import numpy as np

CENTRE_METHODS = ("auto", "pc", "vo", "nm")


def opposite_pair(theta_deg: np.ndarray, tolerance: float = 1.0) -> tuple[int, int]:
    """Indices of the projection nearest its start angle and of the one nearest 180 degrees later."""
    theta = np.asarray(theta_deg, dtype=np.float64)
    first = int(np.argmin(theta))
    diff = np.abs(np.mod(theta - theta[first] - 180.0 + 180.0, 360.0) - 180.0)
    second = int(np.argmin(diff))
    if diff[second] > tolerance:
        raise ValueError(
            f"no projection within {tolerance:g} degree of {theta[first] + 180:.2f} (nearest is {diff[second]:.2f} off)"
        )
    return first, second


def has_opposite_pair(theta_deg: np.ndarray, tolerance: float = 1.0) -> bool:
    try:
        opposite_pair(theta_deg, tolerance)
    except ValueError:
        return False
    return True


EXACT_OPPOSITE_DEG = 1e-3  # a view this close to 180 degrees is used as it is (0.02 px at 1280 px from the axis)


def opposite_view(theta_deg: np.ndarray, tolerance: float = 1.0) -> tuple[int, list[tuple[int, float]]] | None:
    """The first view and the view exactly 180 degrees later, as ``(first, [(index, weight), ...])``.

    One measured view when it lies within :data:`EXACT_OPPOSITE_DEG`; else the two views nearest the opposite
    angle within ``tolerance`` degrees, linearly interpolated (one on each side) or extrapolated by at most one
    angular step (both on one side, e.g. a 180-degree scan whose last view stops 0.14 degrees short: used as
    it is, its rotated mirror biases ``pc`` by 0.1-0.3 px); else ``None``.
    """
    theta = np.asarray(theta_deg, dtype=np.float64)
    first = int(np.argmin(theta))
    d = np.mod(theta - theta[first] - 180.0 + 180.0, 360.0) - 180.0  # signed offset from the opposite angle
    d[first] = np.inf
    order = np.argsort(np.abs(d))
    near = int(order[0])
    if abs(d[near]) <= EXACT_OPPOSITE_DEG:
        return first, [(near, 1.0)]
    if abs(d[near]) > tolerance:
        return None
    below = np.where((d < 0) & (d >= -tolerance))[0]
    above = np.where((d > 0) & (d <= tolerance))[0]
    if below.size and above.size:  # interpolate
        i, j = int(below[np.argmax(d[below])]), int(above[np.argmin(d[above])])
    else:  # extrapolate from the two nearest views on the one side, by at most one step
        side = np.where(np.sign(d) == np.sign(d[near]))[0]
        side = side[np.argsort(np.abs(d[side]))]
        if side.size < 2 or abs(d[near]) > abs(d[side[1]] - d[near]) + EXACT_OPPOSITE_DEG:
            return None
        i, j = int(side[0]), int(side[1])
    w = d[j] / (d[j] - d[i])  # Lagrange weights of the line through (d_i, p_i), (d_j, p_j) at 0
    return first, [(i, float(w)), (j, float(1.0 - w))]


def _fourier_shift(image: np.ndarray, shift: float) -> np.ndarray:
    """``image`` [row, column] moved by ``shift`` columns (sub-pixel, periodic)."""
    n = image.shape[-1]
    k = np.fft.rfftfreq(n)
    return np.fft.irfft(np.fft.rfft(image, axis=-1) * np.exp(-2j * np.pi * k * shift), n, axis=-1)


def find_center_pc(proj_0: np.ndarray, proj_180: np.ndarray, *, upsample: int = 100, iterations: int = 3) -> float:
    """Centre from the phase correlation of the 0-degree projection and the mirrored 180-degree one.

    Both are attenuation images [row, column] (or one row). With the axis at column ``c``,
    ``p180(x) = p0(2c - x)``, so the mirrored 180-degree view is the 0-degree view shifted by ``2c - (N - 1)``.
    A window (Hann) suppresses the detector edges but biases the peak towards zero shift, so the mirrored view
    is moved by the estimate and the residual shift measured again (``iterations`` times).
    """
    from skimage.registration import phase_cross_correlation

    a = np.atleast_2d(np.asarray(proj_0, dtype=np.float64))
    b = np.atleast_2d(np.asarray(proj_180, dtype=np.float64))[:, ::-1]
    n = a.shape[1]
    pad = n // 2
    a = np.pad(a - np.median(a), ((0, 0), (pad, pad)), mode="constant")
    b = np.pad(b - np.median(b), ((0, 0), (pad, pad)), mode="constant")
    window = np.zeros(a.shape[1])
    window[pad : pad + n] = np.hanning(n)
    total = 0.0
    for _ in range(max(1, iterations)):
        moved = _fourier_shift(b, total) if total else b
        shift, _, _ = phase_cross_correlation(a * window, moved * window, upsample_factor=upsample, normalization=None)
        total += float(shift[-1])
        if abs(shift[-1]) < 0.5 / upsample:
            break
    return float((n - 1 + total) / 2.0)


def uniform_sinogram(sinogram: np.ndarray, theta_deg: np.ndarray) -> np.ndarray:
    """The sinogram on evenly spaced angles over its 180 degrees (linear interpolation); unchanged if already even."""
    theta = np.asarray(theta_deg, dtype=np.float64)
    order = np.argsort(theta)
    theta, sino = theta[order], np.asarray(sinogram, dtype=np.float32)[order]
    steps = np.diff(theta)
    if steps.size == 0 or np.allclose(steps, steps.mean(), rtol=0.02, atol=1e-3):
        return sino
    grid = np.linspace(theta[0], theta[-1], theta.size)
    idx = np.clip(np.searchsorted(theta, grid, side="right") - 1, 0, theta.size - 2)
    frac = ((grid - theta[idx]) / np.maximum(theta[idx + 1] - theta[idx], 1e-9)).clip(0, 1)[:, None]
    return ((1 - frac) * sino[idx] + frac * sino[idx + 1]).astype(np.float32)


def _vo_metric(sino: np.ndarray, centers: np.ndarray, ratio: float = 0.5) -> np.ndarray:
    from algotom.prep.calculation import calculate_center_metric, make_inverse_double_wedge_mask

    n_rows, n_cols = sino.shape
    flip = np.fliplr(sino)
    comp = np.flipud(sino)
    mask = make_inverse_double_wedge_mask(2 * n_rows, n_cols, 0.5 * ratio * n_cols)
    return np.array([calculate_center_metric(c, sino, flip, comp, mask) for c in centers])


def find_center_vo(
    sinogram: np.ndarray,
    theta_deg: np.ndarray | None = None,
    *,
    guess: float | None = None,
    search_radius: float | None = None,
    fine_step: float = 0.05,
) -> float:
    """Centre of a 180-degree sinogram [angle, column] by Vo's Fourier metric (Vo et al. 2014, algotom).

    Coarse search (1 px) on a reduced sinogram (<= 512 angles, columns binned to <= 640), then the metric at
    full width on 0.05 px steps within 1.5 px of the coarse minimum. ``guess`` / ``search_radius`` bound the
    search (default: the middle half of the detector).
    """
    sino = np.asarray(sinogram, dtype=np.float32)
    if theta_deg is not None:
        sino = uniform_sinogram(sino, theta_deg)
    sino = np.nan_to_num(sino)
    n_angles, n_cols = sino.shape
    guess = (n_cols - 1) / 2.0 if guess is None else float(guess)
    radius = n_cols / 4.0 if search_radius is None else float(search_radius)
    lo, hi = max(1.0, guess - radius), min(n_cols - 2.0, guess + radius)
    if hi <= lo:
        raise ValueError(f"centre search {guess:.1f} +- {radius:.1f} lies outside the detector")
    rows = sino[:: max(1, n_angles // 512)]
    f = max(1, n_cols // 640)
    small = rows[:, : (n_cols // f) * f].reshape(rows.shape[0], -1, f).mean(axis=2)
    coarse = np.arange(np.ceil((lo - (f - 1) / 2) / f), np.floor((hi - (f - 1) / 2) / f) + 1)
    coarse = coarse if coarse.size else np.array([round((guess - (f - 1) / 2) / f)])
    best = coarse[int(np.argmin(_vo_metric(small, coarse)))] * f + (f - 1) / 2.0
    rows = sino[:: max(1, n_angles // 256)]
    for half, step in ((1.5 * f, 0.25 * f), (0.3, fine_step)):
        grid = np.arange(best - half, best + half + step / 2, step)
        grid = grid[(grid >= 1) & (grid <= n_cols - 2)]
        metric = _vo_metric(rows, grid)
        i = int(np.argmin(metric))
        best = float(grid[i])
        if 0 < i < metric.size - 1:  # parabola through the minimum and its neighbours
            y0, y1, y2 = metric[i - 1 : i + 2]
            denom = y0 - 2 * y1 + y2
            if denom > 0:
                best = float(grid[i] + 0.5 * step * (y0 - y2) / denom)
    return best


def image_entropy(image: np.ndarray, mask: np.ndarray | None = None, bins: int = 256) -> float:
    values = image[mask] if mask is not None else image.ravel()
    lo, hi = np.percentile(values, [0.5, 99.5])
    hist, _ = np.histogram(np.clip(values, lo, hi), bins=bins, range=(lo, hi))
    p = hist[hist > 0] / hist.sum()
    return float(-(p * np.log(p)).sum())


def find_center_nm(
    sinogram: np.ndarray,
    theta_rad: np.ndarray,
    *,
    guess: float | None = None,
    search_radius: float = 20.0,
    tolerance: float = 0.05,
) -> float:
    """Centre minimising the entropy of the reconstructed slice (NUFFT), within ``search_radius`` of ``guess``."""
    from scipy.optimize import minimize_scalar

    from compute_functions.engines import NufftEngine

    sino = np.asarray(sinogram, dtype=np.float32)
    n_cols = sino.shape[1]
    guess = (n_cols - 1) / 2.0 if guess is None else float(guess)
    engine = NufftEngine(theta_rad, n_cols, nthreads=1, batch=1)
    y, x = np.ogrid[:n_cols, :n_cols]
    mask = (x - n_cols // 2) ** 2 + (y - n_cols // 2) ** 2 <= (0.45 * n_cols) ** 2

    def cost(c: float) -> float:
        return image_entropy(engine(sino, float(c))[0], mask)

    grid = np.arange(max(0.0, guess - search_radius), min(n_cols - 1.0, guess + search_radius) + 0.5, 1.0)
    values = [cost(c) for c in grid]
    i = int(np.argmin(values))
    lo, hi = grid[max(0, i - 1)], grid[min(grid.size - 1, i + 1)]
    if hi <= lo:
        return float(grid[i])
    res = minimize_scalar(cost, bounds=(lo, hi), method="bounded", options={"xatol": tolerance})
    return float(res.x if res.fun <= values[i] else grid[i])


def _pairs_360(theta_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each angle in the first 180 degrees: index of the view below ``theta + 180``, and the weight of the next."""
    theta = np.asarray(theta_deg, dtype=np.float64)
    order = np.argsort(theta)
    ts = theta[order]
    first = ts[0]
    top = order[ts < first + 180.0 - 1e-9]
    target = theta[top] + 180.0
    pos = np.searchsorted(ts, target, side="right") - 1
    ok = (pos >= 0) & (pos < ts.size - 1)
    pos = np.where(ok, pos, np.clip(pos, 0, ts.size - 1))
    nxt = np.clip(pos + 1, 0, ts.size - 1)
    gap = np.maximum(ts[nxt] - ts[pos], 1e-9)
    frac = np.where(ok, (target - ts[pos]) / gap, 0.0).clip(0, 1)
    keep = ok | (np.abs(ts[pos] - target) < 1e-6)
    return top[keep], np.stack([order[pos[keep]], order[nxt[keep]]]), frac[keep]


def opposite_views(sino: np.ndarray, theta_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Angles in the first 180 degrees, their views and the views 180 degrees later (interpolated in angle)."""
    top, (lo, hi), frac = _pairs_360(theta_deg)
    sino = np.asarray(sino, dtype=np.float32)
    bottom = (1 - frac)[:, None] * sino[lo] + frac[:, None] * sino[hi]
    return np.asarray(theta_deg, dtype=np.float64)[top], sino[top], bottom.astype(np.float32)


def find_center_360(sino_360: np.ndarray, theta_deg: np.ndarray, *, min_overlap: int | None = None) -> float:
    """Axis (detector columns) of a 360-degree scan, anywhere on the detector (half acquisition included).

    For a candidate axis ``c`` a view ``p`` and the view 180 degrees later ``q`` satisfy ``q(x) = p(2c - x)``
    wherever both are measured (the overlap). The mean squared mismatch over the overlap is computed for every
    ``2c`` at once from a linear correlation (FFT) and running sums of squares; the minimum over overlaps of at
    least ``min_overlap`` columns (default ``max(16, N / 20)``) is refined by a parabola.
    """
    import scipy.signal

    _, top, bottom = opposite_views(sino_360, theta_deg)
    step = max(1, top.shape[0] // 180)
    top, bottom = top[::step].astype(np.float64), bottom[::step].astype(np.float64)
    n = top.shape[1]
    min_overlap = max(16, n // 20) if min_overlap is None else min_overlap
    # C[m] = sum_x top(x) bottom(m - x): the convolution of top and bottom, m = 0 .. 2n - 2.
    corr = scipy.signal.fftconvolve(top, bottom, axes=1, mode="full").sum(axis=0)
    m = np.arange(2 * n - 1)
    lo = np.maximum(0, m - (n - 1))
    hi = np.minimum(n - 1, m)  # overlap: x in [lo, hi] and m - x in [lo, hi] too
    width = hi - lo + 1
    st = np.concatenate([[0.0], np.cumsum((top**2).sum(axis=0))])
    sb = np.concatenate([[0.0], np.cumsum((bottom**2).sum(axis=0))])
    energy = st[hi + 1] - st[lo] + sb[hi + 1] - sb[lo]
    mse = (energy - 2 * corr) / np.maximum(energy, 1e-30)  # relative mismatch over the overlap
    # An overlap must be wide enough and hold signal (empty background matches at any axis).
    mean_energy = (st[-1] + sb[-1]) / (2 * n)
    mse[(width < min_overlap) | (energy < 0.05 * mean_energy * width)] = np.inf
    i = int(np.argmin(mse))
    shift = 0.0
    if 0 < i < mse.size - 1 and np.isfinite(mse[i - 1]) and np.isfinite(mse[i + 1]):
        denom = mse[i - 1] - 2 * mse[i] + mse[i + 1]
        if denom > 0:
            shift = 0.5 * (mse[i - 1] - mse[i + 1]) / denom
    return float((i + shift) / 2.0)


def stitch_360_to_180(sinos: np.ndarray, theta_deg: np.ndarray, center: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Half-acquisition sinograms [slice, angle, column] (360 degrees) -> 180-degree sinograms of about twice the width.

    Each view in the first 180 degrees keeps its own columns and is extended past the edge farther from the axis
    with the view 180 degrees later mirrored about the axis (``q(2c - x)``, linear interpolation in angle and
    column); across the overlap the two blend linearly. Returns (sinograms, their angles in degrees, the axis
    column in the stitched frame).
    """
    sinos = np.asarray(sinos, dtype=np.float32)
    n = sinos.shape[-1]
    theta = np.asarray(theta_deg, dtype=np.float64)
    top, (lo_i, hi_i), frac = _pairs_360(theta)
    c = float(center)
    right = c >= (n - 1) / 2.0  # axis in the right half: extend to the right
    if right:
        x = np.arange(0, int(np.floor(2 * c)) + 1, dtype=np.float64)
    else:
        x = np.arange(int(np.ceil(2 * c - (n - 1))), n, dtype=np.float64)
    offset = -x[0]
    mirror = 2 * c - x  # detector column of the partner view
    own_ok = (x >= 0) & (x <= n - 1)
    mirror_ok = (mirror >= 0) & (mirror <= n - 1)
    both = own_ok & mirror_ok
    w_own = own_ok.astype(np.float64)
    if both.any():
        xs = x[both]
        ramp = (xs - xs.min() + 0.5) / (xs.max() - xs.min() + 1.0)  # 0 .. 1 across the overlap
        w_own[both] = 1.0 - ramp if right else ramp
    w_mirror = np.where(mirror_ok, 1.0 - w_own, 0.0)
    total = w_own + w_mirror
    w_own, w_mirror = (w_own / np.maximum(total, 1e-9)), (w_mirror / np.maximum(total, 1e-9))
    cols = np.arange(n, dtype=np.float64)
    xo = np.clip(x, 0, n - 1).astype(np.intp)
    mirror_c = np.clip(mirror, 0, n - 1)
    j0 = np.clip(np.floor(mirror_c).astype(np.intp), 0, n - 2)
    fj = (mirror_c - cols[j0])[None, :]
    out = np.empty((sinos.shape[0], top.size, x.size), dtype=np.float32)
    for s in range(sinos.shape[0]):
        own = sinos[s][top][:, xo]
        partner = (1 - frac)[:, None] * sinos[s][lo_i] + frac[:, None] * sinos[s][hi_i]
        mirrored = (1 - fj) * partner[:, j0] + fj * partner[:, j0 + 1]
        out[s] = own * w_own[None, :] + mirrored * w_mirror[None, :]
    return out, theta[top], c + offset
