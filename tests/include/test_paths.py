"""Scan identities and endpoint-relative paths: the only place user paths are parsed."""

from pathlib import PurePosixPath

import pytest

from include.errors import InvalidPathError
from include.paths import EndpointPath, endpoint_relative, parse_scan


@pytest.mark.parametrize(
    "given, folder, name",
    [
        (
            "/global/raw/BLS-00564_dyparkinson/20230224_132553_sea_shell.h5",
            "BLS-00564_dyparkinson",
            "20230224_132553_sea_shell.h5",
        ),
        ("BLS-00564_dyparkinson/20230224_132553_sea_shell.h5", "BLS-00564_dyparkinson", "20230224_132553_sea_shell.h5"),
        ("ALS-12345_jdoe/20240101_000000_tile_x01y02.h5", "ALS-12345_jdoe", "20240101_000000_tile_x01y02.h5"),
        (
            "ALS-12345_jdoe/20240101_000000_with space; and 'quote'.h5",
            "ALS-12345_jdoe",
            "20240101_000000_with space; and 'quote'.h5",
        ),
    ],
)
def test_parse_scan_accepts_the_two_beamline_forms(given, folder, name):
    scan = parse_scan(given)
    assert (scan.folder, scan.file_name) == (folder, name)
    assert scan.relative_path == PurePosixPath(folder, name)
    assert scan.dataset == name[:-3]
    assert scan.recon_dir_name == f"rec{name[:-3]}"
    assert scan.zarr_dir_name == f"rec{name[:-3]}.zarr"


@pytest.mark.parametrize(
    "given, reason",
    [
        ("", "empty"),
        ("/global/raw", "not under"),
        ("/global/rawdata/BLS-1_x/a.h5", "not under"),
        ("/globalraw/BLS-1_x/a.h5", "not under"),
        ("/global/raw/../etc/a.h5", "'..'"),
        ("/data/raw/BLS-1_x/a.h5", "not under"),
        # the current system cuts at the first '/global': a folder named global... must not become '/raw'
        ("/global/raw/global_thing/a.h5", None),
        ("global_stuff/raw/a.h5", "exactly"),
        ("BLS-1_x/../a.h5", "'..'"),
        ("BLS-1_x//a.h5", "empty name"),
        ("BLS-1_x/a.tiff", "HDF5"),
        ("BLS-1_x/.h5", "HDF5"),
        ("a.h5", "exactly"),
        ("BLS-1_x/sub/a.h5", "exactly"),
        ("BLS-1_x\\a.h5", "backslash"),
        ("BLS-1_x/a\n.h5", "control"),
    ],
)
def test_parse_scan_refuses_bad_paths(given, reason):
    if reason is None:  # a folder whose name starts with 'global' is just a folder
        assert parse_scan(given).folder == "global_thing"
        return
    with pytest.raises(InvalidPathError, match=reason):
        parse_scan(given)


def test_endpoint_relative_rules():
    assert endpoint_relative("a/b/c/") == PurePosixPath("a/b/c")
    assert endpoint_relative(".", allow_root=True) == PurePosixPath(".")
    for bad in ("", "/abs", "a/../b", "./a", "a//b", ".."):
        with pytest.raises(InvalidPathError):
            endpoint_relative(bad)


def test_endpoint_path_round_trips_and_normalises():
    where = EndpointPath("data832_raw", PurePosixPath("f/scan.h5"))
    assert EndpointPath.from_dict(where.to_dict()) == where
    assert str(where.child("x")) == "data832_raw:f/scan.h5/x"
    with pytest.raises(InvalidPathError):
        EndpointPath("data832_raw", "../escape")
