"""SciCat documents for beamline 7.3.3 SAXS/WAXS exposures. Plain Python, no Airflow.

Follows the upstream ingester ``als733_saxs`` (als-computing/scicat_beamline,
``src/scicat_beamline/ingesters/als_733_SAXS.py``): one raw dataset per exposure, i.e. per ``<stem>.txt``
header file with its ``<stem>.edf`` image beside it. scientificMetadata holds the EDF header under
``"edf headers"`` and the ``key: value`` / ``key = value`` lines of the text file (upstream
``add_to_sci_metadata_from_bad_headers``); the thumbnail is the EDF image. docs/scicat.md lists the fields and
what differs from upstream (its hard-coded campaign owner and groups are not copied).

Upstream reads the EDF with fabio; this module reads the EDF format itself (a ``{ key = value ; }`` text
header padded to 512 bytes, then the raw image), which is all the mapping needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from include.scicat_metadata import (
    DEFAULT_CONTACT_EMAIL,
    RawDocuments,
    access_controls,
    data_url_png,
    iso_mtime,
    json_safe,
    search_terms,
    thumbnail_png,
)

#: Upstream's ``global_keywords``.
GLOBAL_KEYWORDS = ("SAXS", "ALS", "7.3.3", "scattering", "7.3.3 SAXS")
INSTRUMENT = "ALS 7.3.3"
DATA_FORMAT = "733"
#: ownerGroup without a proposal, and the staff access group (as upstream's 8.3.2 ``DEFAULT_USER``).
DEFAULT_GROUP = "7.3.3"
#: Upstream's default geometry (``basic_scientific_md["geometry"]``).
GEOMETRY = "transmission"
UNKNOWN = "Unknown"
#: Upstream's caption of an exposure's thumbnail.
CAPTION = "scattering image"
#: Exposures upstream never ingests (beamline test shots).
SKIPPED_NAMES = ("autoexpose", "beamstop_test")
HEADER_SUFFIX, IMAGE_SUFFIX = ".txt", ".edf"
_EDF_TYPES = {
    "unsignedbyte": "u1",
    "signedbyte": "i1",
    "unsignedshort": "u2",
    "signedshort": "i2",
    "unsignedinteger": "u4",
    "signedinteger": "i4",
    "unsignedlong": "u4",
    "signedlong": "i4",
    "floatvalue": "f4",
    "float": "f4",
    "doublevalue": "f8",
    "double": "f8",
}
_EDF_ENTRY = re.compile(r"^\s*([^=;]+?)\s*=\s*(.*?)\s*;?\s*$")


# -- files ------------------------------------------------------------------------------------------


def exposures(paths: Iterable[str | Path]) -> list[Path]:
    """The exposures among a run's files, as the path of each one's ``.txt`` header (or, for a file with no
    ``.txt`` beside it, the file itself), without duplicates and without beamline test shots."""
    seen: dict[Path, None] = {}
    for item in paths:
        path = Path(item)
        if any(name in path.name for name in SKIPPED_NAMES):
            continue
        if path.suffix == IMAGE_SUFFIX and path.with_suffix(HEADER_SUFFIX).exists():
            path = path.with_suffix(HEADER_SUFFIX)
        seen.setdefault(path, None)
    return list(seen)


def read_edf(path: Path, *, with_data: bool = True) -> tuple[dict[str, str], np.ndarray | None]:
    """The header (``key -> value`` text) and, if asked, the image of a single-frame EDF file."""
    raw = path.read_bytes()
    if not raw.lstrip().startswith(b"{"):
        raise ValueError(f"{path.name} is not an EDF file (no '{{' header)")
    end = raw.find(b"}")
    if end < 0:
        raise ValueError(f"{path.name}: EDF header not closed")
    header: dict[str, str] = {}
    for line in raw[raw.find(b"{") + 1 : end].decode("latin-1").splitlines():
        match = _EDF_ENTRY.match(line)
        if match:
            header[match.group(1)] = match.group(2)
    if not with_data:
        return header, None
    start = end + 1
    while start < len(raw) and raw[start : start + 1] in (b"\n", b"\r"):
        start += 1
    try:
        cols, rows = int(header["Dim_1"]), int(header["Dim_2"])
        code = _EDF_TYPES[header.get("DataType", "UnsignedShort").lower()]
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{path.name}: EDF header lacks a usable Dim_1/Dim_2/DataType ({exc})") from None
    order = "<" if header.get("ByteOrder", "LowByteFirst") == "LowByteFirst" else ">"
    dtype = np.dtype(order + code)
    size = int(header.get("Size", cols * rows * dtype.itemsize))
    blob = raw[start : start + size]
    if len(blob) != cols * rows * dtype.itemsize:
        raise ValueError(f"{path.name}: EDF data is {len(blob)} bytes, expected {cols * rows * dtype.itemsize}")
    return header, np.frombuffer(blob, dtype=dtype).reshape(rows, cols)


def text_headers(path: Path) -> dict[str, Any]:
    """The lines of a 7.3.3 text header as upstream's ``add_to_sci_metadata_from_bad_headers`` reads them.

    ``=`` counts as ``:``; a line with exactly one delimiter and a key becomes ``key -> value`` (both
    verbatim: the value keeps its leading space); any other line is kept whole as ``unknown_field<n>``. A key
    seen again collects its values in a list.
    """
    found: dict[str, Any] = {}
    unknown = 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        parts = line.replace("=", ":").split(":")
        if len(parts) == 2 and parts[0] != "":
            key, value = parts
            if key not in found:
                found[key] = value
            elif found[key] != value:
                previous = found[key]
                found[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
            continue
        found[f"unknown_field{unknown}"] = line
        unknown += 1
    return found


# -- names (upstream's October 2022 campaign rules) -----------------------------------------------


def sample_keywords(name: str) -> list[str]:
    """Keywords of the sample named in a file name (upstream ``find_sample_keywords_oct_2022``)."""
    found = ["kapton"] if "kapton" in name else []
    if "B19" in name or "B13" in name:
        found.append("membranes")
    return found + [word for word in ("disp", "agnp", "cal", "agb") if word in name]


def sample_id(name: str) -> str | None:
    """The sample id in a file stem (upstream ``get_sample_id_oct_2022``), or None."""

    def after(word: str, parts: int) -> str:
        pieces = name[name.find(word) :].split("_")
        return "_".join(pieces[:parts])

    if "agb" in name:
        return after("agb", 1)
    if "kapton" in name and "cal" not in name:
        pieces = name[name.find("kapton") :].split("_")
        return "_".join(pieces[:2] if len(pieces) > 1 and pieces[1] == "ctrl" else pieces[:3])
    for word in ("B19", "B13"):
        if word in name:
            return after(word, 3)
    if "disp" in name:
        return after("disp", 1)
    if "agnp" in name:
        value = after("agnp", 1)
        return value[: value.find("pos")] if "pos" in value else value
    return None


# -- raw --------------------------------------------------------------------------------------------


def build_raw(
    exposure: str | Path,
    source_folder: str,
    *,
    fallback_email: str = DEFAULT_CONTACT_EMAIL,
    default_group: str = DEFAULT_GROUP,
    geometry: str = GEOMETRY,
) -> RawDocuments:
    """RawDataset fields, OrigDatablock and thumbnail of one 7.3.3 exposure (upstream ``als733_saxs``).

    ``exposure`` is its ``.txt`` header (the ``.edf`` image beside it is read too) or the ``.edf`` alone.
    Any other file is catalogued as it is, with a warning (no headers to read). Missing pieces are warnings.
    """
    path = Path(exposure)
    warnings: list[str] = []
    header_file = path if path.suffix == HEADER_SUFFIX else path.with_suffix(HEADER_SUFFIX)
    image_file = path.with_suffix(IMAGE_SUFFIX) if path.suffix in (HEADER_SUFFIX, IMAGE_SUFFIX) else None
    if path.suffix not in (HEADER_SUFFIX, IMAGE_SUFFIX):
        warnings.append(f"{path.name}: not a 7.3.3 .txt/.edf exposure; catalogued without its headers")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")

    scientific: dict[str, Any] = {}
    thumbnail = None
    if image_file is not None and image_file.is_file():
        try:
            edf_header, image = read_edf(image_file)
            scientific["edf headers"] = edf_header
            thumbnail = data_url_png(thumbnail_png(np.maximum(image, 1), percentiles=(25.0, 99.9)))
        except (OSError, ValueError) as exc:
            warnings.append(f"{image_file.name}: not read: {exc}")
    elif image_file is not None:
        warnings.append(f"{path.name}: no {image_file.name} beside it; no EDF headers, no thumbnail")
    if header_file.is_file():
        scientific.update(text_headers(header_file))
    elif path.suffix in (HEADER_SUFFIX, IMAGE_SUFFIX):
        warnings.append(f"{path.name}: no {header_file.name} beside it; no text headers")
    scientific["geometry"] = geometry

    name = path.stem
    description = " ".join(search_terms(f"{path.parent.name}_{name}"))
    owner_group, access_groups = access_controls(default_group, DEFAULT_GROUP, None)
    dataset: dict[str, Any] = {
        "type": "raw",
        "datasetName": name,
        "description": description,
        "keywords": list(dict.fromkeys([*GLOBAL_KEYWORDS, geometry, *sample_keywords(path.name)])),
        "owner": UNKNOWN,
        "principalInvestigator": UNKNOWN,
        "contactEmail": fallback_email,
        "creationLocation": INSTRUMENT,
        "instrumentId": INSTRUMENT,
        "ownerGroup": owner_group,
        "accessGroups": access_groups,
        "dataFormat": DATA_FORMAT,
        "sourceFolder": source_folder,
        "creationTime": iso_mtime(path),
        "isPublished": False,
        "scientificMetadata": scientific,
    }
    sample = sample_id(name)
    if sample:
        dataset["sampleId"] = sample
    files = [p for p in dict.fromkeys([header_file, path, image_file]) if p is not None and p.is_file()]
    entries = [{"path": p.name, "size": p.stat().st_size, "time": iso_mtime(p)} for p in files]
    datablock = {"size": sum(e["size"] for e in entries), "dataFileList": entries}
    return RawDocuments(json_safe(dataset), datablock, thumbnail, warnings, caption=CAPTION)
