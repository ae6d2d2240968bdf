"""The SciCat ingesters (upstream's ``ingester_spec`` names), light enough for DAG parsing: no h5py, no numpy."""

from __future__ import annotations

#: Upstream's ingester names; ours are the values, upstream's spelling an alias.
INGESTERS = {"als_832_dx_4": "als_832_dx_4", "als_733_saxs": "als_733_saxs", "als733_saxs": "als_733_saxs"}


def ingester_name(name: str) -> str:
    """Our name of an ingester (upstream's spelling accepted); ValueError for an unknown one."""
    try:
        return INGESTERS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(set(INGESTERS.values())))
        raise ValueError(f"unknown SciCat ingester {name!r} (known: {known})") from None
