"""include/dispatch.py: the dispatcher's choice of pipelines, from its settings and the results at home, without
Airflow (the results are looked at through a plain function standing in for a Globus listing)."""

from __future__ import annotations

import pytest

from include.dispatch import choose, results_at_home
from include.paths import EndpointPath, parse_scan
from include.results import Completeness
from include.sites import load_sites

SCAN = parse_scan("BLS-00564_dyparkinson/20230224_132553_sea_shell.h5")
VARIABLE = "bl832_dispatcher_settings"
NAMES = ["new_file", "alcf", "nersc", "local"]
CONF = {"is_export_controlled": False, "send_to_nersc": True}


def absent(where: EndpointPath) -> Completeness:
    return Completeness(where, False, "absent")


def complete(where: EndpointPath) -> Completeness:
    return Completeness(where, True, "complete: 3 files, 30 bytes")


def pick(settings, params=CONF, results=absent):
    return choose(NAMES, load_sites().sites, SCAN, params, settings, results, variable=VARIABLE)


def test_the_settings_turn_pipelines_on_and_off():
    choice = pick({"new_file": True, "alcf": True, "nersc": False})
    assert choice.chosen == ["new_file", "alcf"]
    assert choice.skipped == {"nersc": f"off in {VARIABLE}", "local": f"off in {VARIABLE}"}


@pytest.mark.parametrize(
    ("settings", "message"),
    [(None, "must be a JSON object"), ({"ssh": True}, "keys must be among"), ({"alcf": "yes"}, "true/false values")],
)
def test_bad_settings_name_the_variable(settings, message):
    with pytest.raises(ValueError, match=message) as error:
        pick(settings)
    assert VARIABLE in str(error.value)


def test_an_export_controlled_scan_runs_only_on_site():
    choice = pick(dict.fromkeys(NAMES, True), params={**CONF, "is_export_controlled": True})
    assert choice.chosen == ["new_file", "local"]
    assert choice.skipped["alcf"] == choice.skipped["nersc"] == "export-controlled: the scan never leaves the beamline"


def test_without_send_to_nersc_a_site_reading_the_nersc_copy_is_skipped():
    choice = pick(dict.fromkeys(NAMES, True), params={**CONF, "send_to_nersc": False})
    assert "nersc" not in choice.chosen and "send_to_nersc is off" in choice.skipped["nersc"]
    assert "alcf" in choice.chosen


def test_complete_results_at_home_are_not_made_again_partial_ones_are():
    choice = pick(dict.fromkeys(NAMES, True), results=complete)
    assert choice.chosen == ["new_file"]
    assert choice.skipped["alcf"] == (
        "results already complete at data832_scratch:BLS-00564_dyparkinson/alcf/rec20230224_132553_sea_shell/; "
        'to reconstruct again, trigger with {"force": true}'
    )

    def partial(where: EndpointPath) -> Completeness:
        return Completeness(where, where.path.name.endswith(".zarr"), "1 files, 3 bytes where ... counts 2 files")

    choice = pick(dict.fromkeys(NAMES, True), results=partial)
    assert choice.chosen == NAMES
    assert any("alcf/rec20230224_132553_sea_shell is incomplete" in note for note in choice.notes)


def test_results_are_looked_at_on_the_beamlines_home():
    site = load_sites()["alcf"]
    looked = []

    def lookup(where: EndpointPath) -> Completeness:
        looked.append(str(where))
        return absent(where)

    assert results_at_home(site, SCAN.results(site), lookup) is None
    folder = "data832_scratch:BLS-00564_dyparkinson/alcf/rec20230224_132553_sea_shell"
    assert looked == [folder, folder + ".zarr"]
