"""Projection pre-processing: flat/dark normalisation, -log, binning and ring (stripe) removal."""

from __future__ import annotations

import numpy as np

RING_METHODS = ("fw", "sorting")


def normalize(
    projections: np.ndarray, flats: np.ndarray, darks: np.ndarray, *, min_transmission: float = 0.01
) -> np.ndarray:
    """Attenuation line integrals ``-log(clip((p - dark) / (flat - dark), min_transmission))`` as float32.

    ``projections`` is [angle, row, column]; ``flats`` and ``darks`` are [frame, row, column] (averaged over
    frames) or anything broadcastable to one projection.
    """
    flat = np.asarray(flats, dtype=np.float32)
    dark = np.asarray(darks, dtype=np.float32)
    flat = flat.mean(axis=0) if flat.ndim == 3 else flat
    dark = dark.mean(axis=0) if dark.ndim == 3 else dark
    denom = np.maximum(flat - dark, 1e-6)
    out = (np.asarray(projections, dtype=np.float32) - dark) / denom
    np.maximum(out, np.float32(min_transmission), out=out)
    np.log(out, out=out)
    np.negative(out, out=out)
    return out


def bin_projections(projections: np.ndarray, binning: int) -> np.ndarray:
    """Average ``binning`` x ``binning`` detector pixels of [angle, row, column]; ragged edges are dropped."""
    if binning == 1:
        return projections
    n_angles, n_rows, n_cols = projections.shape
    r, c = n_rows // binning, n_cols // binning
    trimmed = projections[:, : r * binning, : c * binning]
    return trimmed.reshape(n_angles, r, binning, c, binning).mean(axis=(2, 4), dtype=np.float32)


def binned_center(center: float, binning: int) -> float:
    """The axis column after binning: bin ``j`` covers detector columns ``b*j .. b*j + b - 1``."""
    return (center - (binning - 1) / 2.0) / binning


def remove_stripes_fw(sinogram: np.ndarray, *, sigma: float = 3.0, level: int = 8, wavelet: str = "db5") -> np.ndarray:
    """Fourier-wavelet stripe removal (Münch et al. 2009, as tomopy's ``remove_stripe_fw``) of [angle, column].

    The vertical detail coefficients of each wavelet level are damped near zero frequency along the angle
    axis by ``1 - exp(-k^2 / (2 sigma^2))``; larger ``sigma`` removes more. ``level`` is capped at what the
    sinogram size allows.
    """
    import pywt

    n_angles, n_cols = sinogram.shape
    pad = n_cols // 8
    sino = np.pad(np.asarray(sinogram, dtype=np.float64), ((0, 0), (pad, pad)), mode="edge")
    level = max(1, min(level, pywt.dwt_max_level(min(sino.shape), pywt.Wavelet(wavelet).dec_len)))
    details = []
    approx = sino
    for _ in range(level):
        approx, (ch, cv, cd) = pywt.dwt2(approx, wavelet)
        k = np.fft.fftfreq(cv.shape[0], 1.0 / cv.shape[0])
        damp = 1.0 - np.exp(-(k**2) / (2.0 * sigma**2))
        cv = np.real(np.fft.ifft(np.fft.fft(cv, axis=0) * damp[:, None], axis=0))
        details.append((ch, cv, cd))
    for ch, cv, cd in reversed(details):
        approx = pywt.idwt2((approx[: ch.shape[0], : ch.shape[1]], (ch, cv, cd)), wavelet)
    return approx[:n_angles, pad : pad + n_cols].astype(np.float32)


def remove_stripes(sinogram: np.ndarray, *, method: str = "fw", strength: float = 3.0) -> np.ndarray:
    """Remove stripes (ring artefacts) from one sinogram [angle, column].

    ``fw``: Fourier-wavelet, ``strength`` = sigma. ``sorting``: algotom's sorting-based filter (Vo et al.),
    ``strength`` = median window size in pixels (odd, >= 3).
    """
    if method == "fw":
        return remove_stripes_fw(sinogram, sigma=strength)
    if method == "sorting":
        from algotom.prep.removal import remove_stripe_based_sorting

        size = max(3, round(strength) | 1)
        return remove_stripe_based_sorting(np.asarray(sinogram, dtype=np.float32), size=size).astype(np.float32)
    raise ValueError(f"unknown ring removal method {method!r}; choose one of {', '.join(RING_METHODS)}")


def stripe_metric(sinogram: np.ndarray) -> float:
    """Strength of stripes in [angle, column]: std of the column means minus their 9-pixel median."""
    from scipy.ndimage import median_filter

    profile = np.asarray(sinogram, dtype=np.float64).mean(axis=0)
    return float(np.std(profile - median_filter(profile, size=9, mode="nearest")))
