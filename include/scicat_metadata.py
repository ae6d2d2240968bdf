"""SciCat documents for beamline 8.3.2 scans and their reconstructions (SPEC §4). Plain Python, no Airflow.

:func:`build_raw` reads a Data Exchange scan and returns the RawDataset fields, the OrigDatablock and a
thumbnail; :func:`build_derived` does the same for a reconstruction. Both collect what they could not map
as ``warnings`` (missing optional keys, a bad email) instead of raising: only an unreadable scan raises.
Documents are JSON-ready dicts in the shape of pyscicat's models (``RawDataset(**fields)`` etc.).

A dataset document never sets ``size`` or ``numberOfFiles``: SciCat adds each OrigDatablock's size and file
count to its dataset when the datablock is created (scicat-backend-next ``createOrigDatablock``), so setting
them here would record twice the real values.
"""

from __future__ import annotations

import base64
import io
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import h5py
import numpy as np

#: SciCat fields read from the scan (SPEC §4).
INSTRUMENT_NAME = "/measurement/instrument/instrument_name"
PI = "/measurement/sample/experiment/pi"
PROPOSAL = "/measurement/sample/experiment/proposal"
BEAMLINE = "/measurement/sample/experiment/beamline"
EMAIL = "/measurement/sample/experimenter/email"
FILE_NAME = "/measurement/sample/file_name"
PROJECTIONS = "/exchange/data"
#: Groups whose settings go to scientificMetadata.
SCIENTIFIC_GROUPS = ("/measurement/instrument", "/process/acquisition")

DEFAULT_GROUP = "8.3.2"
UNKNOWN = "unknown"
DEFAULT_CONTACT_EMAIL = "unknown@example.com"
N_SAMPLES = 10
#: Arrays longer than this (values, not frames) are sampled rather than stored whole.
MAX_STORED_VALUES = 16
#: Skip datasets larger than this (images such as a stored flat field): they are data, not settings.
MAX_SETTING_ELEMENTS = 100_000
THUMBNAIL_MAX_SIDE = 512
SOFTWARE = "als-tomography-orchestration"

_EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+$")
_TERM_SPLIT = re.compile(r"[^0-9a-z]+")


@dataclass
class RawDocuments:
    """What a raw ingest sends: dataset fields, one OrigDatablock, an optional thumbnail, and warnings."""

    dataset: dict[str, Any]
    datablock: dict[str, Any]
    thumbnail: str | None
    warnings: list[str] = field(default_factory=list)


@dataclass
class DerivedDocuments:
    """What a derived ingest sends: dataset fields, an optional OrigDatablock and preview, and warnings."""

    dataset: dict[str, Any]
    datablock: dict[str, Any] | None
    thumbnail: str | None
    warnings: list[str] = field(default_factory=list)


