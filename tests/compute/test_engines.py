"""Engines against the exact phantom: accuracy, orientation, scale, agreement, plan reuse."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from compute_functions.engines import (
    NufftEngine,
    angle_weights,
    dfi_algotom,
    fbp_numpy,
    filter_response,
    make_engine,
    resolve_engine,
    tomopy_available,
)
from compute_functions.phantom import phantom_sinogram, phantom_slice

N, N_ANGLES = 256, 361
CENTER = N / 2 + 3.3
RADIUS = 0.42 * N - 3.3


@pytest.fixture(scope="module")
def phantom():
    theta = np.deg2rad(np.linspace(0, 180, N_ANGLES, endpoint=False))
    sino = phantom_sinogram(theta, N, CENTER, -0.25, RADIUS).astype(np.float32)
    truth = phantom_slice(N, -0.25, RADIUS)
    return theta, sino, truth


def scores(image, truth):
    y, x = np.ogrid[:N, :N]
    mask = (x - N // 2) ** 2 + (y - N // 2) ** 2 <= (0.45 * N) ** 2
    rng = truth.max() - truth.min()
    psnr = 10 * np.log10(rng**2 / np.mean((image[mask] - truth[mask]) ** 2))
    ssim = structural_similarity(np.where(mask, image, 0), np.where(mask, truth, 0), data_range=rng)
    return psnr, ssim


def test_nufft_matches_phantom_orientation_and_scale(phantom):
    theta, sino, truth = phantom
    image = NufftEngine(theta, N, nthreads=1)(sino, CENTER)[0]
    psnr, ssim = scores(image, truth)
    assert psnr > 24.5 and ssim > 0.6
    assert scores(image[::-1], truth)[0] < psnr - 4  # a mirrored result would be far worse
    assert scores(image[:, ::-1], truth)[0] < psnr - 4
    assert image[truth > 0].mean() == pytest.approx(truth[truth > 0].mean(), rel=0.03)


def test_nufft_at_least_as_good_as_fbp_iradon_and_dfi(phantom):
    from skimage.transform import iradon

    theta, sino, truth = phantom
    nufft = scores(NufftEngine(theta, N, nthreads=1)(sino, CENTER)[0], truth)[0]
    fbp = scores(fbp_numpy(sino[None], theta, CENTER)[0], truth)[0]
    dfi = scores(dfi_algotom(sino, theta, CENTER)[0], truth)[0]
    # skimage: axis at the middle column, theta in degrees, its own y orientation; shift the sinogram.
    shifted = np.roll(sino, N // 2 - round(CENTER), axis=1)
    ski = iradon(shifted.T, theta=np.rad2deg(theta), circle=True, filter_name="ramp")
    ski = max(scores(ski, truth)[0], scores(ski[::-1], truth)[0])
    assert nufft >= fbp - 0.3 and nufft > dfi and nufft >= ski - 0.3


def test_engines_agree_and_batches_are_independent(phantom):
    theta, sino, _ = phantom
    stack = np.stack([sino, 0.5 * sino, np.zeros_like(sino), sino[:, ::-1]])
    engine = NufftEngine(theta, N, nthreads=1, batch=3)  # 4 slices: one full and one partial batch
    out = engine(stack, CENTER)
    assert out.shape == (4, N, N) and out.dtype == np.float32
    np.testing.assert_allclose(out[1], 0.5 * out[0], atol=1e-3 * np.abs(out[0]).max())
    assert np.abs(out[2]).max() < 1e-6
    ref = fbp_numpy(sino[None], theta, CENTER)[0]
    assert np.abs(out[0] - ref).mean() < 0.02 * np.abs(ref).max()


def test_360_scan_matches_180(phantom):
    _, _, truth = phantom
    theta360 = np.deg2rad(np.linspace(0, 360, 2 * N_ANGLES, endpoint=False))
    sino = phantom_sinogram(theta360, N, CENTER, -0.25, RADIUS).astype(np.float32)
    assert angle_weights(theta360).sum() == pytest.approx(np.pi)
    assert scores(NufftEngine(theta360, N, nthreads=1)(sino, CENTER)[0], truth)[0] > 24.5


def test_filters_and_names():
    ramp = filter_response(64, "ramp")
    assert ramp[0] > 0 and ramp[-1] == pytest.approx(0.5, rel=0.01)  # DC kept, |omega| / 2 pi at Nyquist
    assert filter_response(64, "shepp")[-1] < ramp[-1] and filter_response(64, "hann")[-1] == pytest.approx(0)
    with pytest.raises(ValueError, match="unknown filter"):
        filter_response(64, "box")
    with pytest.raises(ValueError, match="unknown engine"):
        resolve_engine("astra")
    assert resolve_engine("auto") == ("tomopy" if tomopy_available() else "nufft")
    theta = np.deg2rad(np.arange(0, 180, 10.0))
    sino = np.zeros((18, 32), np.float32)
    for name in ("nufft", "fbp", "dfi"):
        assert make_engine(name, theta, 32)(sino[None], 16.0).shape == (1, 32, 32)


def test_pairs_reconstruct_the_same_slices_two_per_transform(phantom):
    theta, sino, truth = phantom
    stack = np.stack([sino, 0.5 * sino, sino[:, ::-1]])  # a pair, then a lone slice (paired with zeros)
    single = NufftEngine(theta, N, nthreads=1, batch=1)(stack, CENTER)
    paired = NufftEngine(theta, N, nthreads=1, batch=1, pairs=True)(stack, CENTER)
    assert paired.shape == (3, N, N) and paired.dtype == np.float32
    np.testing.assert_allclose(paired, single, atol=1e-3 * np.abs(single).max())  # NUFFT tolerance 1e-4
    assert scores(paired[0], truth)[0] == pytest.approx(scores(single[0], truth)[0], abs=0.01)
    two = NufftEngine(theta, N, nthreads=1, batch=2, pairs=True)(stack, CENTER)  # 4 slices per call
    np.testing.assert_allclose(two, paired, atol=1e-6 * np.abs(single).max())
