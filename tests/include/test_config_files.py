"""include/config_files.py, and every configuration file read through it: errors name the file, the line, the key."""

import re
from pathlib import Path

import pytest

from include.config_files import ConfigDocument, dotted, load_config, parse_config
from include.errors import ConfigError

#: A sites.yaml-like schema: ``sites``, each a mapping of a site's name to its keys.
SITE = {
    "type": "object",
    "required": ["runner"],
    "additionalProperties": False,
    "properties": {
        "runner": {"enum": ["globus_compute", "sfapi"]},
        "workers": {"type": "integer", "minimum": 1},
        "suffixes": {"type": "array", "items": {"type": "string"}},
    },
}
SCHEMA = {
    "type": "object",
    "required": ["sites"],
    "additionalProperties": False,
    "properties": {"sites": {"type": "object", "additionalProperties": SITE}},
}
TEXT = """\
# a comment
sites:
  alcf:
    runner: globus_compute
    workers: 4
  nersc:
    runner: sfapi
    suffixes:
      - .h5
      - .tif
"""


def refused(text: str, schema: dict | None = SCHEMA) -> str:
    with pytest.raises(ConfigError) as error:
        parse_config(text, "sites.yaml", schema)
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_every_key_and_item_has_its_line():
    document = parse_config(TEXT, "sites.yaml", SCHEMA)
    assert document.data["sites"]["nersc"]["suffixes"] == [".h5", ".tif"]
    assert document.line(()) == 2
    assert document.line(("sites", "alcf", "workers")) == 5
    assert document.line(("sites", "nersc", "suffixes", 1)) == 10
    assert document.line(("sites", "nersc", "missing", "deeper")) == 6  # the nearest parent that has one
    assert document.where(("sites", "nersc", "suffixes", 1)) == "sites.yaml:10: sites.nersc.suffixes[1]"
    assert str(document.error("sites.nersc.runner", "no")) == "sites.yaml:7: sites.nersc.runner: no"
    assert dotted(("a", "b", 0, "c")) == "a.b[0].c"


def test_an_unknown_key_is_named_with_its_line_and_the_known_keys():
    message = refused(TEXT.replace("    workers: 4", "    wrokers: 4"))
    assert message == "sites.yaml:5: sites.alcf.wrokers: unknown key (known: runner, suffixes, workers)"


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("workers: 4", "workers: four", "sites.yaml:5: sites.alcf.workers: expected integer, got 'four'"),
        ("workers: 4", "workers: true", "sites.yaml:5: sites.alcf.workers: expected integer, got True"),
        ("workers: 4", "workers: 0", "sites.yaml:5: sites.alcf.workers: must be >= 1, got 0"),
        (
            "runner: sfapi",
            "runner: slurm",
            "sites.yaml:7: sites.nersc.runner: one of globus_compute, sfapi, got 'slurm'",
        ),
        ("- .tif", "- 3", "sites.yaml:10: sites.nersc.suffixes[1]: expected string, got 3"),
        ("    runner: sfapi\n", "", "sites.yaml:6: sites.nersc: missing key(s) runner"),
        ("sites:", "places:", "sites.yaml:2: places: unknown key (known: sites)"),
    ],
)
def test_a_schema_violation_is_one_line_naming_file_line_and_key(old, new, expected):
    assert refused(TEXT.replace(old, new)) == expected


def test_the_first_violation_in_the_file_is_reported_and_never_the_schema():
    text = TEXT.replace("workers: 4", "workers: many").replace("runner: sfapi", "runner: slurm")
    message = refused(text)
    assert message.startswith("sites.yaml:5: sites.alcf.workers: ")
    assert "'type'" not in message and "properties" not in message and len(message) < 200


def test_invalid_yaml_names_the_line():
    assert refused(TEXT.replace("workers: 4", "workers: 4: 5"), None) == (
        "sites.yaml:5: not valid YAML: mapping values are not allowed here"
    )
    assert refused(TEXT.replace("workers: 4", "workers: [4"), None) == (
        "sites.yaml:6: not valid YAML: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence started on line 5)"
    )


