"""SciCat documents for beamline 8.3.2 scans and their reconstructions. Plain Python, no Airflow.

The raw mapping follows the upstream ingester ``als_832_dx_4`` (als-computing/scicat_beamline,
``src/scicat_beamline/ingesters/als_832_dx_4.py`` and ``utils.py``) field by field; docs/scicat.md has
the table and the differences left. :func:`build_raw` reads a Data Exchange scan and returns the
RawDataset fields, the OrigDatablock and a thumbnail; :func:`build_derived` does the same for a
reconstruction. Both collect what they could not map as ``warnings`` (missing optional keys, a bad email)
instead of raising: only an unreadable scan raises. Documents are JSON-ready dicts in the shape of
pyscicat's models (``RawDataset(**fields)`` etc.). The 7.3.3 SAXS mapping is in :mod:`include.scicat_733`.

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

#: SciCat fields read from the scan (upstream ``scicat_metadata_keys``).
INSTRUMENT_NAME = "/measurement/instrument/instrument_name"
BEAMLINE = "/measurement/sample/experiment/beamline"
EXPERIMENT_LEAD = "/measurement/sample/experiment/experiment_lead"
PI = "/measurement/sample/experiment/pi"
PROPOSAL = "/measurement/sample/experiment/proposal"
EMAIL = "/measurement/sample/experimenter/email"
EXPERIMENTER_NAME = "/measurement/sample/experimenter/name"
FILE_NAME = "/measurement/sample/file_name"
SCICAT_KEYS = (INSTRUMENT_NAME, BEAMLINE, EXPERIMENT_LEAD, PI, PROPOSAL, EMAIL, EXPERIMENTER_NAME, FILE_NAME)
PROJECTIONS = "/exchange/data"
#: Settings copied to scientificMetadata, keyed by their full HDF5 path (upstream ``scientific_metadata_keys``;
#: saved searches in SciCat use these keys).
SCIENTIFIC_KEYS = (
    "/measurement/instrument/attenuator/setup/filter_y",
    "/measurement/instrument/camera_motor_stack/setup/tilt_motor",
    "/measurement/instrument/detection_system/objective/camera_objective",
    "/measurement/instrument/detection_system/scintillator/scintillator_type",
    "/measurement/instrument/detector/binning_x",
    "/measurement/instrument/detector/binning_y",
    "/measurement/instrument/detector/dark_field_value",
    "/measurement/instrument/detector/delay_time",
    "/measurement/instrument/detector/dimension_x",
    "/measurement/instrument/detector/dimension_y",
    "/measurement/instrument/detector/model",
    "/measurement/instrument/detector/pixel_size",
    "/measurement/instrument/detector/temperature",
    "/measurement/instrument/monochromator/setup/Z2",
    "/measurement/instrument/slits/setup/hslits_center",
    "/measurement/instrument/slits/setup/hslits_size",
    "/measurement/instrument/slits/setup/vslits_Lead_Flag",
    "/measurement/instrument/source/source_name",
    "/process/acquisition/dark_fields/dark_num_avg_of",
    "/process/acquisition/dark_fields/num_dark_fields",
    "/process/acquisition/flat_fields/i0_move_x",
    "/process/acquisition/flat_fields/i0_move_y",
    "/process/acquisition/flat_fields/i0cycle",
    "/process/acquisition/flat_fields/num_flat_fields",
    "/process/acquisition/flat_fields/usebrightexpose",
    "/process/acquisition/mosaic/tile_xmovedist",
    "/process/acquisition/mosaic/tile_xnumimg",
    "/process/acquisition/mosaic/tile_xorig",
    "/process/acquisition/mosaic/tile_xoverlap",
    "/process/acquisition/mosaic/tile_ymovedist",
    "/process/acquisition/mosaic/tile_ynumimg",
    "/process/acquisition/mosaic/tile_yorig",
    "/process/acquisition/mosaic/tile_yoverlap",
    "/process/acquisition/name",
    "/process/acquisition/rotation/blur_limit",
    "/process/acquisition/rotation/multiRev",
    "/process/acquisition/rotation/nhalfCir",
    "/process/acquisition/rotation/num_angles",
    "/process/acquisition/rotation/range",
)
#: Per-frame arrays sampled (every len/10-th value) into scientificMetadata["data_sample"] (upstream
#: ``data_sample_keys``).
DATA_SAMPLE_KEYS = (
    "/measurement/instrument/sample_motor_stack/setup/axis1pos",
    "/measurement/instrument/sample_motor_stack/setup/axis2pos",
    "/measurement/instrument/sample_motor_stack/setup/sample_x",
    "/measurement/instrument/sample_motor_stack/setup/axis5pos",
    "/measurement/instrument/camera_motor_stack/setup/camera_elevation",
    "/measurement/instrument/source/current",
    "/measurement/instrument/camera_motor_stack/setup/camera_distance",
    "/measurement/instrument/source/beam_intensity_incident",
    "/measurement/instrument/monochromator/energy",
    "/measurement/instrument/detector/exposure_time",
    "/measurement/instrument/time_stamp",
    "/measurement/instrument/monochromator/setup/turret2",
    "/measurement/instrument/monochromator/setup/turret1",
)
DATA_SAMPLE_SIZE = 10

#: Upstream's ``DEFAULT_USER``: ownerGroup when the scan has no proposal, and the staff group added to
#: accessGroups (so beamline staff see every dataset).
DEFAULT_GROUP = "8.3.2"
#: Upstream's fallback for a missing PI or instrument name.
UNKNOWN = "Unknown"
DEFAULT_CONTACT_EMAIL = "unknown@example.com"
THUMBNAIL_MAX_SIDE = 512
#: Upstream's caption of a raw dataset's thumbnail (als_832_dx_4 ``upload_attachment``).
RAW_CAPTION = "raw image"
SOFTWARE = "als-tomography-orchestration"

_EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+$")
_TERM_SPLIT = re.compile(r"[^0-9a-z]+")
_EDGE_JUNK = re.compile(r"^[\"'\s,]+|[\"'\s,]+$")


@dataclass
class RawDocuments:
    """What a raw ingest sends: dataset fields, one OrigDatablock, an optional thumbnail with its caption (the
    attachment's), and warnings."""

    dataset: dict[str, Any]
    datablock: dict[str, Any]
    thumbnail: str | None
    warnings: list[str] = field(default_factory=list)
    caption: str = RAW_CAPTION


@dataclass
class DerivedDocuments:
    """What a derived ingest sends: dataset fields, an optional OrigDatablock and preview, and warnings."""

    dataset: dict[str, Any]
    datablock: dict[str, Any] | None
    thumbnail: str | None
    warnings: list[str] = field(default_factory=list)


# -- values ---------------------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """A JSON- and Mongo-safe copy: numpy → Python, bytes → str, NaN/inf → None, '.'/'$' out of keys.

    Keys keep their '/' (the HDF5 paths of scientificMetadata); MongoDB refuses '.' and a leading '$'.
    """
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


def dataset_value(ds: h5py.Dataset) -> Any:
    """A dataset's value as upstream's ``_get_dataset_value`` reads it, JSON-safe: a fixed 1-element dataset
    (maxshape ``(1,)``; for strings, shape ``(1,)``) as its value, any other (a resizable one too) as a list;
    strings decoded."""
    value = ds[()]
    single = ds.shape == (1,) if ds.dtype.kind == "S" else ds.maxshape == (1,)
    if isinstance(value, np.ndarray):
        return json_safe(value.reshape(-1)[0]) if single else json_safe(value)
    return json_safe(value)


def read_scalar(f: h5py.File, path: str) -> Any:
    """The first value of a scalar, 1-element or per-frame dataset (str for strings); None when absent/empty."""
    ds = f.get(path)
    if not isinstance(ds, h5py.Dataset) or ds.size == 0:
        return None
    value = json_safe(np.asarray(ds[()]).reshape(-1)[0]) if ds.shape else json_safe(ds[()])
    return None if value in ("", None) else value


def extract_fields(f: h5py.File, keys: tuple[str, ...], warnings: list[str], where: str) -> dict[str, Any]:
    """``{path: value}`` of every key present; the missing ones are one warning (upstream ``_extract_fields``
    records one issue per key)."""
    found: dict[str, Any] = {}
    missing = []
    for key in keys:
        ds = f.get(key)
        if not isinstance(ds, h5py.Dataset) or ds.size == 0:
            missing.append(key)
            continue
        try:
            found[key] = dataset_value(ds)
        except (OSError, TypeError, ValueError) as exc:  # an exotic dtype: not worth failing for
            warnings.append(f"{where}: {key} unreadable: {exc}")
    if missing:
        warnings.append(f"{where}: {len(missing)} optional key(s) missing: {', '.join(missing)}")
    return found


def data_sample(f: h5py.File, n: int = DATA_SAMPLE_SIZE) -> dict[str, Any]:
    """Every ``len // n``-th value (at least every one) of each per-frame array present (upstream
    ``_get_data_sample``), keyed by its full path."""
    samples: dict[str, Any] = {}
    for key in DATA_SAMPLE_KEYS:
        ds = f.get(key)
        if not isinstance(ds, h5py.Dataset) or ds.size == 0 or ds.ndim != 1:
            continue
        step = max(1, len(ds) // n)
        samples[key] = json_safe(ds[::step])
    return samples


def access_controls(username: str, beamline: str | None, proposal: str | None) -> tuple[str, list[str]]:
    """``(ownerGroup, accessGroups)`` by upstream's ``calculate_access_controls``.

    ownerGroup is the proposal, or ``username`` when there is none (or it is the text "None").
    accessGroups is the beamline, lower-cased without surrounding quotes, spaces or commas (``bl832`` is
    mapped to ``8.3.2``), plus ``username`` (the staff group) when it differs; empty without a beamline.
    """
    owner_group = proposal if proposal and proposal != "None" else username
    access_groups: list[str] = []
    if beamline:
        name = _EDGE_JUNK.sub("", beamline.lower())
        if name == "bl832":
            name = "8.3.2"
        access_groups.append(name)
        if username != name:
            access_groups.append(username)
    return owner_group, access_groups


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
    """Lower-cased search terms of a name, in order (upstream ``build_search_terms``, as a list: split at
    every character that is not a letter or digit, duplicates kept)."""
    return [t for t in _TERM_SPLIT.split(name.lower()) if t]


def iso_utc(moment: datetime) -> str:
    """A time as upstream writes it (``2023-02-24T13:25:53Z``), but in UTC: upstream's ``get_file_mod_time``
    puts ``Z`` after the ingest host's local time."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def iso_mtime(path: Path) -> str:
    return iso_utc(datetime.fromtimestamp(path.stat().st_mtime, UTC))


