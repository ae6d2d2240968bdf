"""Realistic inputs of the SciCat mappings (docs/scicat.md), for tests and demos.

- :func:`add_832_metadata`: completes a synthetic 8.3.2 scan (compute_functions/sample_scan.py) with every
  key the upstream ``als_832_dx_4`` ingester reads, with values of the kind 8.3.2 writes (beamline ``bl832``
  as the acquisition software names it, per-frame motor and source arrays).
- :func:`write_saxs_exposure`: a synthetic 7.3.3 SAXS exposure, ``<stem>.txt`` (the beamline's text header)
  and ``<stem>.edf`` (a Pilatus-2M-like single-frame EDF), the pair the upstream ``als733_saxs`` ingester
  reads. The image is an isotropic scattering pattern (power-law decay with a ring) behind a beamstop, with
  Poisson noise; shapes are small so tests stay fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

EDF_BLOCK = 512
#: Keys of an 8.3.2 scan the sample scan lacks, with values as 8.3.2's acquisition writes them.
_832_SETTINGS: dict[str, object] = {
    "/measurement/sample/experiment/experiment_lead": "Dula Parkinson",
    "/measurement/instrument/attenuator/setup/filter_y": 12.5,
    "/measurement/instrument/camera_motor_stack/setup/tilt_motor": 0.32,
    "/measurement/instrument/detector/dark_field_value": 100.0,
    "/measurement/instrument/detector/delay_time": 0.0,
    "/measurement/instrument/detector/temperature": 21.4,
    "/measurement/instrument/monochromator/setup/Z2": 40.2,
    "/measurement/instrument/slits/setup/hslits_center": 0.05,
    "/measurement/instrument/slits/setup/hslits_size": 4.0,
    "/measurement/instrument/slits/setup/vslits_Lead_Flag": 1.2,
    "/process/acquisition/dark_fields/dark_num_avg_of": 1,
    "/process/acquisition/flat_fields/i0_move_x": 0.0,
    "/process/acquisition/flat_fields/i0_move_y": 10.0,
    "/process/acquisition/flat_fields/usebrightexpose": 0,
    "/process/acquisition/mosaic/tile_xnumimg": 1,
    "/process/acquisition/mosaic/tile_xorig": 0.0,
    "/process/acquisition/mosaic/tile_xoverlap": 0.0,
    "/process/acquisition/mosaic/tile_ymovedist": 0.0,
    "/process/acquisition/mosaic/tile_ynumimg": 1,
    "/process/acquisition/mosaic/tile_yorig": 0.0,
    "/process/acquisition/mosaic/tile_yoverlap": 0.0,
    "/process/acquisition/name": "sea_shell",
    "/process/acquisition/rotation/blur_limit": 0.1,
    "/process/acquisition/rotation/multiRev": 0,
    "/process/acquisition/rotation/nhalfCir": 1,
}
_832_PER_FRAME = {
    "/measurement/instrument/sample_motor_stack/setup/axis1pos": 0.0,
    "/measurement/instrument/sample_motor_stack/setup/axis2pos": 2.5,
    "/measurement/instrument/sample_motor_stack/setup/axis5pos": -1.0,
    "/measurement/instrument/camera_motor_stack/setup/camera_elevation": 12.0,
    "/measurement/instrument/source/beam_intensity_incident": 1.0e6,
    "/measurement/instrument/monochromator/setup/turret1": 3.0,
    "/measurement/instrument/monochromator/setup/turret2": 3.0,
}


def add_832_metadata(path: str | Path, *, beamline: str = "bl832") -> Path:
    """Add the upstream-read keys a synthetic 8.3.2 scan lacks (1-element datasets and per-frame arrays), and
    set ``/measurement/sample/experiment/beamline`` to ``beamline``. Deterministic."""
    path = Path(path)
    with h5py.File(path, "a") as f:
        n = int(f["/measurement/instrument/source/current"].shape[0])
        for key, value in _832_SETTINGS.items():
            if key in f:
                del f[key]
            f[key] = np.array([value.encode()]) if isinstance(value, str) else np.array([value])
        for i, (key, value) in enumerate(_832_PER_FRAME.items()):
            if key in f:
                del f[key]
            f[key] = np.full(n, value) + 1e-3 * np.sin(np.arange(n) + i)
        key = "/measurement/sample/experiment/beamline"
        del f[key]
        f[key] = np.array([beamline.encode()])
    return path


def write_edf(path: Path, image: np.ndarray, header: dict[str, str]) -> Path:
    """Write a single-frame EDF file: ``{ key = value ; }`` padded to 512 bytes, then the raw image."""
    image = np.ascontiguousarray(image)
    types = {np.dtype("<i4"): "SignedInteger", np.dtype("<u2"): "UnsignedShort", np.dtype("<f4"): "FloatValue"}
    data = image.astype(image.dtype.newbyteorder("<"))
    entries = {
        "HeaderID": "EH:000001:000000:000000",
        "Image": "1",
        "ByteOrder": "LowByteFirst",
        "DataType": types[data.dtype],
        "Dim_1": str(image.shape[1]),
        "Dim_2": str(image.shape[0]),
        "Size": str(data.nbytes),
        **header,
    }
    text = "{\n" + "".join(f"{k} = {v} ;\n" for k, v in entries.items())
    padded = len(text) + 2
    padded += -padded % EDF_BLOCK
    blob = (text + " " * (padded - len(text) - 2) + "}\n").encode("latin-1")
    path.write_bytes(blob + data.tobytes())
    return path


def write_saxs_exposure(
    folder: str | Path,
    stem: str = "texas_B19_2_3_2m_00001",
    *,
    shape: tuple[int, int] = (64, 48),
    seed: int = 0,
    mtime: float | None = None,
) -> tuple[Path, Path]:
    """Write ``<folder>/<stem>.txt`` and ``<folder>/<stem>.edf``; return both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows, cols = shape
    rng = np.random.default_rng(seed)
    y, x = np.indices(shape)
    r = np.hypot(y - rows * 0.55, x - cols * 0.45) + 1.0
    intensity = 4.0e4 * r**-2.5 + 300.0 * np.exp(-(((r - rows * 0.3) / 2.0) ** 2)) + 2.0
    intensity[r < 4] = 0.5  # beamstop
    image = rng.poisson(intensity).astype(np.int32)
    image[:, cols // 2] = -1  # a Pilatus module gap
    edf = write_edf(
        folder / f"{stem}.edf",
        image,
        {
            "Date": "2022-10-12 14:03:27",
            "count_time": "2.000000",
            "Detector": "Pilatus 2M",
            "PSize_1": "1.720000e-04",
            "PSize_2": "1.720000e-04",
            "Center_1": f"{cols * 0.45:.2f}",
            "Center_2": f"{rows * 0.55:.2f}",
            "SampleDistance": "2.008500",
            "WaveLength": "1.239842e-10",
        },
    )
    txt = folder / f"{stem}.txt"
    txt.write_text(
        "\n".join(
            [
                "ALS 7.3.3 SAXS/WAXS exposure",
                f"Sample Name: {stem}",
                "Date: 2022-10-12 14:03:27",
                "Exposure time (s): 2.0",
                "Energy (keV)= 10.0",
                "Detector: Pilatus 2M",
                "Sample-Detector Distance (mm): 2008.5",
                "Sample X (mm): 1.250",
                "Sample Y (mm): -3.000",
                "I0 (counts): 123456",
                "I1 (counts): 98765",
                "Beamstop: 1",
                "",
                "Comment = membrane B19 ctrl",
                "Comment = repeat",
            ]
        )
        + "\n"
    )
    if mtime is not None:
        for path in (txt, edf):
            os.utime(path, (mtime, mtime))
    return txt, edf