def test_a_key_given_twice_is_refused_with_both_lines():
    text = TEXT.replace("    workers: 4\n", "    workers: 4\n    runner: sfapi\n")
    assert refused(text) == "sites.yaml:6: sites.alcf.runner: given twice (first on line 4)"


def test_missing_unreadable_and_empty_files(tmp_path):
    with pytest.raises(ConfigError, match=r"^.*nowhere\.yaml: file not found$"):
        load_config(tmp_path / "nowhere.yaml")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path)
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    assert load_config(tmp_path / "empty.yaml").data is None
    with pytest.raises(ConfigError, match=r"empty\.yaml: expected object, got None"):
        load_config(tmp_path / "empty.yaml", SCHEMA)


def test_a_document_without_lines_names_the_file_and_key():
    document = ConfigDocument({"a": 1}, Path("x.yaml"))
    assert str(document.error(("a",), "bad")) == "x.yaml: a: bad"
    assert str(document.error((), "bad")) == "x.yaml: bad"


# -- every configuration file of include/config/ reports through it ---------------------------------------
CONFIG = Path(__file__).resolve().parents[2] / "include" / "config"


def _line(text: str, needle: str) -> int:
    return next(number for number, row in enumerate(text.splitlines(), 1) if needle in row)


def _runtime(path):
    from include.runtime import load_runtime

    load_runtime("local", path=path)


def _nersc(path):
    from include.slurm import load_nersc_config

    load_nersc_config("local", path=path)


def _retention(path):
    from include.retention import long_term_endpoints

    long_term_endpoints(str(path))


def _export_control(path):
    from include.export_control import on_site_collections

    on_site_collections(path)


def _endpoints(path):
    from include.endpoints import load_endpoints

    load_endpoints("production", path=path)


@pytest.mark.parametrize(
    "file, load, old, new, expected",
    [
        ("runtime.yaml", _runtime, "sfapi: 1", "sfapi: yes", r"local\.poll_seconds\.sfapi: expected number, got True"),
        ("runtime.yaml", _runtime, "hpss_mode: copy", "hpss_mode: tape", r"local\.hpss_mode: one of hsi, copy, got"),
        ("runtime.yaml", _runtime, "  transfer_stall_seconds: 3", "  stall: 3", r"local\.stall: unknown key"),
        # a value the local profile takes from production is named where it is written
        (
            "runtime.yaml",
            _runtime,
            "    compute: 15",
            "    compute: 0",
            r"production\.poll_seconds\.compute: must be >",
        ),
        ("nersc.yaml", _nersc, "qos: realtime", "qos: real time", r"production\.directives\.qos: directive --qos"),
        ("nersc.yaml", _nersc, 'time: "0:05:00"', "time: 5 min", r"local\.directives\.time: directive --time"),
        ("nersc.yaml", _nersc, "path: tomo_recon_logs", 'path: ""', r"production\.logs\.path: must not be empty"),
        ("nersc.yaml", _nersc, "endpoint: nersc832", "endpoint: nowhere832", r"production\.logs\.endpoint: unknown"),
        ("nersc.yaml", _nersc, "runtime: none", "runtime: docker", r"local\.container\.runtime: one of podman-hpc"),
        ("retention.yaml", _retention, "  - nersc832 ", "  - data832 ", r"long_term\[0\]: 'data832' is also temporary"),
        ("retention.yaml", _retention, "\nregenerate_from_raw:", "\nregenerate:", r"regenerate: unknown key"),
        ("export_control.yaml", _export_control, "data832]", "data833]", r"on_site_collections\[1\]: 'data833' is not"),
        ("endpoints.yaml", _endpoints, "storage: nersc_hpss", "storage: ../hpss", r"collections\.nersc_hpss\.storage"),
    ],
)
def test_each_configuration_file_names_file_line_and_key(tmp_path, file, load, old, new, expected):
    text = (CONFIG / file).read_text()
    assert old in text, f"{file} no longer has {old!r}: update this case"
    text = text.replace(old, new, 1)
    path = tmp_path / file
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load(path)
    message = str(error.value)
    assert message.startswith(f"{path}:{_line(text, new.strip())}: "), message
    assert re.search(expected, message), message
    assert "\n" not in message