def data_url_png(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or img.size == 0:
        raise ValueError(f"expected a 2-D image, got shape {img.shape}")
    return img


def projection_png(image: np.ndarray, max_side: int = THUMBNAIL_MAX_SIDE) -> bytes:
    """A PNG of a projection with upstream's pixel values (``thumbnails.build_thumbnail_as_filebuffer``:
    ``log(x - min + 1.001)`` scaled to 0..205, then PIL's autocontrast cutting 0.1 %), at most ``max_side`` px
    (upstream keeps the detector's size). Non-finite pixels count as the lowest finite one."""
    from PIL import Image, ImageOps

    img = _image(image)
    finite = np.isfinite(img)
    img = np.where(finite, img, img[finite].min() if finite.any() else 0.0)
    img = np.log(img - img.min() + 1.001)
    img = 205 * img / img.max()
    return _png(ImageOps.autocontrast(Image.fromarray(img.astype(np.uint8)), cutoff=0.1), max_side)


def thumbnail_png(
    image: np.ndarray, max_side: int = THUMBNAIL_MAX_SIDE, percentiles: tuple[float, float] = (0.5, 99.5)
) -> bytes:
    """A PNG of an image: log-scaled, auto-contrast (between the ``percentiles`` of the log image, 0.5 to
    99.5 by default), at most ``max_side`` px."""
    from PIL import Image

    img = _image(image)
    finite = np.isfinite(img)
    floor = img[finite & (img > 0)].min() if np.any(finite & (img > 0)) else 1.0
    img = np.log(np.where(finite & (img > 0), img, floor))
    lo, hi = np.percentile(img, percentiles)
    scaled = np.clip((img - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(img)
    return _png(Image.fromarray((scaled * 255).astype(np.uint8), mode="L"), max_side)


def _png(pil: Any, max_side: int) -> bytes:
    """PNG bytes of a greyscale PIL image, at most ``max_side`` px, stretched to 32 rows if it has fewer."""
    from PIL import Image

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
    """RawDataset fields, OrigDatablock and thumbnail of a scan, mapped as upstream's ``als_832_dx_4``.

    ``source_folder`` is the SciCat ``sourceFolder``: upstream's is the scan's folder as the beamline names it,
    ``/global/raw/<folder>`` (``include.paths.BEAMLINE_RAW_PREFIX``); the datablock lists the file
    under it (an absolute path, as upstream). ``datasetName`` is ``/measurement/sample/file_name`` (the file
    stem when the scan has none, with a warning). ``default_group`` is upstream's ``DEFAULT_USER``. Raises
    ``OSError``/``ValueError`` only when the file is not a readable HDF5 scan.
    """
    path = Path(scan_path)
    stat = path.stat()
    warnings: list[str] = []
    with h5py.File(path, "r") as f:
        found = extract_fields(f, SCICAT_KEYS, warnings, path.name)
        scientific = extract_fields(f, SCIENTIFIC_KEYS, warnings, path.name)
        scientific["data_sample"] = data_sample(f)
        thumbnail = None
        data = f.get(PROJECTIONS)
        if isinstance(data, h5py.Dataset) and data.ndim == 3 and data.shape[0] > 0:
            try:
                thumbnail = data_url_png(projection_png(data[0]))
            except (ValueError, OSError) as exc:
                warnings.append(f"{path.name}: no thumbnail: {exc}")
        else:
            warnings.append(f"{path.name}: no {PROJECTIONS} [angle, row, column]; no thumbnail")

    def text(key: str) -> str | None:
        value = found.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        return (str(value).strip() or None) if value is not None else None

    dataset_name = text(FILE_NAME)
    if dataset_name is None:
        dataset_name = path.stem
        warnings.append(f"{path.name}: datasetName is the file stem {dataset_name!r} ({FILE_NAME} missing)")
    instrument = text(INSTRUMENT_NAME) or UNKNOWN
    pi = text(PI) or UNKNOWN
    proposal = text(PROPOSAL)
    email = clean_email(found.get(EMAIL))
    if email is None:
        if EMAIL in found:
            warnings.append(f"{path.name}: {EMAIL} {found[EMAIL]!r} is not an email; using {fallback_email!r}")
        email = fallback_email
    owner_group, access_groups = access_controls(default_group, text(BEAMLINE), proposal)
    terms = search_terms(dataset_name)
    description = " ".join(terms)
    dataset: dict[str, Any] = {
        "type": "raw",
        "datasetName": dataset_name,
        "description": description,
        "keywords": terms,
        "sampleId": description,
        "owner": pi,
        "principalInvestigator": pi,
        "contactEmail": email,
        "creationLocation": instrument,
        "instrumentId": instrument,
        "ownerGroup": owner_group,
        "accessGroups": access_groups,
        "dataFormat": "DX",
        "sourceFolder": source_folder,
        "creationTime": iso_mtime(path),
        "isPublished": False,
        "scientificMetadata": scientific,
    }
    if proposal and proposal != "None":
        dataset["proposalId"] = proposal
    stored = str(PurePosixPath(source_folder, path.name))  # absolute, as upstream's
    datablock = {
        "size": stat.st_size,
        "dataFileList": [{"path": stored, "size": stat.st_size, "time": iso_mtime(path)}],
    }
    return RawDocuments(json_safe(dataset), datablock, thumbnail, warnings)


def raw_dataset_name(scan_path: str | Path) -> str:
    """The ``datasetName`` :func:`build_raw` gives a scan (to find its raw dataset again)."""
    path = Path(scan_path)
    with h5py.File(path, "r") as f:
        value = read_scalar(f, FILE_NAME)
    return str(value).strip() if value is not None and str(value).strip() else path.stem


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

    Ownership, contact and access come from the raw dataset, which it links (``inputDatasets``, and
    ``scientificMetadata.raw_dataset``: pid, name, sourceFolder, proposal). ``source_folder`` is the
    results' long-term copy; ``tiff_location``/``zarr_location`` are the results' storage paths (folders
    under ``source_folder``). ``parameters`` is the reconstruction's
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
    dataset: dict[str, Any] = {
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
        "creationTime": iso_utc(datetime.now(UTC)),
        "isPublished": False,
        "jobParameters": params,
        "scientificMetadata": {
            "site": site,
            "tiff": {"location": tiff_location, "format": "TIFF stack, float32, one file per detector row"},
            "zarr": {"location": zarr_location, "format": "OME-Zarr multiscale"},
            "reconstruction": params,
            "raw_dataset": {
                "pid": raw["pid"],
                "datasetName": raw.get("datasetName"),
                "sourceFolder": raw.get("sourceFolder"),
                "proposalId": raw.get("proposalId"),
            },
        },
    }
    return DerivedDocuments(json_safe(dataset), datablock, thumbnail, warnings)


def _png_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("not a PNG file")
    return data
