"""The per-scan reconstruction options (the ``recon`` conf): JSON schema, defaults and validation.

Imported by the DAG files at parse time, so this module imports nothing beyond the standard library (no
numpy, no h5py). Every property names the upstream option of beamline 8.3.2's tomopy script (the parameter
sheets, ``shared/RECON-OPTIONS.md``) in its description; ``docs/recon-options.md`` has the full table.

Contract:
- :data:`RECON_SCHEMA`: a JSON-schema object (``additionalProperties: false``), JSON-serialisable, for Airflow
  Params (the UI form shows each ``description``).
- :func:`validate_options` checks what the schema says *and* what it cannot express (ranges ``A:B`` with
  ``A < B``, exclusive pairs, list lengths), fills nothing in, and raises a one-line
  ``ValueError("<key>: <value>: <what is wrong>; <fix>")`` (a :class:`compute_functions.errors.ScanError`) on the
  first problem; an unknown key gets ``<key>: unknown option; did you mean <option>?``.
- :func:`resolved_options` returns the validated options with every default filled in: what a run used.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
from typing import Any

from compute_functions.errors import ScanError

ENGINES = ["auto", "nufft", "fbp", "dfi", "tomopy"]
RING_METHODS = ["sorting", "fw", "ti", "sf", "all", "none"]
CENTRE_METHODS = ["auto", "pc", "vo", "nm"]
FILTERS = ["shepp", "ramp", "cosine", "hann", "butterworth"]

_RANGE = r"^\d*:\d*(:[1-9]\d*)?$"
#: Upper bounds for counts and indices (detector rows/columns, projections): far above any detector, low
#: enough that a typo such as ``99999999999999999999`` is refused with a message instead of reaching the science.
MAX_PIXELS = 100_000
MAX_PROJECTIONS = 1_000_000
#: Upstream's calibrated lens distortion of the 8.3.2 camera (globus_reconstruction.py ``lensdistortionfactors``).
UPSTREAM_LENS_FACTORS = (1.00015076, 1.9289e-06, -2.4325e-08, 1.00439e-11, -3.99352e-15)


def _num(description: str, default: Any = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "number", "description": description, **extra}
    if default is not None:
        out["default"] = default
    return out


def _int(description: str, default: Any = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "integer", "description": description, **extra}
    if default is not None:
        out["default"] = default
    return out


def _bool(description: str, default: bool = False) -> dict[str, Any]:
    return {"type": "boolean", "default": default, "description": description}


PROPERTIES: dict[str, dict[str, Any]] = {
    # --- which data ---------------------------------------------------------------------------------------
    "rows": {
        "type": "string",
        "pattern": _RANGE,
        "description": "Detector rows A:B (half-open, either side optional) or A:B:S (every S-th row); default all. "
        "Upstream: sinoused (start, end, step) with a non-negative start.",
    },
    "middle_rows": _int(
        "Reconstruct this many rows around the detector middle (instead of rows): rows n//2 - ceil(N/2) to "
        'n//2 + N//2. Upstream: sinoused with a negative start, the second value the count ("-1,10,1" = the '
        "10 middle rows).",
        minimum=1,
        maximum=MAX_PIXELS,
    ),
    "projections": {
        "type": "string",
        "pattern": _RANGE,
        "description": "Projections used, A:B or A:B:S over the projection index; default all. Upstream: projused.",
    },
    "ignore_projections": {
        "type": "array",
        "items": {"type": "integer", "minimum": 0, "maximum": MAX_PROJECTIONS},
        "description": "Projection indices left out of the reconstruction (bad frames). Upstream: projIgnoreList "
        "(upstream zeroes them; here they are dropped, which leaves no streak).",
    },
    "angle_offset": _num(
        "Subtracted from every angle, in degrees (as upstream: the slice turns by -angle_offset). "
        "Upstream: angle_offset.",
        0.0,
    ),
    "binning": _int(
        "Average b x b detector pixels first (quick previews), 1-8. Upstream: none.", 1, minimum=1, maximum=8
    ),
    # --- centre -------------------------------------------------------------------------------------------
    "center": _num(
        "Rotation axis in detector columns (unbinned); omit to find it. Upstream: cor.",
        minimum=0,
    ),
    "center_method": {
        "type": "string",
        "enum": CENTRE_METHODS,
        "default": "auto",
        "description": "How the axis is found when center is omitted: pc = phase correlation of the 0 and 180 "
        "degree views; vo = Vo's Fourier metric on a sinogram (any angles); nm = Nelder-Mead on the entropy of "
        "a reconstructed slice; auto = pc when a 0/180 pair exists, else vo. Half-acquisition scans always "
        "use the 360-degree overlap search. Upstream: corFunction (pc, vo, nm).",
    },
    "center_row": _int(
        "Detector row whose sinogram vo and nm use; default the middle of the rows reconstructed. "
        "Upstream: voInd, nmInd.",
        minimum=0,
        maximum=MAX_PIXELS,
    ),
    "center_search": _num(
        "vo and nm search half-width around the first guess, in columns. Upstream: voSMin/voSMax (-150, 150).",
        150,
        minimum=1,
    ),
    # --- outliers (zingers) -------------------------------------------------------------------------------
    "outliers_1d": _bool("Replace outliers by the median along detector columns. Upstream: doOutliers1D."),
    "outlier_diff_1d": _num("Counts above the 1-D median make an outlier. Upstream: outlier_diff1D.", 750, minimum=0),
    "outlier_size_1d": _int("Width of the 1-D median (pixels). Upstream: outlier_size1D.", 3, minimum=2, maximum=51),
    "outliers_2d": _bool("Replace outliers by the 2-D median of each projection. Upstream: doOutliers2D."),
    "outlier_diff_2d": _num("Counts above the 2-D median make an outlier. Upstream: outlier_diff2D.", 750, minimum=0),
    "outlier_size_2d": _int("Size of the 2-D median (pixels). Upstream: outlier_size2D.", 3, minimum=2, maximum=51),
    # --- normalisation ------------------------------------------------------------------------------------
    "min_transmission": _num(
        "Transmission clamp before -log. Upstream: minimum_transmission.", 0.01, exclusiveMinimum=0, maximum=1
    ),
    "flat_exposure_ratio": _num(
        "Flat exposure / projection exposure (flats are divided by it). Upstream: bfexposureratio.",
        1.0,
        exclusiveMinimum=0,
    ),
    # --- beam hardening -----------------------------------------------------------------------------------
    "beam_hardening": _bool(
        "Correct beam hardening: t -> a0 + a1 t + ... + a5 t^5 on the -log data. Upstream: doBeamHardening."
    ),
    "beam_hardening_coefficients": {
        "type": "array",
        "items": {"type": "number"},
        "minItems": 2,
        "maxItems": 6,
        "default": [0.0, 1.0, 0.0, 0.0, 0.0, 0.004],
        "description": "a0..a5 of the correction polynomial (fewer than 6: higher terms zero); default "
        "upstream's t + 0.004 t^5. Upstream: BeamHardeningCoefficients.",
    },
    # --- rings --------------------------------------------------------------------------------------------
    "ring_removal": _bool(
        "Remove ring (stripe) artefacts; false is the same as ring_method none (kept for older confs). "
        "Upstream: doFWringremoval / doTIringremoval / doSFringremoval all 0 when false.",
        True,
    ),
    "ring_method": {
        "type": "string",
        "enum": RING_METHODS,
        "default": "sorting",
        "description": "Sinogram ring filter: sorting = Vo's sorting-based filter (default); fw = Fourier-wavelet "
        "(upstream doFWringremoval, the upstream default); ti = Titarenko (doTIringremoval); sf = smoothing "
        "filter (doSFringremoval); all = algotom's combined method (dead, large and small stripes); none. "
        "Upstream: doFWringremoval, doTIringremoval, doSFringremoval.",
    },
    "ring_sort_size": _int("sorting: median window (pixels). algotom size.", 21, minimum=3, maximum=201),
    "ring_sigma": _num("fw: damping sigma. Upstream: ringSigma.", 3.0, exclusiveMinimum=0),
    "ring_level": _int("fw: wavelet levels. Upstream: ringLevel.", 8, minimum=1, maximum=16),
    "ring_wavelet": {
        "type": "string",
        "pattern": r"^[a-z]+[0-9.]*$",
        "default": "db5",
        "description": "fw: wavelet name (PyWavelets). Upstream: ringWavelet.",
    },
    "ring_nblock": _int(
        "ti: number of angular blocks (0 = whole sinogram). Upstream: ringNBlock.",
        0,
        minimum=0,
        maximum=MAX_PROJECTIONS,
    ),
    "ring_alpha": _num("ti: damping factor. Upstream: ringAlpha.", 1.5, minimum=0),
    "ring_sf_size": _int("sf: smoothing window (pixels). Upstream: ringSize.", 5, minimum=3, maximum=201),
    "ring_snr": _num("all: stripe detection ratio. algotom snr.", 3.0, exclusiveMinimum=0),
    "ring_large_size": _int("all: window for large stripes (pixels). algotom la_size.", 51, minimum=3, maximum=401),
    "polar_ring_passes": _int(
        "Ring filter on the reconstructed slices in polar coordinates: 0, 1 or 2 passes. "
        "Upstream: doPolarRing, doPolarRing2.",
        0,
        minimum=0,
        maximum=2,
    ),
    "polar_ring_arc": _num(
        "Polar filter: arc (degrees) a ring is averaged over. Upstream: Rarc.", 30, minimum=1, maximum=360
    ),
    "polar_ring_max_width": _int(
        "Polar filter: widest ring (pixels). Upstream: Rmaxwidth.", 100, minimum=3, maximum=MAX_PIXELS
    ),
    "polar_ring_tmax": _num("Polar filter: values above are ignored (output units). Upstream: Rtmax.", 3000),
    "polar_ring_threshold": _num(
        "Polar filter: ring/structure threshold (output units); larger departures are structure. Upstream: Rthr.",
        3000,
        exclusiveMinimum=0,
    ),
    "polar_ring_tmin": _num("Polar filter: values below are ignored (output units). Upstream: Rtmin.", -3000),
    # --- geometry -----------------------------------------------------------------------------------------
    "tilt": _num(
        "Rotate each projection by this angle (degrees, counter-clockwise on the detector image) about "
        "tilt_center to make the axis vertical. Upstream: correcttilt.",
        0.0,
        minimum=-10,
        maximum=10,
    ),
    "tilt_center": {
        "type": "array",
        "items": {"type": "number"},
        "minItems": 2,
        "maxItems": 2,
        "description": "[row, column] the tilt turns about; default the detector middle. "
        "Upstream: tiltcenter_slice, tiltcenter_det.",
    },
    "lens_distortion": _bool("Correct radial lens distortion of the projections. Upstream: dolensdistortion."),
    "lens_distortion_center": {
        "type": "array",
        "items": {"type": "number"},
        "minItems": 2,
        "maxItems": 2,
        "default": [1280.0, 1080.0],
        "description": "[x (column), y (row)] of the distortion centre. Upstream: lensdistortioncenter.",
    },
    "lens_distortion_factors": {
        "type": "array",
        "items": {"type": "number"},
        "minItems": 1,
        "maxItems": 5,
        "default": list(UPSTREAM_LENS_FACTORS),
        "description": "Backward model k0..k4: an undistorted point at radius r comes from radius "
        "r (k0 + k1 r + ... + k4 r^4) (algotom/discorpy/tomopy convention); default upstream's calibrated "
        "8.3.2 values. Upstream: lensdistortionfactors.",
    },
    "half_acquisition": _bool(
        "A 360-degree scan with the axis near one edge: stitch each pair of opposite views into a 180-degree "
        "sinogram of about twice the width (overlap and side found from the data, or from center). "
        "Upstream: use360to180."
    ),
    # --- phase retrieval ----------------------------------------------------------------------------------
    "phase_retrieval": _bool("Single-material Paganin phase retrieval of each projection. Upstream: doPhaseRetrieval."),
    "delta_beta": _num(
        "delta/beta of the material for Paganin's filter; use this or phase_alpha. Upstream: none (alphaReg).",
        exclusiveMinimum=0,
    ),
    "phase_alpha": _num(
        "Upstream regularisation (smaller = smoother): tomopy's (pre-2021) filter, Paganin with "
        "delta/beta = 4 / alpha. Used when delta_beta is omitted; default 1e-5. Upstream: alphaReg.",
        exclusiveMinimum=0,
    ),
    "energy_kev": _num(
        "Beam energy (keV) for phase retrieval; default the scan's monochromator energy, else 24. Upstream: kev.",
        exclusiveMinimum=0,
    ),
    "propagation_distance_mm": _num(
        "Sample-scintillator distance (mm) for phase retrieval; default the scan's camera_distance, else 75. "
        "Upstream: propagation_dist.",
        exclusiveMinimum=0,
    ),
    "pixel_size_um": _num(
        "Detector pixel size (um) overriding the scan's: phase retrieval and the 1/cm scale. "
        "Upstream: read from the scan.",
        exclusiveMinimum=0,
    ),
    # --- reconstruction -----------------------------------------------------------------------------------
    "engine": {
        "type": "string",
        "enum": ENGINES,
        "default": "auto",
        "description": "Reconstruction engine: nufft (Fourier gridding), fbp (numpy), dfi (algotom), tomopy "
        "(gridrec, where installed); auto = tomopy if importable else nufft. Upstream: recon_algorithm (gridrec).",
    },
    "filter": {
        "type": "string",
        "enum": FILTERS,
        "default": "shepp",
        "description": "Reconstruction filter window; butterworth = tomopy's 0.25 / order 2. "
        "Upstream: butterworth_cutoff, butterworth_order (gridrec).",
    },
    "mask_ratio": _num(
        "Circular mask radius as a fraction of half the slice width (0 = no mask). Upstream: circ_mask ratio.",
        1.0,
        minimum=0,
        maximum=1,
    ),
    # --- output -------------------------------------------------------------------------------------------
    "cast": {
        "type": "string",
        "enum": ["float32", "uint8", "uint16"],
        "default": "float32",
        "description": "Output type: float32 (1/cm), or uint8/uint16 scaled linearly from [cast_min, cast_max]. "
        "Upstream: castTo8bit (uint8).",
    },
    "cast_min": _num("Value (1/cm) mapped to 0 by cast. Upstream: cast8bit_min.", -10.0),
    "cast_max": _num("Value (1/cm) mapped to the top of the range by cast. Upstream: cast8bit_max.", 30.0),
}

RECON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": PROPERTIES,
}

#: Defaults of the options the run always reports (the schema's ``default`` values).
DEFAULTS: dict[str, Any] = {key: spec["default"] for key, spec in PROPERTIES.items() if "default" in spec}


#: Names people write for an option (older confs, upstream's parameter sheets) -> the option.
ALIASES = {
    "ring_filter": "ring_method",
    "rings": "ring_method",
    "centre": "center",
    "cor": "center",
    "centre_method": "center_method",
    "algorithm": "engine",
    "recon_algorithm": "engine",
    "bin": "binning",
    "sinoused": "rows",
    "projused": "projections",
}
#: What a ``pattern`` means, for the messages (the regex itself helps nobody).
_PATTERN_HELP = {
    _RANGE: ("A:B or A:B:S (start, stop, step; either side optional)", '"0:100"'),
    PROPERTIES["ring_wavelet"]["pattern"]: ("a PyWavelets name", '"db5"'),
}


def _show(value: Any) -> str:
    """A value as the user wrote it in JSON (one line, long values shortened)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(key: str, why: str) -> None:
    raise ScanError(f"{key}: {why}")


