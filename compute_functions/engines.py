"""Parallel-beam reconstruction engines: one slice per sinogram, attenuation per pixel.

Convention shared by every engine (and by :mod:`compute_functions.phantom`): a sinogram is [angle, column],
``center`` is the column (pixel centres at 0, 1, ...) where the rotation axis projects, a projection at angle
``theta`` integrates along ``x cos(theta) + y sin(theta) = column - center`` with ``x`` along the image
columns and ``y`` along the image rows (downwards), and the N x N output (N = number of columns) has the
axis at pixel ``(N // 2, N // 2)``.

Engines:
- ``nufft``: Fourier gridding. Ramp-weighted 1-D FFTs of the padded projections, phase-shifted to the axis,
  then one type-1 2-D NUFFT (finufft) from the polar samples to the image grid; finufft does the
  deapodisation. Single precision, plan reused across slices, slices batched through ``n_trans``.
- ``fbp``: the numpy filtered back-projection reference (same filters, linear interpolation).
- ``dfi``: algotom's direct Fourier inversion.
- ``tomopy``: tomopy gridrec, when ``import tomopy`` works (never on PyPI).
- ``auto``: ``tomopy`` if importable, else ``nufft``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

import numpy as np
import scipy.fft

FILTERS = ("ramp", "shepp", "cosine", "hann", "butterworth")
ENGINES = ("auto", "nufft", "fbp", "dfi", "tomopy")


def default_threads() -> int:
    """Threads to use: ``OMP_NUM_THREADS`` if set, else the CPUs this process may run on."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def tomopy_available() -> bool:
    return importlib.util.find_spec("tomopy") is not None


def resolve_engine(name: str) -> str:
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    if name == "auto":
        return "tomopy" if tomopy_available() else "nufft"
    return name


def padded_length(n_cols: int, pad_factor: float = 2.0) -> int:
    """A fast FFT length of at least ``pad_factor`` x the detector width (even)."""
    n = scipy.fft.next_fast_len(int(np.ceil(n_cols * pad_factor)), real=True)
    return n + (n % 2)


