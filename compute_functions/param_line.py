"""Convert a line of beamline 8.3.2's parameter sheets (upstream tomopy script) into the ``recon`` conf.

A line is ``<scan>.h5`` followed by ``key value`` pairs, values quoted when they hold spaces or commas, e.g.
``20230224_132553_sea_shell.h5 cor 1196 sinoused "-1,10,1" doPhaseRetrieval 1 alphaReg 0.0002``.
Upstream defaults apply to keys the line leaves out (so Fourier-wavelet ring removal is on unless
``doFWringremoval 0``, as upstream). A key with no counterpart here is refused, naming the key, unless its
value is the upstream default (then it changes nothing); ``--ignore KEY`` drops a key on purpose.

CLI: ``python -m compute_functions.param_line '<line>' [--ignore KEY ...] [--with-scan]`` prints the recon conf
as JSON (with ``--with-scan``: ``{"scan": ..., "recon": ...}``); exit 2 with ``param_line: <key>: <why>``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

from compute_functions.errors import EXIT_DATA_ERROR, ScanError
from compute_functions.options import validate_options

#: upstream key -> (our key, kind); kinds: bool, float, int, str, list (numbers), ints (list of int).
DIRECT: dict[str, tuple[str, str]] = {
    "cor": ("center", "float"),
    "voInd": ("center_row", "int"),
    "nmInd": ("center_row", "int"),
    "doOutliers1D": ("outliers_1d", "bool"),
    "outlier_diff1D": ("outlier_diff_1d", "float"),
    "outlier_size1D": ("outlier_size_1d", "int"),
    "doOutliers2D": ("outliers_2d", "bool"),
    "outlier_diff2D": ("outlier_diff_2d", "float"),
    "outlier_size2D": ("outlier_size_2d", "int"),
    "bfexposureratio": ("flat_exposure_ratio", "float"),
    "minimum_transmission": ("min_transmission", "float"),
    "doBeamHardening": ("beam_hardening", "bool"),
    "BeamHardeningCoefficients": ("beam_hardening_coefficients", "list"),
    "ringSigma": ("ring_sigma", "float"),
    "ringLevel": ("ring_level", "int"),
    "ringWavelet": ("ring_wavelet", "str"),
    "ringNBlock": ("ring_nblock", "int"),
    "ringAlpha": ("ring_alpha", "float"),
    "ringSize": ("ring_sf_size", "int"),
    "Rarc": ("polar_ring_arc", "float"),
    "Rmaxwidth": ("polar_ring_max_width", "int"),
    "Rtmax": ("polar_ring_tmax", "float"),
    "Rthr": ("polar_ring_threshold", "float"),
    "Rtmin": ("polar_ring_tmin", "float"),
    "correcttilt": ("tilt", "float"),
    "dolensdistortion": ("lens_distortion", "bool"),
    "lensdistortioncenter": ("lens_distortion_center", "list"),
    "lensdistortionfactors": ("lens_distortion_factors", "list"),
    "angle_offset": ("angle_offset", "float"),
    "use360to180": ("half_acquisition", "bool"),
    "doPhaseRetrieval": ("phase_retrieval", "bool"),
    "alphaReg": ("phase_alpha", "float"),
    "propagation_dist": ("propagation_distance_mm", "float"),
    "kev": ("energy_kev", "float"),
    "projIgnoreList": ("ignore_projections", "ints"),
    "cast8bit_min": ("cast_min", "float"),
    "cast8bit_max": ("cast_max", "float"),
}

#: Keys with no counterpart: accepted only with their upstream default value (they then change nothing).
DEFAULT_ONLY: dict[str, Any] = {
    "doNormalize": True,
    "useNormalize_nf": False,
    "dominuslog": True,
    "doTranslationCorrection": False,
    "xshift": 0.0,
    "yshift": 0.0,
    "voSRad": 6.0,
    "voStep": 0.25,
    "voRatio": 0.5,
    "voDrop": 20.0,
    "nmTol": 0.5,
    "nmMask": True,
    "nmRatio": 1.0,
    "nmSinoOrder": False,
    "butterworth_cutoff": 0.25,
    "butterworth_order": 2.0,
    "writereconstruction": True,
    "writenormalized": False,
    "writeraw": False,
}
#: Performance-only keys (how much is held in memory): accepted with any value, no effect on the result.
NO_EFFECT = {"chunk_proj", "chunk_sino", "nmInit"}


def _fail(key: str, why: str) -> None:
    raise ScanError(f"{key}: {why}")


def _bool(key: str, text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", "none"):
        return False
    _fail(key, f"{text!r} is not 0/1 or True/False")
    raise AssertionError


def _number(key: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        _fail(key, f"{text!r} is not a number")
        raise AssertionError from None


def _numbers(key: str, text: str) -> list[float]:
    body = text.strip().strip("()[]")
    if not body:
        return []
    return [_number(key, part) for part in body.replace(" ", ",").split(",") if part.strip()]


def _convert(key: str, text: str, kind: str) -> Any:
    if kind == "bool":
        return _bool(key, text)
    if kind == "float":
        return _number(key, text)
    if kind == "int":
        value = _number(key, text)
        if not value.is_integer():
            _fail(key, f"{text!r} is not an integer")
        return int(value)
    if kind == "str":
        return text
    values = _numbers(key, text)
    if kind == "ints":
        if any(not v.is_integer() for v in values):
            _fail(key, f"{text!r} is not a list of integers")
        return [int(v) for v in values]
    return values


def _triple(key: str, text: str) -> tuple[int, int, int]:
    values = _numbers(key, text)
    if len(values) not in (2, 3) or any(not v.is_integer() for v in values):
        _fail(key, f"{text!r}: expected start,end[,step] integers")
    start, end = int(values[0]), int(values[1])
    step = int(values[2]) if len(values) == 3 else 1
    if step < 1:
        _fail(key, f"{text!r}: the step must be >= 1")
    return start, end, step


def parse_param_line(line: str, ignore: tuple[str, ...] | list[str] = ()) -> tuple[str, dict[str, Any]]:
    """``(scan file name, recon conf)`` of one parameter-sheet line; ScanError ``"<key>: <why>"`` otherwise."""
    try:
        tokens = shlex.split(line, comments=False)
    except ValueError as exc:
        raise ScanError(f"line: cannot split ({exc})") from None
    if not tokens:
        raise ScanError("line: empty")
    scan, rest = tokens[0], tokens[1:]
    if not scan.endswith(".h5"):
        raise ScanError(f"scan: {scan!r} is not an .h5 file name")
    if len(rest) % 2:
        raise ScanError(f"{rest[-1]}: has no value")
    pairs = list(zip(rest[::2], rest[1::2], strict=True))
    seen: set[str] = set()
    recon: dict[str, Any] = {}
    rings = {"doFWringremoval": True, "doTIringremoval": False, "doSFringremoval": False}
    polar = [False, False]
    vo_search: list[float] = []
    for key, text in pairs:
        if key in seen:
            _fail(key, "given twice")
        seen.add(key)
        if key in ignore or key in NO_EFFECT:
            continue
        if key in DIRECT:
            name, kind = DIRECT[key]
            if text.strip().lower() == "none" and kind != "bool":
                continue  # upstream None = the default
            recon[name] = _convert(key, text, kind)
        elif key in rings:
            rings[key] = _bool(key, text)
        elif key in ("doPolarRing", "doPolarRing2"):
            polar[key == "doPolarRing2"] = _bool(key, text)
        elif key == "corFunction":
            value = text.strip().lower()
            if value not in ("pc", "vo", "nm"):
                _fail(key, f"{text!r}: only pc, vo and nm are supported")
            recon["center_method"] = value
        elif key in ("voSMin", "voSMax"):
            vo_search.append(abs(_number(key, text)))
        elif key == "tiltcenter_slice":  # upstream turns about (value - 0.5) (globus_reconstruction.py 1318-1319)
            recon.setdefault("tilt_center", [None, None])[0] = _number(key, text) - 0.5
        elif key == "tiltcenter_det":
            recon.setdefault("tilt_center", [None, None])[1] = _number(key, text) - 0.5
        elif key == "sinoused":
            start, end, step = _triple(key, text)
            if start < 0:  # upstream: the second value is the count of middle rows, the step is ignored
                if end < 1:
                    _fail(key, f"{text!r}: with a negative start the second value is the number of rows (>= 1)")
                recon["middle_rows"] = end
            else:
                recon["rows"] = f"{start}:{end}" + (f":{step}" if step > 1 else "")
        elif key == "projused":
            start, end, step = _triple(key, text)
            if start < 0:
                _fail(key, f"{text!r}: a negative start is not supported for projections")
            recon["projections"] = f"{start}:{end}" + (f":{step}" if step > 1 else "")
        elif key == "anglelist":
            if text.strip().lower() not in ("none", "-1"):
                _fail(key, "only None or -1 (the scan's own angles) are supported")
        elif key == "recon_algorithm":
            if text.strip().lower() != "gridrec":
                _fail(key, f"{text!r}: only gridrec (engine auto: tomopy gridrec or nufft) is supported")
            recon["engine"] = "auto"
        elif key == "castTo8bit":
            if _bool(key, text):
                recon["cast"] = "uint8"
        elif key in DEFAULT_ONLY:
            default = DEFAULT_ONLY[key]
            value = _bool(key, text) if isinstance(default, bool) else _number(key, text)
            if value != default:
                _fail(key, f"{text!r} has no counterpart here (only the upstream default {default!r} is accepted)")
        elif key == "outputFilename":
            _fail(key, "output names are fixed (rec<dataset>/); drop the key or pass --ignore outputFilename")
        else:
            _fail(key, "unknown upstream option")
    on = [k for k, v in rings.items() if v]
    if len(on) > 1:
        _fail(on[1], f"only one sinogram ring filter at a time ({on[0]} is also on)")
    names = {"doFWringremoval": "fw", "doTIringremoval": "ti", "doSFringremoval": "sf"}
    recon["ring_method"] = names[on[0]] if on else "none"
    if polar[1] and not polar[0]:
        _fail("doPolarRing2", "needs doPolarRing")
    if polar[0]:
        recon["polar_ring_passes"] = 1 + polar[1]
    if vo_search:
        recon["center_search"] = max(vo_search)
    if "tilt_center" in recon and None in recon["tilt_center"]:
        missing = "tiltcenter_slice" if recon["tilt_center"][0] is None else "tiltcenter_det"
        _fail(missing, "give both tilt centre values")
    if recon.get("cast") and "cast_min" not in recon:
        recon["cast_min"] = -10.0
    if recon.get("cast") and "cast_max" not in recon:
        recon["cast_max"] = 30.0
    if ("cast_min" in recon or "cast_max" in recon) and "cast" not in recon:
        recon.pop("cast_min", None)
        recon.pop("cast_max", None)
    if not recon.get("phase_retrieval"):
        for key in ("phase_alpha", "propagation_distance_mm", "energy_kev"):
            recon.pop(key, None)
    return scan, validate_options(recon)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compute_functions.param_line", description=__doc__.split("\n")[0])
    parser.add_argument("line", help="one parameter-sheet line (quote it)")
    parser.add_argument("--ignore", action="append", default=[], metavar="KEY", help="drop this upstream key")
    parser.add_argument("--with-scan", action="store_true", help='print {"scan": ..., "recon": ...}')
    args = parser.parse_args(argv)
    try:
        scan, recon = parse_param_line(args.line, args.ignore)
    except ScanError as exc:
        print(f"param_line: {exc}", file=sys.stderr)
        return EXIT_DATA_ERROR
    print(json.dumps({"scan": scan, "recon": recon} if args.with_scan else recon))
    return 0


if __name__ == "__main__":
    sys.exit(main())
