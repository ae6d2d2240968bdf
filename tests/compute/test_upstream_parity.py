"""Issue 22 item 7: reconstruction parity with the beamline's script (splash_flows 1648452,
scripts/polaris/globus_reconstruction.py; line numbers below are that file's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from compute_functions.centre import opposite_view
from compute_functions.corrections import GeometryCorrection
from compute_functions.options import resolved_options
from compute_functions.param_line import parse_param_line
from compute_functions.preprocessing import beam_hardening, normalize, remove_stripes
from compute_functions.reconstruct import _row_groups, make_plan, prepare, reconstruct_scan
from compute_functions.sample_scan import geometry, write_sample_scan, write_transmission_scan
from compute_functions.scan_io import open_scan

DS = "20240224_132553_phantom"


def read_slices(summary: dict) -> np.ndarray:
    return np.stack([tifffile.imread(f) for f in sorted(Path(summary["tiff_dir"]).iterdir())])


# ----------------------------------------------------------------------------------------------------------
# 1. sinoused "-1,N,1" = the N middle rows (lines 375-377)
# ----------------------------------------------------------------------------------------------------------
def upstream_middle_rows(n_rows: int, count: int) -> list[int]:
    """Lines 375-377: (floor(n/2) - ceil(N/2), floor(n/2) + floor(N/2), 1)."""
    return list(range(int(np.floor(n_rows / 2.0) - np.ceil(count / 2.0)), int(np.floor(n_rows / 2.0) + count // 2)))


def test_i22_item_7_sinoused_minus_one_is_the_middle_rows():
    _, recon = parse_param_line('x.h5 cor 1196 sinoused "-1,10,1"')
    assert recon["middle_rows"] == 10  # was 1 (the negated start)
    _, recon = parse_param_line('x.h5 sinoused "-5,7,3"')  # upstream ignores the start's value and the step
    assert recon["middle_rows"] == 7
    for n_rows, count in ((2160, 10), (2160, 11), (2161, 10), (2161, 11), (25, 1), (24, 7)):
        o = resolved_options({"middle_rows": count})
        assert _row_groups(o, n_rows, 1) == upstream_middle_rows(n_rows, count), (n_rows, count)


# ----------------------------------------------------------------------------------------------------------
# 2. doBeamHardening 1 / dolensdistortion 1 with upstream's default coefficients (lines 193, 387-390)
# ----------------------------------------------------------------------------------------------------------
def test_i22_item_7_beam_hardening_default_is_upstreams():
    _, recon = parse_param_line("x.h5 doBeamHardening 1")
    o = resolved_options(recon)
    t = np.linspace(0, 3, 31, dtype=np.float32)
    upstream = 0 + 1 * t + 0 * t**2 + 0 * t**3 + 0 * t**4 + 0.004 * t**5  # (0, 1, 0, 0, 0, .004), line 388
    np.testing.assert_allclose(beam_hardening(t.copy(), o["beam_hardening_coefficients"]), upstream, rtol=1e-6)
    assert not np.allclose(upstream, t)  # the default changes the data


def tomopy_unwarp_backward(mat: np.ndarray, xc: float, yc: float, factors, rows: int) -> np.ndarray:
    """tomopy.prep.alignment.distortion_correction_proj on one projection (its first ``rows`` output rows), as
    its documentation and source state: the output pixel (row, column) takes the input at
    centre + (pixel - centre) * sum_i k_i r_u^i (linear interpolation, coordinates clipped to the image)."""
    h, w = mat.shape
    yu, xu = np.mgrid[0:rows, 0:w].astype(np.float64)
    xu, yu = xu - xc, yu - yc
    ru = np.hypot(xu, yu)
    fact = sum(k * ru**i for i, k in enumerate(factors))
    xd = np.clip(xc + fact * xu, 0, w - 1)
    yd = np.clip(yc + fact * yu, 0, h - 1)
    return ndi.map_coordinates(mat, [yd, xd], order=1, mode="reflect")


def test_i22_item_7_lens_distortion_default_is_upstreams_calibration():
    _, recon = parse_param_line("x.h5 dolensdistortion 1")
    o = resolved_options(recon)
    upstream_factors = (1.00015076, 1.9289e-06, -2.4325e-08, 1.00439e-11, -3.99352e-15)  # line 193
    assert o["lens_distortion_factors"] == pytest.approx(upstream_factors, rel=1e-12)
    assert o["lens_distortion_center"] == [1280.0, 1080.0]
    n_rows, n_cols = 2160, 2560  # the 8.3.2 detector: the calibration is in its pixel coordinates
    r, c = np.mgrid[0:n_rows, 0:n_cols]
    proj = (np.sin(c / 7.0) * np.cos(r / 5.0)).astype(np.float32)  # smooth, so interpolation is exact enough
    geo = GeometryCorrection(
        n_rows,
        n_cols,
        distortion_center=tuple(o["lens_distortion_center"]),
        distortion_factors=o["lens_distortion_factors"],
    )
    ours = geo.apply(proj[None], 0, 0, 96)[0]  # the top rows, where the calibration moves pixels most
    theirs = tomopy_unwarp_backward(proj, 1280, 1080, upstream_factors, 96)
    assert np.max(np.abs(ours - theirs)) < 1e-4
    assert np.max(np.abs(ours - proj[:96])) > 0.5  # the calibration moves these rows by pixels


def test_i22_item_7_tilt_centre_from_a_sheet_is_upstreams_pixel_centre():
    """Upstream turns about (tiltcenter_det - 0.5, tiltcenter_slice - 0.5) (lines 1318-1319)."""
    _, recon = parse_param_line("x.h5 correcttilt 1.5 tiltcenter_slice 1080 tiltcenter_det 1280")
    assert recon["tilt"] == 1.5 and recon["tilt_center"] == [1079.5, 1279.5]


# ----------------------------------------------------------------------------------------------------------
# 3. Orientation: upstream hands tomopy -(theta - angle_offset) (lines 286-290)
# ----------------------------------------------------------------------------------------------------------
DISCS = [(-22.0, 12.0, 9.0, 1.0), (14.0, 24.0, 5.0, 2.0), (6.0, -26.0, 12.0, 0.5)]  # X (row), Y (column), R, mu


def tomopy_projection(t_rad: float, cols: np.ndarray, center: float) -> np.ndarray:
    """Line integrals of DISCS at tomopy angle ``t`` on detector ``cols`` (axis at ``center``).

    tomopy's projector (libtomo/recon/project.c with utils.c ``calc_coords``): the ray of detector pixel d at
    angle t runs through src = xi (cos t, sin t) + yi (-sin t, cos t) and det = -xi (cos t, sin t) + yi (-sin t,
    cos t), with yi = d - center (+ half a pixel), in the slice's (X, Y) = (first, second array index) measured
    from the slice centre (``calc_dist``: index = indy + indx * rz). So a point (X, Y) lands on detector
    coordinate d - center = -X sin t + Y cos t.
    """
    s = cols - center
    out = np.zeros_like(s)
    for x0, y0, r, mu in DISCS:
        s0 = -x0 * np.sin(t_rad) + y0 * np.cos(t_rad)
        out += mu * 2 * np.sqrt(np.maximum(r * r - (s - s0) ** 2, 0.0))
    return out


@pytest.mark.parametrize("angle_offset", [0.0, 30.0, -70.0])
def test_i22_item_7_slices_have_the_orientation_of_upstreams_tomopy(tmp_path, angle_offset):
    """Our slice of a scan must show the object where upstream's tomopy slice shows it.

    Reasoning: tomopy.recon documents reconstructing the object from tomopy.project's projections with the
    same angles (its docstring example: ``sim = tomopy.project(obj, ang); rec = tomopy.recon(sim, ang, ...)``),
    and its iterative algorithms share project's ray code (libtomo ``utils.c``); gridrec is taken to follow the
    same convention (tomopy cannot be installed here to run it). So the upstream slice rec[s] of a sinogram is
    the object whose tomopy projection at angle t is that sinogram. Upstream gives tomopy
    t = -(theta - angle_offset) in radians for the file's angles theta (lines 286-290).
    :func:`tomopy_projection` writes tomopy's ray geometry with numpy; a scan made from it (three discs of
    different sizes at asymmetric places, file angles theta, t = -(theta - angle_offset)) therefore has, in
    upstream's slice, disc k at (row, column) = (c + X_k, c + Y_k) (c the slice centre). Our slice must show
    the same image: a mirror, a transpose or a turn by 2 angle_offset (the old ``theta + angle_offset``) scores
    far lower against it. Orientation only: tomopy's half-pixel conventions are not claimed.
    """
    n_cols, n_rows, center = 96, 2, 48.3
    theta = np.linspace(0.0, 180.0, 180, endpoint=False)
    cols = np.arange(n_cols, dtype=np.float64)
    lines = np.stack([tomopy_projection(-np.deg2rad(t - angle_offset), cols, center) for t in theta]) * 0.02
    trans = np.repeat(np.exp(-lines)[:, None, :], n_rows, axis=1)
    scan = write_transmission_scan(tmp_path / "o.h5", trans, theta, pixel_size_mm=None)
    conf = {"center": center, "angle_offset": angle_offset, "ring_removal": False, "engine": "nufft"}
    image = read_slices(reconstruct_scan(scan, tmp_path / "out", conf))[0]
    c = n_cols // 2  # our slice: the axis at pixel (N // 2, N // 2)
    y, x = np.mgrid[0:n_cols, 0:n_cols] - c
    truth = np.zeros((n_cols, n_cols))
    for x0, y0, r, mu in DISCS:
        truth[(y - x0) ** 2 + (x - y0) ** 2 <= r * r] += mu * 0.02
    inside = x**2 + y**2 <= (0.45 * n_cols) ** 2

    def score(ref):
        return float(np.corrcoef(image[inside], ref[inside])[0, 1])

    wrong = {
        "mirrored": truth[:, ::-1],
        "flipped": truth[::-1, :],
        "transposed": truth.T,
        "old +offset": ndi.rotate(truth, 2 * angle_offset, reshape=False, order=1) if angle_offset else truth.T,
    }
    assert score(truth) > 0.9, score(truth)
    assert all(score(ref) < 0.5 for ref in wrong.values()), {k: score(v) for k, v in wrong.items()}


# ----------------------------------------------------------------------------------------------------------
# 4. The sinogram ring filter runs before tilt / distortion / phase retrieval, as upstream (lines 564-579)
# ----------------------------------------------------------------------------------------------------------
def test_i22_item_7_ring_filter_runs_before_tilt_as_upstream(tmp_path, monkeypatch):
    shape = (90, 24, 96)
    scan = write_sample_scan(tmp_path / f"{DS}.h5", size=shape, seed=6, ring_strength=0.08, noise=False)
    conf = {"center": geometry(shape).center, "tilt": 2.5, "ring_method": "sf", "rows": "10:14", "engine": "nufft"}
    o = resolved_options(conf)
    with open_scan(scan) as s:
        plan = make_plan(s, o, engine="nufft", nthreads=1)
        seconds = dict.fromkeys(("read", "normalize", "rings", "corrections"), 0.0)
        ours = prepare(s, plan, plan.groups, seconds)  # [slice, angle, column]
        raw = np.asarray(s._data[:], dtype=np.float32)
        att = normalize(raw, s.flats((0, shape[1])), s.darks((0, shape[1])), min_transmission=0.01, flat_ratio=1.0)
    geo = GeometryCorrection(shape[1], shape[2], tilt_deg=2.5)

    def rings(a):  # [angle, row, column] -> each row's sinogram filtered
        return np.stack([remove_stripes(a[:, r], method="sf", sf_size=5) for r in range(a.shape[1])], axis=1)

    upstream = np.moveaxis(geo.apply(rings(att), 0, 10, 14), 1, 0)  # rings, then tilt
    swapped = np.moveaxis(rings(geo.apply(att, 0, 0, shape[1]))[:, 10:14], 1, 0)  # tilt, then rings
    gap = float(np.max(np.abs(upstream - swapped)))  # measured 1.7e-3: the two orders differ
    assert gap > 1e-3 and float(np.max(np.abs(ours - upstream))) < gap / 50, (gap, np.max(np.abs(ours - upstream)))
    # The same through the whole pipeline, in memory and with tiny chunks (scratch files on disk, many passes).
    # One thread: finufft's multithreaded spreading adds in a varying order (differences ~1e-5 on these slices).
    whole = read_slices(reconstruct_scan(scan, tmp_path / "big", conf, nthreads=1))
    monkeypatch.setattr("compute_functions.reconstruct.CHUNK_BYTES", 40_000)
    small = read_slices(reconstruct_scan(scan, tmp_path / "small", conf, nthreads=1))
    np.testing.assert_allclose(small, whole, atol=1e-5)
    left = [p for p in tmp_path.rglob(".*") if ".zarr.staged" not in str(p)]  # beside: the one-pass Zarr
    assert not left, left  # no scratch file left behind


# ----------------------------------------------------------------------------------------------------------
# 5. Automatic centre: the 180-degree view is interpolated (or vo used) when none lies exactly at 180
# ----------------------------------------------------------------------------------------------------------
BLOBS = [(10.0, 150.0, 28.0, 2.0), (-40.0, -20.0, 14.0, 0.6), (60.0, 30.0, 9.0, 1.5)]  # x (col), y (row), R, mu


def blob_sinogram(theta_deg: np.ndarray, n_cols: int, center: float) -> np.ndarray:
    """Exact line integrals of BLOBS (our geometry: x cos t + y sin t = column - center); the heaviest disc lies
    150 px from the axis along the 0-degree beam, so a mirror view rotated by 0.14 degrees is shifted 0.37 px."""
    t = np.deg2rad(theta_deg)[:, None]
    s = np.arange(n_cols)[None, :] - center
    out = np.zeros((t.size, n_cols))
    for x0, y0, r, mu in BLOBS:
        out += mu * 2 * np.sqrt(np.maximum(r * r - (s - (x0 * np.cos(t) + y0 * np.sin(t))) ** 2, 0.0))
    return out * 0.01


@pytest.mark.parametrize(
    ("last", "views"),
    [(179.86, 1286), (179.86, 181), (180.06, 181)],  # 0.14 deg short (1 step, 1/7 step); one past 180
)
def test_i22_item_7_auto_centre_with_no_view_at_exactly_180(tmp_path, last, views):
    """The old auto centre took the nearest view (179.86) as the 180-degree one: 0.15-0.16 px off here."""
    n_cols, center = 384, 197.4
    theta = np.linspace(0.0, last, views)
    trans = np.repeat(np.exp(-blob_sinogram(theta, n_cols, center))[:, None, :], 2, axis=1)
    scan = write_transmission_scan(tmp_path / "c.h5", trans, theta, noise=True, seed=1)
    summary = reconstruct_scan(scan, tmp_path / "out", {"rows": "0:1"})
    assert summary["center_method"] == "pc"
    assert summary["center"] == pytest.approx(center, abs=0.1), summary["center"]


def test_i22_item_7_opposite_view_interpolates_extrapolates_or_gives_up():
    assert opposite_view(np.linspace(0, 180, 181)) == (0, [(180, 1.0)])
    first, [(i, wi), (j, wj)] = opposite_view(np.linspace(0, 180.06, 181))  # 179.06 and 180.06 bracket 180
    assert (first, i, j) == (0, 179, 180) and wi == pytest.approx(0.06 / 1.0003, rel=1e-3) and wi + wj == 1
    first, [(i, wi), (j, wj)] = opposite_view(np.linspace(0, 179.86, 1286))  # 2 p(179.86) - p(179.72)
    assert (i, j) == (1285, 1284) and wi == pytest.approx(2.0, rel=1e-3) and wj == pytest.approx(-1.0, rel=1e-2)
    assert opposite_view(np.arange(0, 179.5, 0.2)) is None  # 0.6 deg short = 3 steps: vo instead
    assert opposite_view(np.arange(0, 179, 2.0)) is None
