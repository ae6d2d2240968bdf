"""Scan identities, scan names and endpoint-relative paths: the only place user paths are parsed."""

import re
from pathlib import PurePosixPath

import pytest

from include.errors import InvalidPathError
from include.paths import (
    EndpointPath,
    Scan,
    beamline_path,
    endpoint_relative,
    is_scan_folder,
    parse_scan,
    scan_from_names,
    scan_run_id,
)

FOLDER = "BLS-00564_dyparkinson"


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


@pytest.mark.parametrize(
    ("folder", "file_name"),
    [(FOLDER, "20230224_132553_sea_shell.h5"), ("ALS-12345_jdoe", "20240101_000000_tile_x01y02.h5")],
)
def test_scan_names_of_spec_section_1_are_scans(folder, file_name):
    assert scan_from_names(folder, file_name) == Scan(folder, file_name)


@pytest.mark.parametrize(
    ("folder", "file_name"),
    [
        (FOLDER, "notes.txt"),
        (FOLDER, "sea_shell.h5"),  # no date/time
        (FOLDER, "20230224_132553_sea_shell.h5.part"),
        (FOLDER, ".20230224_132553_sea_shell.h5"),
        ("scratch", "20230224_132553_sea_shell.h5"),  # not an experiment folder
        ("global-00001_x", "20230224_132553_a\\b.h5"),  # backslash refused by parse_scan
        ("..", "20230224_132553_sea_shell.h5"),
    ],
)
def test_other_names_are_ignored(folder, file_name):
    assert scan_from_names(folder, file_name) is None


def test_run_id_is_deterministic_valid_and_distinct():
    scan = Scan(FOLDER, "20230224_132553_sea shell+x.h5")
    run_id = scan_run_id(scan)
    assert run_id == scan_run_id(Scan(FOLDER, "20230224_132553_sea shell+x.h5"))
    assert run_id.startswith(f"scan__{FOLDER}__20230224_132553_sea-shell-x__")
    assert re.fullmatch(r"[A-Za-z0-9_.~:+-]{1,250}", run_id)
    # names that sanitise alike still get different run ids
    assert run_id != scan_run_id(Scan(FOLDER, "20230224_132553_sea+shell x.h5"))
    assert len(scan_run_id(Scan("A-00001_" + "u" * 300, "20230224_132553_" + "n" * 300 + ".h5"))) <= 250


def test_custom_patterns_still_need_a_path_the_dispatcher_accepts():
    anything = r"^.*$"
    assert scan_from_names("scratch", "x.h5", folder_pattern=anything, file_pattern=anything) == Scan("scratch", "x.h5")
    # a hidden file passes the patterns and parse_scan, not the dispatcher's file_path pattern
    assert scan_from_names("scratch", ".x.h5", folder_pattern=anything, file_pattern=anything) is None
    assert scan_from_names("scratch", "x.txt", folder_pattern=anything, file_pattern=anything) is None


def test_beamline_path_is_what_parse_scan_reads_back():
    scan = Scan(FOLDER, "20230224_132553_sea shell.h5")
    assert beamline_path(scan) == f"/global/raw/{FOLDER}/20230224_132553_sea shell.h5"
    assert parse_scan(beamline_path(scan)) == scan


def test_experiment_folders_hold_scans():
    assert is_scan_folder(FOLDER) and is_scan_folder("ALS-12345_jdoe")
    for name in ("scratch", "..", ".BLS-00564_x", "BLS-0056_x", "BLS-00564_"):
        assert not is_scan_folder(name), name
    assert is_scan_folder("scratch", folder_pattern=r"^scratch$")


def test_a_beamline_may_take_other_file_suffixes():
    """7.3.3 runs list SAXS .txt headers and .edf images (issue 16, finding 8); 8.3.2 stays .h5 only."""
    import re

    from include.errors import InvalidPathError
    from include.paths import beamline_file_pattern, parse_scan, parse_scans

    suffixes = (".txt", ".edf", ".h5")
    scans = parse_scans(["F/AgB_00001.txt", "F/AgB_00001.edf"], suffixes=suffixes)
    assert [s.dataset for s in scans] == ["AgB_00001", "AgB_00001"]
    with pytest.raises(InvalidPathError, match=r"file_path\[1\].*\.txt or \.edf or \.h5"):
        parse_scans(["F/a.txt", "F/a.tiff"], suffixes=suffixes)
    with pytest.raises(InvalidPathError, match="HDF5"):
        parse_scan("F/a.txt")
    with pytest.raises(InvalidPathError):
        parse_scan("F/.txt", suffixes=suffixes)
    pattern = re.compile(beamline_file_pattern(suffixes))
    assert pattern.match("F/a.edf") and not pattern.match("F/a.tiff") and not pattern.match("../a.edf")