def _refuse(key: str, value: Any, what: str, fix: str) -> None:
    """``<key>: <value>: <what is wrong>; <fix>`` (one line)."""
    raise ScanError(f"{key}: {_show(value)}: {what}; {fix}")


def _expected(spec: dict[str, Any]) -> str:
    """``an integer from 1 to 8``, ``a number above 0``, ... (what a numeric spec accepts)."""
    kind = "an integer" if spec["type"] == "integer" else "a number"
    low = spec.get("minimum", spec.get("exclusiveMinimum"))
    high = spec.get("maximum")
    above = "exclusiveMinimum" in spec
    if low is not None and high is not None:
        return f"{kind} {'above' if above else 'from'} {low} {'and at most' if above else 'to'} {high}"
    if low is not None:
        return f"{kind} {'above' if above else '>='} {low}"
    if high is not None:
        return f"{kind} <= {high}"
    return kind


def _in_range(value: float, spec: dict[str, Any]) -> bool:
    return (
        ("minimum" not in spec or value >= spec["minimum"])
        and ("maximum" not in spec or value <= spec["maximum"])
        and ("exclusiveMinimum" not in spec or value > spec["exclusiveMinimum"])
    )


def _write(key: str, value: Any) -> str:
    return f"write {json.dumps(key)}: {json.dumps(value)}"


