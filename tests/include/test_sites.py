"""include/sites.py: sites.yaml is read by the one loader (include/config_files.py) against its schema; every
mistake names the file, the line and the key; a site points at a tomography beamline."""

from __future__ import annotations

import pytest

from include.errors import ConfigError
from include.sites import SITES_FILE, load_sites


def broken(tmp_path, old: str, new: str, marker: str):
    """A copy of sites.yaml with ``old`` replaced by ``new``, and the line of ``marker`` in it."""
    text = SITES_FILE.read_text()
    assert old in text
    text = text.replace(old, new, 1)
    (tmp_path / "sites.yaml").write_text(text)
    return tmp_path / "sites.yaml", text.splitlines().index(marker) + 1


@pytest.mark.parametrize(
    ("old", "new", "marker", "message"),
    [
        (
            "    enabled: true\n",
            "    enabled: yes please\n",
            "    enabled: yes please",
            "sites.alcf.enabled: expected boolean, got 'yes please'",
        ),
        ("sites:\n", "colour: red\nsites:\n", "colour: red", "colour: unknown key"),
        (
            "    raw_endpoint: alcf832_raw\n",
            "    raw_endpoint: alcf832_raw\n    beamline: bl999\n",
            "    beamline: bl999",
            "sites.alcf.beamline: 'bl999' is not a tomography beamline of beamlines.yaml (known: bl832)",
        ),
    ],
)
def test_a_mistake_names_the_file_the_line_and_the_key(tmp_path, old, new, marker, message):
    path, line = broken(tmp_path, old, new, marker)
    with pytest.raises(ConfigError) as error:
        load_sites(path)
    assert str(error.value).startswith(f"{path}:{line}: "), str(error.value)
    assert message in str(error.value)


def test_every_site_points_at_its_beamline_and_takes_its_dag_prefix():
    for site in load_sites().enabled():
        assert site.beamline.key == "bl832"
        assert site.dag_id == f"bl832_{site.name}_recon"
    assert [s.name for s in load_sites().enabled("bl832")] == ["alcf", "nersc", "olcf", "local"]
    assert load_sites().enabled("bl999") == []
