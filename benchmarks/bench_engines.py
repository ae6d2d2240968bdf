"""Reconstruction engines side by side on the exact phantom: seconds per slice, PSNR, SSIM.

Run: ``.venv/bin/python benchmarks/bench_engines.py [--sizes 721x512 1313x2560] [--slices 4]``.
The nufft engine is timed on ``--slices`` slices (plan built once, excluded, as in a scan) with 1 and 2
threads; the slow references (numpy FBP, skimage iradon, algotom DFI) on one slice.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from skimage.metrics import structural_similarity

from compute_functions.engines import NufftEngine, dfi_algotom, fbp_numpy
from compute_functions.phantom import phantom_sinogram, phantom_slice


def scores(image: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    n = truth.shape[0]
    y, x = np.ogrid[:n, :n]
    mask = (x - n // 2) ** 2 + (y - n // 2) ** 2 <= (0.45 * n) ** 2
    rng = truth.max() - truth.min()
    psnr = 10 * np.log10(rng**2 / np.mean((image[mask] - truth[mask]) ** 2))
    ssim = structural_similarity(np.where(mask, image, 0), np.where(mask, truth, 0), data_range=rng)
    return float(psnr), float(ssim)


def timed(fn, repeat: int = 1):
    best, out = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench(n_angles: int, n_cols: int, n_slices: int, skip_slow: bool) -> list[tuple]:
    center = n_cols / 2 + 0.0125 * n_cols + 0.3
    radius = 0.42 * n_cols - (center - n_cols / 2)
    theta = np.deg2rad(np.linspace(0, 180, n_angles, endpoint=True))
    sino = phantom_sinogram(theta, n_cols, center, -0.25, radius).astype(np.float32)
    truth = phantom_slice(n_cols, -0.25, radius)
    stack = np.repeat(sino[None], n_slices, axis=0)
    rows = []
    for threads in (1, 2):
        engine = NufftEngine(theta, n_cols, nthreads=threads, batch=min(4, n_slices))
        engine(stack[:1], center)  # warm-up (FFTW plans, caches)
        seconds, out = timed(lambda e=engine: e(stack, center), repeat=2)
        rows.append((f"nufft ({threads} thr)", seconds / n_slices, *scores(out[0], truth)))
    if not skip_slow:
        seconds, out = timed(lambda: fbp_numpy(sino[None], theta, center))
        rows.append(("numpy fbp (ref)", seconds, *scores(out[0], truth)))
    seconds, out = timed(lambda: dfi_algotom(sino, theta, center))
    rows.append(("algotom dfi", seconds, *scores(out[0], truth)))
    if not skip_slow:
        from skimage.transform import iradon

        shifted = np.roll(sino, n_cols // 2 - round(center), axis=1)  # skimage puts the axis mid-detector
        seconds, out = timed(lambda: iradon(shifted.T, theta=np.rad2deg(theta), circle=True, filter_name="ramp"))
        rows.append(("skimage iradon", seconds, *max(scores(out, truth), scores(out[::-1], truth))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["721x512", "1313x2560"], help="ANGLESxCOLUMNS")
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--skip-slow", action="store_true", help="skip numpy FBP and skimage iradon")
    args = parser.parse_args()
    for size in args.sizes:
        n_angles, n_cols = (int(v) for v in size.split("x"))
        rows = bench(n_angles, n_cols, args.slices, args.skip_slow)
        ref = next((r[1] for r in rows if r[0].startswith("numpy fbp")), None)
        print(f"\n{n_angles} angles x {n_cols} columns")
        print("| engine | s/slice | PSNR dB | SSIM | speed vs numpy FBP |\n|---|---|---|---|---|")
        for name, sec, psnr, ssim in rows:
            ratio = f"{ref / sec:.1f}x" if ref else "-"
            print(f"| {name} | {sec:.3f} | {psnr:.2f} | {ssim:.3f} | {ratio} |")


if __name__ == "__main__":
    main()