# -- values ---------------------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """A JSON- and Mongo-safe copy: numpy → Python, bytes → str, NaN/inf → None, '.'/'$' out of keys."""
    if isinstance(value, dict):
        return {str(k).replace(".", "_").replace("$", "_"): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", "replace").strip("\x00").strip()
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _values(ds: h5py.Dataset) -> list[Any]:
    """All values of a small dataset as a flat JSON-safe list (strings decoded)."""
    return json_safe(np.asarray(ds[()]).reshape(-1))


def read_scalar(f: h5py.File, path: str) -> Any:
    """The first value of a scalar, 1-element or per-frame dataset (str for strings); None when absent/empty."""
    ds = f.get(path)
    if not isinstance(ds, h5py.Dataset) or ds.size == 0:
        return None
    value = _values(ds)[0] if ds.shape else json_safe(ds[()])
    return None if value in ("", None) else value


def _quantity(value: Any, ds: h5py.Dataset) -> Any:
    units = ds.attrs.get("units", ds.attrs.get("unit"))
    if units is None:
        return value
    return {"value": value, "unit": json_safe(units)}


def _sample(ds: h5py.Dataset, n: int = N_SAMPLES) -> dict[str, Any]:
    count = int(ds.shape[0])
    idx = sorted({round(i) for i in np.linspace(0, count - 1, min(n, count))})
    return {"count": count, "indices": idx, "values": json_safe(np.asarray(ds[idx]).reshape(len(idx), -1)[:, 0])}


def scientific_metadata(f: h5py.File) -> tuple[dict[str, Any], dict[str, Any]]:
    """Settings under SCIENTIFIC_GROUPS as nested dicts, and ~10 samples of every per-frame array.

    A 1-element (or short) dataset is a setting; a longer 1-D dataset is per-frame and is sampled;
    multi-dimensional or huge datasets (images) are skipped. Values carry their ``units`` attribute.
    """
    settings: dict[str, Any] = {}
    samples: dict[str, Any] = {}

    def visit(name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Dataset) or obj.size == 0 or obj.size > MAX_SETTING_ELEMENTS:
            return
        path = f"{group}/{name}"
        try:
            if obj.ndim == 0 or obj.size == 1:
                value: Any = read_scalar(f, path)
            elif obj.ndim == 1 and obj.size > MAX_STORED_VALUES:
                samples[path.lstrip("/")] = _sample(obj)
                return
            elif obj.ndim == 1:
                value = _values(obj)
            else:
                return
        except (OSError, TypeError, ValueError):  # unreadable (e.g. an exotic dtype): not worth failing for
            return
        node = settings
        parts = path.lstrip("/").split("/")[1:]  # drop "measurement"/"process"
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                return
        node[parts[-1]] = _quantity(value, obj)

    for group in SCIENTIFIC_GROUPS:
        obj = f.get(group)
        if isinstance(obj, h5py.Group):
            obj.visititems(visit)
    return json_safe(settings), json_safe(samples)


# -- mapping helpers --------------------------------------------------------------------------------


def clean_email(raw: Any) -> str | None:
    """The first valid address in a free-text email field, or None.

    Handles what beamline software writes: bytes, ``None``/``none``, quotes, ``mailto:``, several
    addresses separated by commas, semicolons or spaces.
    """
    if raw is None:
        return None
    text = json_safe(raw) if not isinstance(raw, str) else raw
    for candidate in re.split(r"[,;\s]+", str(text)):
        candidate = candidate.strip("'\"<>()[]").removeprefix("mailto:").strip(".")
        if _EMAIL_RE.match(candidate):
            return candidate
    return None


def search_terms(name: str) -> list[str]:
    """Lower-cased search terms of a dataset name, in order, without duplicates."""
    return list(dict.fromkeys(t for t in _TERM_SPLIT.split(name.lower()) if t))


def iso_mtime(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()


def data_url_png(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def thumbnail_png(image: np.ndarray, max_side: int = THUMBNAIL_MAX_SIDE) -> bytes:
    """A PNG of a projection: log-scaled, auto-contrast (0.5 to 99.5 percentiles), at most ``max_side`` px."""
    from PIL import Image

    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or img.size == 0:
        raise ValueError(f"expected a 2-D image, got shape {img.shape}")
    finite = np.isfinite(img)
    floor = img[finite & (img > 0)].min() if np.any(finite & (img > 0)) else 1.0
    img = np.log(np.where(finite & (img > 0), img, floor))
    lo, hi = np.percentile(img, (0.5, 99.5))
    scaled = np.clip((img - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(img)
    pil = Image.fromarray((scaled * 255).astype(np.uint8), mode="L")
    pil.thumbnail((max_side, max_side))
    if min(pil.size) < 32:  # a few-row detector (test scans): stretch so a person can see it
        pil = pil.resize((pil.size[0], max(32, pil.size[1])), Image.NEAREST)
    out = io.BytesIO()
    pil.save(out, format="PNG")
    return out.getvalue()


# -- raw --------------------------------------------------------------------------------------------


def build_raw(
    scan_path: str | Path,
    source_folder: str,
    *,
    fallback_email: str = DEFAULT_CONTACT_EMAIL,
    default_group: str = DEFAULT_GROUP,
) -> RawDocuments:
    """RawDataset fields, OrigDatablock and thumbnail of a scan, with the SPEC §4 mapping.

    ``source_folder`` is where the scan's folder lives on storage (SciCat ``sourceFolder``); the datablock
    lists the file relative to it. ``datasetName`` is the scan's file stem (the scan's identity, SPEC §1):
    a ``file_name`` in the scan that disagrees is a warning. Raises ``OSError``/``ValueError`` only when
    the file is not a readable HDF5 scan.
    """
    path = Path(scan_path)
    stat = path.stat()
    warnings: list[str] = []

    def missing(key: str, fallback: Any) -> None:
        warnings.append(f"{path.name}: optional key {key} missing; using {fallback!r}")

    with h5py.File(path, "r") as f:
        values = {key: read_scalar(f, key) for key in (INSTRUMENT_NAME, PI, PROPOSAL, BEAMLINE, EMAIL, FILE_NAME)}
        values = {k: (str(v).strip() if v is not None else None) or None for k, v in values.items()}
        settings, samples = scientific_metadata(f)
        thumbnail, shape = None, None
        data = f.get(PROJECTIONS)
        if isinstance(data, h5py.Dataset) and data.ndim == 3 and data.shape[0] > 0:
            shape = list(data.shape)
            try:
                thumbnail = data_url_png(thumbnail_png(data[0]))
            except (ValueError, OSError) as exc:
                warnings.append(f"{path.name}: no thumbnail: {exc}")
        else:
            warnings.append(f"{path.name}: no {PROJECTIONS} [angle, row, column]; no thumbnail")

    dataset_name = path.stem
    file_name = values[FILE_NAME]
    if file_name is None:
        missing(FILE_NAME, dataset_name)
    elif file_name.removesuffix(".h5") != dataset_name:
        warnings.append(f"{path.name}: {FILE_NAME} is {file_name!r}; the dataset is named after the file")

    instrument = values[INSTRUMENT_NAME]
    if instrument is None:
        instrument = default_group
        missing(INSTRUMENT_NAME, instrument)
    pi = values[PI]
    if pi is None:
        pi = UNKNOWN
        missing(PI, pi)
    proposal = values[PROPOSAL]
    if proposal is None:
        missing(PROPOSAL, f"ownerGroup {default_group}")
    beamline = values[BEAMLINE]
    if beamline is None:
        missing(BEAMLINE, f"accessGroups [{default_group}]")
    email = clean_email(values[EMAIL])
    if email is None:
        if values[EMAIL] is None:
            missing(EMAIL, fallback_email)
        else:
            warnings.append(f"{path.name}: {EMAIL} {values[EMAIL]!r} is not an email; using {fallback_email!r}")
        email = fallback_email

    terms = search_terms(dataset_name)
    dataset: dict[str, Any] = {
        "type": "raw",
        "datasetName": dataset_name,
        "description": " ".join(terms),
        "keywords": terms,
        "owner": pi,
        "principalInvestigator": pi,
        "contactEmail": email,
        "creationLocation": instrument,
        "instrumentId": instrument,
        "ownerGroup": proposal or default_group,
        "accessGroups": [beamline or default_group],
        "dataFormat": "DX",
        "sourceFolder": source_folder,
        "creationTime": iso_mtime(path),
        "isPublished": False,
        "scientificMetadata": {
            "file_name": path.name,
            "shape": shape,
            **settings,
            "frame_samples": samples,
        },
    }
    if proposal:
        dataset["proposalId"] = proposal
    datablock = {
        "size": stat.st_size,
        "dataFileList": [{"path": path.name, "size": stat.st_size, "time": iso_mtime(path)}],
    }
    return RawDocuments(json_safe(dataset), datablock, thumbnail, warnings)


# -- derived ----------------------------------------------------------------------------------------


def list_files(root: Path, folders: list[str]) -> tuple[list[dict[str, Any]], int]:
    """DataFile entries (paths relative to ``root``) of every file under ``folders`` of ``root``."""
    files, total = [], 0
    for folder in folders:
        base = root / folder
        for item in sorted(base.rglob("*")) if base.is_dir() else []:
            if item.is_file():
                st = item.stat()
                rel = str(PurePosixPath(*item.relative_to(root).parts))
                files.append({"path": rel, "size": st.st_size, "time": iso_mtime(item)})
                total += st.st_size
    return files, total


def build_derived(
    raw: dict[str, Any],
    *,
    dataset_name: str,
    source_folder: str,
    tiff_location: str,
    zarr_location: str,
    parameters: dict[str, Any] | None,
    site: str,
    preview_path: str | Path | None = None,
    local_folder: str | Path | None = None,
    used_software: list[str] | None = None,
) -> DerivedDocuments:
    """DerivedDataset fields for a reconstruction of the raw dataset ``raw`` (as SciCat returned it).

    Ownership, contact and access come from the raw dataset. ``tiff_location``/``zarr_location`` are the
    results' storage paths (folders under ``source_folder``). ``parameters`` is the reconstruction's
    summary; it goes to jobParameters and scientificMetadata. ``local_folder``, where ``source_folder``
    is readable here, lets the datablock list the result files; ``preview_path`` becomes the thumbnail.
    """
    warnings: list[str] = []
    params = json_safe(dict(parameters or {}))
    if not params:
        warnings.append(f"{dataset_name}: no reconstruction parameters given")
    software = used_software or [str(params.get("software") or params.get("engine") or SOFTWARE)]
    tiff_rel = PurePosixPath(tiff_location).name
    zarr_rel = PurePosixPath(zarr_location).name
    datablock = None
    if local_folder is not None:
        files, size = list_files(Path(local_folder), [tiff_rel, zarr_rel])
        if files:
            datablock = {"size": size, "dataFileList": files}
        else:
            warnings.append(f"{dataset_name}: no result files under {local_folder}/{{{tiff_rel},{zarr_rel}}}")
    thumbnail = None
    if preview_path is not None:
        try:
            thumbnail = data_url_png(_png_bytes(Path(preview_path)))
        except (OSError, ValueError) as exc:
            warnings.append(f"{dataset_name}: preview {preview_path} not attached: {exc}")
    terms = search_terms(dataset_name)
    dataset = {
        "type": "derived",
        "datasetName": dataset_name,
        "description": f"Reconstruction of {raw.get('datasetName', raw['pid'])} at {site}",
        "keywords": list(dict.fromkeys([*terms, "reconstruction", site.lower()])),
        "owner": raw.get("owner") or UNKNOWN,
        "investigator": raw.get("principalInvestigator") or raw.get("owner") or UNKNOWN,
        "contactEmail": raw.get("contactEmail") or DEFAULT_CONTACT_EMAIL,
        "ownerGroup": raw["ownerGroup"],
        "accessGroups": list(raw.get("accessGroups") or []),
        "inputDatasets": [raw["pid"]],
        "usedSoftware": software,
        "sourceFolder": source_folder,
        "creationTime": datetime.now(UTC).isoformat(),
        "isPublished": False,
        "jobParameters": params,
        "scientificMetadata": {
            "site": site,
            "tiff": {"location": tiff_location, "format": "TIFF stack, float32, one file per detector row"},
            "zarr": {"location": zarr_location, "format": "OME-Zarr multiscale"},
            "reconstruction": params,
            "raw_dataset": {"pid": raw["pid"], "datasetName": raw.get("datasetName")},
        },
    }
    return DerivedDocuments(json_safe(dataset), datablock, thumbnail, warnings)


def _png_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("not a PNG file")
    return data