def check_value(key: str, value: Any, spec: dict[str, Any], name: str | None = None) -> None:
    """Refuse ``value`` unless ``spec`` accepts it; ``name`` is the option the fix writes (``key`` may be ``x[2]``)."""
    name = name or key
    kind = spec["type"]
    if kind == "boolean":
        if not isinstance(value, bool):
            guess = str(value).strip().lower() in ("true", "yes", "1", "on")
            _refuse(key, value, "must be true or false", f"{_write(name, guess)} (no quotes)")
        return
    if kind == "string":
        if not isinstance(value, str):
            _refuse(key, value, "must be a string", _write(name, str(value)))
        if "enum" in spec and value not in spec["enum"]:
            close = difflib.get_close_matches(value.lower(), spec["enum"], n=1, cutoff=0.5)
            fix = (
                f"did you mean {json.dumps(close[0])}?" if close else _write(name, spec.get("default", spec["enum"][0]))
            )
            _refuse(key, value, f"must be one of {', '.join(spec['enum'])}", fix)
        if "pattern" in spec and not re.match(spec["pattern"], value):
            meaning, example = _PATTERN_HELP.get(spec["pattern"], ("the documented form", '""'))
            _refuse(key, value, f"must be {meaning}", f"e.g. {json.dumps(name)}: {example}")
        return
    if kind == "array":
        low, high = spec.get("minItems", 0), spec.get("maxItems")
        count = f"{low} to {high}" if high is not None else f"at least {low}"
        items = "integers" if spec["items"]["type"] == "integer" else "numbers"
        example = spec.get("default", [0] * max(low, 1))
        if not isinstance(value, list | tuple):
            _refuse(key, value, f"must be a list of {count} {items}", f"e.g. {_write(name, example)}")
        if len(value) < low or (high is not None and len(value) > high):
            _refuse(key, value, f"must be a list of {count} {items}, got {len(value)}", f"e.g. {_write(name, example)}")
        for i, item in enumerate(value):
            check_value(f"{key}[{i}]", item, spec["items"], name)
        return
    expected = _expected(spec)
    if isinstance(value, str):
        try:
            number = json.loads(value.strip())
        except ValueError:
            number = None
        ok = isinstance(number, int | float) and not isinstance(number, bool)
        fix = f"{_write(name, number)} (no quotes)" if ok else "write a number without quotes"
        _refuse(key, value, f"must be {expected}", fix)
    if isinstance(value, bool) or not isinstance(value, int | float):
        _refuse(key, value, f"must be {expected}", "write a number")
    if isinstance(value, float) and not math.isfinite(value):
        _refuse(key, value, f"must be {expected}", "write a finite number")
    if kind == "integer" and not (isinstance(value, int) or value.is_integer()):
        _refuse(key, value, f"must be {expected}", f"write a whole number, e.g. {json.dumps(name)}: {round(value)}")
    if not _in_range(value, spec):
        _refuse(key, value, f"must be {expected}", "give a value in that range")


