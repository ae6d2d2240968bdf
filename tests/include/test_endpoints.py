"""Endpoints as configuration: the production table of SPEC §2, the local profile, validation."""

import re
from pathlib import Path, PurePosixPath

import pytest
import yaml

from include.config_files import parse_config
from include.endpoints import ENDPOINTS_FILE, SCHEMA, load_endpoints, parse_endpoints
from include.errors import ConfigError, InvalidPathError


def test_production_endpoints_match_spec():
    endpoints = load_endpoints("production")
    assert endpoints["data832_raw"].root == PurePosixPath("/data/raw")
    assert endpoints["data832_raw"].uuid == "75b478b2-37af-46df-bfbd-71ed692c6506"
    assert endpoints["nersc832"].globus_path("raw/f/s.h5") == "/global/cfs/cdirs/als/data_mover/8.3.2/raw/f/s.h5"
    assert endpoints["alcf832_raw"].posix_path("f/s.h5") == Path("/eagle/IRIBeta/als/data/raw/f/s.h5")
    assert endpoints["spot832"].globus_path(".") == "/"
    # several names share one collection with different roots
    assert endpoints["nersc832_alsdev_raw"].uuid == endpoints["nersc832_alsdev_pscratch_scratch"].uuid


def test_local_profile_maps_collections_under_one_root(tmp_path):
    endpoints = load_endpoints("local", facility_root=tmp_path)
    assert endpoints["data832_raw"].posix_root == tmp_path / "data832" / "data" / "raw"
    assert endpoints["spot832"].posix_path("raw/f/s.h5") == tmp_path / "spot832" / "raw" / "f" / "s.h5"
    assert endpoints["data832_raw"].globus_path("f/s.h5") == "/data/raw/f/s.h5"


def test_relative_of_refuses_paths_outside_the_root():
    endpoint = load_endpoints("production")["data832_raw"]
    assert endpoint.relative_of("/data/raw/f/s.h5") == PurePosixPath("f/s.h5")
    with pytest.raises(ConfigError, match="outside endpoint 'data832_raw'"):
        endpoint.relative_of("/data/scratch/f/s.h5")
    with pytest.raises(InvalidPathError):
        endpoint.globus_path("../scratch")


def test_unknown_endpoint_names_the_file():
    with pytest.raises(ConfigError, match=r"endpoints\.yaml: unknown endpoint 'data833'"):
        load_endpoints("production")["data833"]


def _document():
    return yaml.safe_load(ENDPOINTS_FILE.read_text())


def _parse(document: dict, profile: str = "production", **kwargs):
    """``document`` written as YAML (one key a line) and loaded as endpoints.yaml would be."""
    text = yaml.safe_dump(document, default_flow_style=False, sort_keys=False)
    return parse_endpoints(parse_config(text, "endpoints.yaml", SCHEMA), profile=profile, **kwargs)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["endpoints"]["data832"].pop("root"), r"endpoints\.data832: missing key\(s\) root"),
        (lambda d: d["endpoints"]["data832"].update(collection="nope"), r"endpoints\.data832\.collection: unknown"),
        (lambda d: d["collections"]["data832"].update(uuid="not-a-uuid"), r"collections\.data832\.uuid: .* not a UUID"),
        (lambda d: d["endpoints"]["data832"].update(root="data"), r"endpoints\.data832\.root: must be an absolute"),
        (lambda d: d["endpoints"]["data832"].update(colection="x"), r"endpoints\.data832\.colection: unknown key"),
        (lambda d: d["collections"]["data832"].update(placeholder="yes"), r"collections\.data832\.placeholder: exp"),
        (lambda d: d.pop("collections"), r"^endpoints\.yaml:1: missing key\(s\) collections"),
    ],
)
def test_validation_names_file_line_and_key(mutate, message):
    document = _document()
    mutate(document)
    with pytest.raises(ConfigError, match=message) as info:
        _parse(document)
    assert re.match(r"endpoints\.yaml:\d+: ", str(info.value)), info.value


def test_the_line_is_the_keys_line_in_the_file():
    text = ENDPOINTS_FILE.read_text().replace("uuid: 75b478b2-37af-46df-bfbd-71ed692c6506", "uuid: not-a-uuid")
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "not-a-uuid" in row)
    with pytest.raises(ConfigError, match=rf"^endpoints\.yaml:{line}: collections\.data832\.uuid: 'not-a-uuid'"):
        parse_endpoints(parse_config(text, "endpoints.yaml", SCHEMA), profile="production")


def test_unknown_profile_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown endpoint profile 'staging'"):
        load_endpoints("staging")
    with pytest.raises(ConfigError, match=r"missing\.yaml: file not found"):
        load_endpoints("production", path=tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("collections: [unclosed")
    with pytest.raises(ConfigError, match=r"bad\.yaml:1: not valid YAML"):
        load_endpoints("production", path=bad)


def test_collections_sharing_a_file_system_share_a_local_folder(tmp_path):
    """NERSC's two collections both see /global/cfs: a copy to nersc832 is the jobs' input at alsdev raw."""
    endpoints = load_endpoints("local", facility_root=tmp_path)
    assert endpoints["nersc832"].posix_path("raw/f/s.h5") == endpoints["nersc832_alsdev_raw"].posix_path("f/s.h5")
    assert endpoints["nersc832"].uuid != endpoints["nersc832_alsdev_raw"].uuid
    document = _document()
    document["collections"]["data832"]["storage"] = "../escape"
    with pytest.raises(ConfigError, match=r"collections\.data832\.storage"):
        _parse(document, "local", facility_root=tmp_path)


def test_the_local_layout_is_stated_once_the_posix_roots_lie_in_the_storage_folders(tmp_path):
    endpoints = load_endpoints("local", facility_root=tmp_path)
    for endpoint in endpoints.endpoints.values():
        folder = endpoints.storage_folder(endpoint.collection)
        assert endpoint.posix_root == folder / str(endpoint.root).lstrip("/")
    nersc = [c for c in endpoints.collections.values() if c.storage == "nersc"]
    assert len(nersc) == 2 and len({endpoints.storage_folder(c) for c in nersc}) == 1
    production = load_endpoints("production")
    with pytest.raises(ConfigError, match="production profile has no local facility"):
        production.storage_folder(production["data832"].collection)