@pytest.mark.parametrize(
    ("given", "folder", "name"),
    [
        ("/2025/03/AgB/AgB_00001.edf", "2025/03/AgB", "AgB_00001.edf"),  # 7.3.3: absolute on data733 (root /)
        ("2023/02/230216/NS_230216033_ccdframes_0_0.cxi", "2023/02/230216", "NS_230216033_ccdframes_0_0.cxi"),
        ("F/a.h5", "F", "a.h5"),
    ],
)
def test_i22_item_4_upstream_callers_file_shapes_are_accepted(given, folder, name):
    """Issue 22 item 4: 7.3.3 sends absolute paths on data733 (bl733/move.py:129-132), 7.0.1.2 nested .cxi
    (bl7012/move_recon.py:271); the folder is everything before the file's name."""
    import re

    from include.paths import beamline_file_pattern, parse_file

    scan = parse_file(given, suffixes=(".txt", ".edf", ".h5", ".cxi"), root="/")
    assert (scan.folder, scan.file_name) == (folder, name)
    assert re.match(beamline_file_pattern((".txt", ".edf", ".h5", ".cxi")), given)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("/srv/other/F/a.edf", r"file_path '/srv/other/F/a\.edf' is absolute but outside .* root /data; give"),
        ("F/../a.edf", r"'\.\.'"),
        ("/data/F/../a.edf", r"'\.\.'"),
        ("F//a.edf", "empty name"),
        ("F/.hidden/a.edf", "hidden name '.hidden'"),
        ("F/.a.edf", "hidden name"),
        ("/data/a.edf", "<folder>/<file>"),
        ("F/a.tiff", r"does not end with \.edf"),
    ],
)
def test_i22_item_4_bad_beamline_files_are_refused_in_one_line(given, message):
    import re

    from include.errors import InvalidPathError
    from include.paths import beamline_file_pattern, parse_files

    with pytest.raises(InvalidPathError, match=message) as raised:
        parse_files(["F/ok.edf", given], suffixes=(".edf",), root="/data")
    assert str(raised.value).startswith(f"file_path[1] {given!r}: ") and "\n" not in str(raised.value)
    if not given.startswith("/"):
        assert not re.match(beamline_file_pattern((".edf",)), given)  # the trigger form refuses it too


# -- issue 26 finding 3: result names that cannot collide -------------------------------------------
def _result_paths(scan: Scan, sites) -> set[PurePosixPath]:
    """Every path a scan's results take at any site (all share data832_scratch): the TIFF and Zarr folders and
    the hidden siblings beside them (run-once markers, a copy's staging and replaced folders)."""
    paths = set()
    for site in sites:
        for folder in scan.results(site).folders():
            paths.add(folder)
            paths |= {
                folder.parent / f".{folder.name}.{tail}" for tail in ("run-result", "run-lock", "incoming", "replaced")
            }
    return paths


def test_i26_finding_3_a_dataset_ending_in_zarr_is_refused_with_the_file_and_the_fix():
    from include.plans import site_plan
    from include.sites import load_sites

    site = load_sites()["alcf"]
    for name in ("a.zarr.h5", "a.ZARR.h5"):
        with pytest.raises(InvalidPathError) as refused:
            site_plan(site, parse_scan(f"{FOLDER}/{name}"), {})
        message = str(refused.value)
        assert "\n" not in message and name in message and "rename the file" in message
    assert site_plan(site, parse_scan(f"{FOLDER}/a.h5"), {}).zarr_path.endswith("/reca.zarr")
    assert site_plan(site, parse_scan(f"{FOLDER}/a_zarr.h5"), {}).tiff_path.endswith("/reca_zarr")


def test_i26_finding_3_no_two_scans_results_nest_or_coincide():
    """Property over seeded random names: the result paths of two different scans never coincide or nest."""
    import random

    from include.sites import load_sites

    sites = list(load_sites().sites.values())
    assert len({site.results_folder for site in sites}) == len(sites), "two sites share a results folder"
    rng = random.Random(26_3)
    tokens = ["a", "b", "rec", ".zarr", ".ZARR", "zarr", ".", "_", "-", " ", ".h5", "x1", ".incoming", ".run-result"]
    scans, refused = {}, 0
    for _ in range(3000):
        folder = rng.choice(["f", "g", "rec", "f.zarr"])
        name = "".join(rng.choice(tokens) for _ in range(rng.randint(1, 4))) + ".h5"
        try:
            scan = parse_scan(f"{folder}/{name}")
            scans[scan] = _result_paths(scan, sites)
        except InvalidPathError:
            refused += 1
    owner: dict[PurePosixPath, Scan] = {}
    for scan, paths in scans.items():
        for path in paths:
            assert owner.setdefault(path, scan) == scan, f"{scan} and {owner[path]} both write {path}"
    for scan, paths in scans.items():
        for path in paths:
            for parent in path.parents:
                other = owner.get(parent)
                assert other in (None, scan), f"{path} of {scan} lies inside {parent} of {other}"
    assert refused > 50 and len(scans) > 500  # both sides of the rule were exercised
