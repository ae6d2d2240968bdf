"""A reconstruction's TIFF stack: ``rec<dataset>/<dataset>_<NNNNN>.tiff``, one 2-D slice per detector row.

`open_tiff_stack` validates the whole folder up front (names, one shape, one dtype, contiguous row indices)
from the TIFF headers only, so a bad stack is refused before anything is written; `TiffStack.read_into`
then reads slices straight into a caller's buffer.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

TIFF_SUFFIXES = (".tif", ".tiff")
_NAME = re.compile(r"^(?P<prefix>.+)_(?P<index>\d{5})\.tiff?$", re.IGNORECASE)


class StackError(ValueError):
    """The folder is not a usable TIFF stack; the message is one line fit for a user."""


@dataclass(frozen=True, eq=False)
class TiffStack:
    """A validated stack of same-shaped 2-D TIFFs sorted by row index (the z axis).

    ``step`` is the row-index step between slices: 1, or the binning factor of a binned reconstruction.
    """

    directory: Path
    dataset: str
    files: tuple[Path, ...]
    first_index: int
    step: int
    shape: tuple[int, int, int]
    dtype: np.dtype
    pixel_size_um: float | None

    @property
    def slice_nbytes(self) -> int:
        return self.shape[1] * self.shape[2] * self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.slice_nbytes

    def read_into(self, start: int, out: np.ndarray) -> int:
        """Read slices ``start .. start + len(out)`` (clipped to the stack) into ``out``; return the count."""
        n = min(len(out), self.shape[0] - start)
        for i in range(n):
            self.read_slice(start + i, out=out[i])
        return n

    def read_slice(self, z: int, out: np.ndarray | None = None) -> np.ndarray:
        """Slice ``z`` as a 2-D array (into ``out`` when given); `StackError` if the file cannot be decoded."""
        path = self.files[z]
        try:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                dtype = np.dtype(page.dtype)
                if page.shape != self.shape[1:] or dtype.newbyteorder("=") != self.dtype:
                    raise StackError(f"{path.name}: changed since the stack was opened")
                if out is None or dtype == out.dtype:
                    return page.asarray(out=out)
                out[...] = page.asarray()  # a big-endian file into a native buffer
                return out
        except StackError:
            raise
        except Exception as exc:  # tifffile raises many types for truncated or corrupt files
            raise StackError(f"{path.name}: unreadable TIFF ({_one_line(exc)})") from exc


def open_tiff_stack(directory: str | Path) -> TiffStack:
    """Validate ``directory`` and return its stack; raise `StackError` with a one-line reason otherwise.

    Only ``<prefix>_<5 digits>.tif(f)`` files are accepted: any other TIFF (e.g. a ``_00012-1.tiff`` left by a
    re-run), two prefixes, a duplicated or missing row index (indices must have one step: 1, or b for a
    reconstruction binned by b), a file that is not one 2-D page or a different shape or dtype is refused
    rather than silently ingested. Other files (logs) are ignored.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise StackError(f"{directory}: no such folder")
    tiffs = sorted(p for p in directory.iterdir() if p.suffix.lower() in TIFF_SUFFIXES and p.is_file())
    if not tiffs:
        raise StackError(f"{directory}: no TIFF files")
    indexed: dict[int, Path] = {}
    prefixes: set[str] = set()
    for path in tiffs:
        match = _NAME.match(path.name)
        if match is None:
            raise StackError(f"{path.name}: not named <dataset>_<NNNNN>.tiff")
        index = int(match["index"])
        if index in indexed:
            raise StackError(f"{path.name}: row index {index} appears twice ({indexed[index].name})")
        indexed[index] = path
        prefixes.add(match["prefix"])
    if len(prefixes) > 1:
        raise StackError(f"{directory}: TIFFs of several datasets ({', '.join(sorted(prefixes))})")
    indices = sorted(indexed)
    # Rows binned by b are named by the first row of each group: the step is b. The reconstruction records it
    # (``row_step`` = binning x the rows step, else ``binning``) in the first TIFF; without that, the gcd of the
    # index differences.
    first_meta = _description(indexed[indices[0]])
    step = first_meta.get("row_step", first_meta.get("binning"))
    if not (isinstance(step, int) and step >= 1):
        step = math.gcd(*(b - a for a, b in itertools.pairwise(indices))) if len(indices) > 1 else 1
    expected = range(indices[0], indices[-1] + 1, step)
    if indices != list(expected):
        missing = sorted(set(expected) - set(indices)) or sorted(set(indices) - set(expected))
        raise StackError(f"{directory}: {len(missing)} row(s) missing or off the step {step}, first {missing[0]:05d}")
    files = tuple(indexed[i] for i in indices)

    shape = dtype = None
    pixel_size_um = None
    for z, path in enumerate(files):
        try:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                n_pages = len(tif.pages)
                page_shape, page_dtype = page.shape, None if page.dtype is None else np.dtype(page.dtype)
                if z == 0:
                    pixel_size_um = _pixel_size_um(page.description)
        except Exception as exc:
            raise StackError(f"{path.name}: unreadable TIFF ({_one_line(exc)})") from exc
        if len(page_shape) != 2 or page_dtype is None or n_pages != 1:
            raise StackError(f"{path.name}: not one single-channel 2-D image ({n_pages} page(s), shape {page_shape})")
        page_dtype = page_dtype.newbyteorder("=")  # big-endian files are read into native arrays
        if shape is None:
            shape, dtype = page_shape, page_dtype
        elif page_shape != shape or page_dtype != dtype:
            first = files[0].name
            raise StackError(f"{path.name}: shape {page_shape} {page_dtype} differs from {first} {shape} {dtype}")
    dataset = directory.name[3:] if directory.name.startswith("rec") and len(directory.name) > 3 else prefixes.pop()
    return TiffStack(
        directory=directory,
        dataset=dataset,
        files=files,
        first_index=indices[0],
        step=step,
        shape=(len(files), *shape),
        dtype=dtype,
        pixel_size_um=pixel_size_um,
    )


def _description(path: Path) -> dict:
    """The first page's ImageDescription as a JSON object, else {} (unreadable files are reported later)."""
    try:
        with tifffile.TiffFile(path) as tif:
            value = json.loads(tif.pages.first.description)
    except Exception:
        return {}
    return value if isinstance(value, dict) else {}


def _pixel_size_um(description: str) -> float | None:
    """``pixel_size_um`` from a JSON ImageDescription (tifffile's ``metadata=`` or a plain JSON string)."""
    try:
        value = json.loads(description).get("pixel_size_um")
        value = float(value)
    except (ValueError, TypeError, AttributeError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