def filter_response(length: int, filter_name: str = "shepp", cutoff: float = 0.25, order: int = 2) -> np.ndarray:
    """Ramp filter x window for the ``rfft`` bins of a length-``length`` signal (float64, ``length//2+1``).

    The ramp is the DFT of the band-limited spatial ramp kernel (Kak & Slaney), so the DC term is right; the
    windows take the normalised frequency ``x = omega / pi`` in [0, 1]; ``butterworth`` is tomopy's
    ``1 / (1 + (f / cutoff)^(2 order))`` with ``f`` in cycles per pixel.
    """
    if filter_name not in FILTERS:
        raise ValueError(f"unknown filter {filter_name!r}; choose one of {', '.join(FILTERS)}")
    n = np.fft.fftfreq(length, 1.0 / length)
    kernel = np.zeros(length)
    kernel[0] = 0.25
    odd = n % 2 == 1
    kernel[odd] = -1.0 / (np.pi * n[odd]) ** 2
    ramp = np.real(np.fft.rfft(kernel))  # ~ |omega| / (2 pi)
    x = np.arange(length // 2 + 1) / (length / 2)
    if filter_name == "shepp":
        window = np.sinc(x / 2)
    elif filter_name == "cosine":
        window = np.cos(np.pi * x / 2)
    elif filter_name == "hann":
        window = 0.5 * (1 + np.cos(np.pi * x))
    elif filter_name == "butterworth":
        window = 1.0 / (1.0 + (0.5 * x / cutoff) ** (2 * order))
    else:
        window = np.ones_like(x)
    return ramp * window


def angle_weights(theta_rad: np.ndarray) -> np.ndarray:
    """Quadrature weights of the angles, summing to pi: each line through the origin counted once.

    Angles are folded modulo pi (a 360-degree scan covers every line twice, so its weights are halved),
    and each angle gets half the gap to its neighbours; repeated angles share their weight.
    """
    theta = np.asarray(theta_rad, dtype=np.float64)
    folded = np.mod(theta, np.pi)
    order = np.argsort(folded, kind="stable")
    sorted_t = folded[order]
    prev = np.concatenate(([sorted_t[-1] - np.pi], sorted_t[:-1]))
    nxt = np.concatenate((sorted_t[1:], [sorted_t[0] + np.pi]))
    weights = np.empty_like(theta)
    weights[order] = (nxt - prev) / 2.0
    return weights * (np.pi / weights.sum())


def _pad(sinos: np.ndarray, length: int) -> tuple[np.ndarray, int]:
    """Edge-pad [..., angle, column] to ``length`` columns; returns the padded array and the left offset."""
    n_cols = sinos.shape[-1]
    left = (length - n_cols) // 2
    widths = [(0, 0)] * (sinos.ndim - 1) + [(left, length - n_cols - left)]
    return np.pad(sinos, widths, mode="edge"), left


class NufftEngine:
    """Fourier-gridding reconstruction through one type-1 2-D NUFFT per slice (finufft, single precision).

    Only the non-negative frequencies are used (the image is real): ``f = 2 Re sum c_j exp(i k . x_j)``.
    ``pairs``: two slices per transform instead (the points mirrored to ``-k`` with conjugate coefficients, slice
    ``a`` in the real part and ``b`` in the imaginary part: ``f_a + i f_b = sum (a_j + i b_j) exp(i k . x_j) +
    (conj a_j + i conj b_j) exp(-i k . x_j)``): twice the points to spread but one FFT for two slices, ~30 %
    less time per slice when the slices come two at a time (a lone slice costs ~40 % more).
    Build once per scan geometry; :meth:`__call__` takes any number of sinograms and reuses the plan.
    """

    def __init__(
        self,
        theta_rad: np.ndarray,
        n_cols: int,
        *,
        filter_name: str = "shepp",
        pad_factor: float = 1.5,
        eps: float = 1e-4,
        batch: int = 4,
        nthreads: int | None = None,
        out_size: int | None = None,
        upsampfac: float = 1.25,
        fftw_measure: bool = False,
        pairs: bool = False,
    ):
        import finufft

        self.n_cols = n_cols
        self.size = out_size or n_cols
        self.length = padded_length(n_cols, pad_factor)
        self.batch = max(1, batch)
        self.pairs = pairs
        self.nthreads = nthreads or default_threads()
        half = self.length // 2  # bins 0 .. L/2-1: the Nyquist bin is dropped
        omega = 2.0 * np.pi * np.arange(half) / self.length
        theta = np.asarray(theta_rad, dtype=np.float64)
        ky = (np.sin(theta)[:, None] * omega[None, :]).astype(np.float32).ravel()
        kx = (np.cos(theta)[:, None] * omega[None, :]).astype(np.float32).ravel()
        weight = filter_response(self.length, filter_name)[:half] / self.length
        weight[0] *= 0.5  # the DC sample is not doubled by taking the real part
        self._weight = (angle_weights(theta)[:, None] * weight[None, :]).astype(np.float32)
        self._omega = omega
        self._factor: np.ndarray | None = None
        self._factor_at: tuple[int, float] | None = None
        self._plan = finufft.Plan(
            1,
            (self.size, self.size),
            n_trans=self.batch,
            eps=eps,
            isign=1,
            dtype="complex64",
            nthreads=self.nthreads,
            modeord=0,
            upsampfac=upsampfac,
            fftw=0 if fftw_measure else 64,  # FFTW_MEASURE (seconds to plan, faster FFTs) or FFTW_ESTIMATE
        )
        self._plan.setpts(*((np.concatenate([ky, -ky]), np.concatenate([kx, -kx])) if pairs else (ky, kx)))

    def _coefficients(self, sinos: np.ndarray, center: float) -> np.ndarray:
        padded, left = _pad(np.asarray(sinos, dtype=np.float32), self.length)
        spectrum = scipy.fft.rfft(padded, axis=-1, workers=self.nthreads)[..., : self.length // 2]
        if self._factor_at != (left, center):  # weights x the centre's phase ramp: once per centre
            phase = np.exp(1j * self._omega * (left + center)).astype(np.complex64)
            self._factor, self._factor_at = self._weight * phase, (left, center)
        spectrum *= self._factor
        return spectrum

    def __call__(self, sinos: np.ndarray, center: float) -> np.ndarray:
        """Reconstruct sinograms [slice, angle, column] (or one [angle, column]) to float32 [slice, N, N]."""
        sinos = np.asarray(sinos)
        single = sinos.ndim == 2
        sinos = sinos[None] if single else sinos
        out = np.empty((sinos.shape[0], self.size, self.size), dtype=np.float32)
        per = 2 if self.pairs else 1  # slices per transform
        m = sinos.shape[1] * (self.length // 2)
        for start in range(0, sinos.shape[0], self.batch * per):
            chunk = sinos[start : start + self.batch * per]
            coeffs = np.zeros((self.batch, m * per), dtype=np.complex64)
            c = self._coefficients(chunk, center).reshape(chunk.shape[0], m)
            if not self.pairs:
                coeffs[: chunk.shape[0]] = c
                images = self._plan.execute(coeffs)
                out[start : start + chunk.shape[0]] = 2.0 * images[: chunk.shape[0]].real
                continue
            a, b = c[0::2], c[1::2]
            plus, minus = coeffs[: len(a), :m], coeffs[: len(a), m:]  # at k: a + i b; at -k: conj(a) + i conj(b)
            if len(b) == len(a):
                np.subtract(a.real, b.imag, out=plus.real)
                np.add(a.imag, b.real, out=plus.imag)
                np.add(a.real, b.imag, out=minus.real)
                np.subtract(b.real, a.imag, out=minus.imag)
            else:  # a lone last slice
                plus[:-1] = a[:-1] + np.complex64(1j) * b
                minus[:-1] = np.conj(a[:-1]) + np.complex64(1j) * np.conj(b)
                plus[-1], minus[-1] = a[-1], np.conj(a[-1])
            images = self._plan.execute(coeffs).reshape(self.batch, self.size, self.size)
            out[start : start + chunk.shape[0] : 2] = images[: len(a)].real
            out[start + 1 : start + chunk.shape[0] : 2] = images[: len(b)].imag
        return out[0:1] if single else out


def fbp_numpy(sinos: np.ndarray, theta_rad: np.ndarray, center: float, *, filter_name: str = "shepp") -> np.ndarray:
    """Reference filtered back-projection (numpy, linear interpolation): float32 [slice, N, N]."""
    sinos = np.atleast_3d(np.asarray(sinos, dtype=np.float64).T).T if np.ndim(sinos) == 2 else np.asarray(sinos)
    n_slices, _, n_cols = sinos.shape
    length = padded_length(n_cols)
    padded, left = _pad(sinos.astype(np.float64), length)
    filtered = np.fft.irfft(np.fft.rfft(padded, axis=-1) * filter_response(length, filter_name), length, axis=-1)
    coords = np.arange(n_cols, dtype=np.float64) - n_cols // 2
    cols = np.arange(length, dtype=np.float64)
    out = np.zeros((n_slices, n_cols, n_cols))
    for theta, weight, proj in zip(theta_rad, angle_weights(theta_rad), np.moveaxis(filtered, 1, 0), strict=True):
        s = coords[None, :] * np.cos(theta) + coords[:, None] * np.sin(theta) + center + left
        for i in range(n_slices):
            out[i] += weight * np.interp(s, cols, proj[i])
    return out.astype(np.float32)


def dfi_algotom(sinos: np.ndarray, theta_rad: np.ndarray, center: float, *, filter_name: str = "hann") -> np.ndarray:
    """algotom's direct Fourier inversion, mapped to this module's orientation: float32 [slice, N, N]."""
    from algotom.rec.reconstruction import dfi_reconstruction

    sinos = np.asarray(sinos, dtype=np.float32)
    sinos = sinos[None] if sinos.ndim == 2 else sinos
    window = filter_name if filter_name in ("hann", "shepp", "cosine", "ramp") else "hann"
    images = [
        dfi_reconstruction(s, center, angles=np.asarray(theta_rad), filter_name=window, apply_log=False) for s in sinos
    ]
    return _algotom_orientation(np.asarray(images, dtype=np.float32))


def _algotom_orientation(images: np.ndarray) -> np.ndarray:
    """algotom's y axis points up and its axis pixel is (N-1)//2 after the flip: measured on the phantom."""
    return np.roll(images[:, ::-1, :], 1, axis=1)


def tomopy_gridrec(sinos: np.ndarray, theta_rad: np.ndarray, center: float, *, nthreads: int | None = None):
    """tomopy gridrec with the production filter (Butterworth 0.25, order 2): float32 [slice, N, N]."""
    import tomopy

    sinos = np.asarray(sinos, dtype=np.float32)
    sinos = sinos[None] if sinos.ndim == 2 else sinos
    rec = tomopy.recon(
        np.ascontiguousarray(np.moveaxis(sinos, 0, 1)),
        np.asarray(theta_rad, dtype=np.float32),
        center=center,
        algorithm="gridrec",
        filter_name="butterworth",
        filter_par=[0.25, 2],
        ncore=nthreads or default_threads(),
    )
    return np.asarray(rec, dtype=np.float32)


def make_engine(
    name: str,
    theta_rad: np.ndarray,
    n_cols: int,
    *,
    filter_name: str = "shepp",
    nthreads: int | None = None,
    batch: int = 4,
    fftw_measure: bool = False,
    pairs: bool = False,
) -> Callable[[np.ndarray, float], np.ndarray]:
    """A callable ``(sinos [slice, angle, column], center) -> float32 [slice, N, N]`` for the named engine.

    ``fftw_measure``: let FFTW time its plans (nufft; several seconds once per process and size, then ~40 %
    faster FFTs): worth it from a few tens of slices. ``pairs``: nufft reconstructs two slices per transform
    (:class:`NufftEngine`): for callers that pass slices two at a time.
    """
    name = resolve_engine(name)
    theta = np.asarray(theta_rad, dtype=np.float64)
    if name == "nufft":
        return NufftEngine(
            theta,
            n_cols,
            filter_name=filter_name,
            nthreads=nthreads,
            batch=batch,
            fftw_measure=fftw_measure,
            pairs=pairs,
        )
    if name == "fbp":
        return lambda sinos, center: fbp_numpy(sinos, theta, center, filter_name=filter_name)
    if name == "dfi":
        return lambda sinos, center: dfi_algotom(sinos, theta, center, filter_name=filter_name)
    return lambda sinos, center: tomopy_gridrec(sinos, theta, center, nthreads=nthreads)
