"""Issue 23, finding 5: a beamline's copies must be classified in retention.yaml, checked when the beamlines load
(not mid-run as a ManifestError), with the file and the missing key named."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from include.beamlines import BEAMLINES_FILE, parse_beamlines
from include.endpoints import load_endpoints
from include.errors import ConfigError

SOURCE = Path("/etc/als/beamlines.yaml")
DOCUMENT = yaml.safe_load(BEAMLINES_FILE.read_text())
#: endpoints.yaml plus a new beamline's endpoints, as docs/beamlines.md step 1 adds them
ENDPOINTS = set(load_endpoints("production").endpoints) | {"data1201", "nersc1201_raw"}


def with_beamline(**entry) -> dict:
    document = copy.deepcopy(DOCUMENT)
    document["beamlines"]["bl1201"] = {"beamline": "12.0.1", "owner": "bl1201-computing", **entry}
    return document


def refused(document) -> str:
    with pytest.raises(ConfigError) as error:
        parse_beamlines(document, source=SOURCE, endpoint_names=ENDPOINTS)
    return str(error.value)


def test_i23_finding_5_a_source_endpoint_missing_from_retention_yaml_is_named_at_load():
    message = refused(
        with_beamline(source_endpoint="data1201", nersc_endpoint="nersc733_raw", source_retention="data1201")
    )
    assert message == (
        f"{SOURCE}: beamlines.bl1201.source_retention: include/config/retention.yaml: endpoints.data1201: missing; "
        "add `data1201: data1201` there (docs/beamlines.md)"
    )


def test_i23_finding_5_a_location_other_than_retention_yaml_s_is_refused_at_load():
    message = refused(with_beamline(source_endpoint="data733", nersc_endpoint="nersc733_raw", source_retention="bl733"))
    assert "beamlines.bl1201.source_retention: 'bl733', but include/config/retention.yaml: endpoints.data733" in message


def test_i23_finding_5_an_unclassified_check_copy_is_refused_at_load():
    message = refused(
        with_beamline(source_endpoint="data733", nersc_endpoint="nersc1201_raw", source_retention="data733")
    )
    assert "nersc1201_raw (the check copy of data733) is in neither endpoints nor long_term" in message


def test_i23_finding_5_the_archive_pipeline_s_location_is_checked_too():
    document = copy.deepcopy(DOCUMENT)
    document["beamlines"]["bl733"]["pipelines"]["hpss_archive"]["retention_location"] = "cfs"
    message = refused(document)
    assert "beamlines.bl733.pipelines.hpss_archive.retention_location: 'cfs', but" in message
    assert "endpoints.nersc733_raw is 'bl733_cfs'" in message