def _unknown(key: str) -> None:
    close = [ALIASES[key]] if key in ALIASES else difflib.get_close_matches(key, PROPERTIES, n=1, cutoff=0.6)
    fix = f"did you mean {close[0]}?" if close else "the options are listed in docs/recon-options.md"
    _fail(key, f"unknown option; {fix}")


def parse_range(text: str, n: int, key: str = "rows") -> tuple[int, int, int]:
    """``"A:B"`` or ``"A:B:S"`` (A, B optional) -> ``(start, stop, step)`` inside ``[0, n)``; ScanError if empty."""
    if not isinstance(text, str) or not re.match(_RANGE, text):
        _refuse(key, text, "must be A:B or A:B:S", f'e.g. {json.dumps(key)}: "0:{n}"')
    parts = text.split(":")
    start = int(parts[0]) if parts[0] else 0
    stop = int(parts[1]) if parts[1] else n
    step = int(parts[2]) if len(parts) > 2 else 1
    if not 0 <= start < stop <= n:
        _refuse(key, text, f"the scan has {n} {key}, so need 0 <= A < B <= {n}", f'e.g. {json.dumps(key)}: "0:{n}"')
    return start, stop, step


def validate_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """The options, checked; raises ``ScanError("<key>: <value>: <why>; <fix>")`` (a ValueError, one line) on
    the first problem.

    Returns a new dict with the same keys (integers given as 3.0 become 3; lists stay lists).
    """
    if options is None:
        return {}
    if not isinstance(options, dict):
        _refuse("recon", options, "must be a JSON object of options", 'e.g. {"binning": 2}')
    out: dict[str, Any] = {}
    for key in options:
        if key not in PROPERTIES:
            _unknown(key)
    for key, value in options.items():
        spec = PROPERTIES[key]
        if value is None:  # an explicit null means "the default"
            continue
        check_value(key, value, spec)
        if spec["type"] == "integer":
            value = int(value)
        elif spec["type"] == "array":
            value = [int(v) if spec["items"]["type"] == "integer" else v for v in value]
        out[key] = value
    for key in ("rows", "projections"):
        if key in out:
            parts = out[key].split(":")
            if parts[0] and parts[1] and int(parts[0]) >= int(parts[1]):
                swapped = ":".join([parts[1], parts[0], *parts[2:]])
                _refuse(key, out[key], "A must be smaller than B", f"e.g. {json.dumps(key)}: {json.dumps(swapped)}")
    if "rows" in out and "middle_rows" in out:
        _refuse("middle_rows", out["middle_rows"], "give rows or middle_rows, not both", "remove one of them")
    if "delta_beta" in out and "phase_alpha" in out:
        _refuse("delta_beta", out["delta_beta"], "give delta_beta or phase_alpha, not both", "remove one of them")
    if out.get("cast_min", -10.0) >= out.get("cast_max", 30.0):
        low = out.get("cast_min", -10.0)
        _refuse(
            "cast_max", out.get("cast_max", 30.0), f"must be above cast_min ({low})", "raise cast_max or lower cast_min"
        )
    if out.get("polar_ring_tmin", -3000) >= out.get("polar_ring_tmax", 3000):
        low = out.get("polar_ring_tmin", -3000)
        _refuse(
            "polar_ring_tmax",
            out.get("polar_ring_tmax", 3000),
            f"must be above polar_ring_tmin ({low})",
            "raise polar_ring_tmax or lower polar_ring_tmin",
        )
    if out.get("ring_removal") is False and out.get("ring_method", "none") != "none":
        _refuse(
            "ring_removal",
            False,
            f"contradicts ring_method {json.dumps(out['ring_method'])}",
            'remove ring_removal, or write "ring_method": "none" to turn ring removal off',
        )
    return out


def resolved_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Validated options with every default filled in (``ring_removal`` folded into ``ring_method``)."""
    given = validate_options(options)
    out = copy.deepcopy(DEFAULTS)
    out.update(given)
    if given.get("ring_removal") is False:
        out["ring_method"] = "none"
    out["ring_removal"] = out["ring_method"] != "none"
    return out
