"""What upstream (splash_flows) callers send, read in our terms (issue 16, finding 3): include/callers.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from include.callers import read_config, read_export_control
from include.endpoints import load_endpoints

UPSTREAM = yaml.safe_load((Path(__file__).parent / "fixtures" / "upstream_endpoints.yaml").read_text())["upstream"]
PLANTED = "planted-client-secret-0042"


def upstream_config() -> dict:
    """The shape of upstream's Config832 as a caller sends it (config.yml's sections)."""
    return {
        "globus": {
            "globus_endpoints": {
                name: {**entry, "uri": "example.org", "name": name} for name, entry in UPSTREAM.items()
            },
            "globus_apps": {"als_transfer": {"client_id": "some-client", "client_secret": PLANTED}},
        },
        "harbor_images832": {"recon_image": "tomorecon@sha256:0", "multires_image": "tomorecon@sha256:0"},
        "ghcr_images832": {"recon_image": "ghcr.io/als-computing/microct:master"},
        "prefect": {"deployments": [{"type_spec": "new_file_832", "uuid": "x"}]},
        "scicat": {"jobs_api_url": "https://dataportal.example/api/ingest/jobs"},
    }


def test_upstream_config_is_accepted_and_its_secrets_never_echoed():
    notes = read_config(upstream_config(), load_endpoints())
    text = "\n".join(notes)
    assert PLANTED not in text and "some-client" not in text
    assert "globus_apps: ignored" in text
    assert "endpoint(s) agree with this deployment" in text
    for section in ("harbor_images832", "ghcr_images832", "prefect", "scicat"):
        assert f"config.{section}: ignored" in text


@pytest.mark.parametrize("config", [None, {}])
def test_empty_config_means_this_deployment(config):
    assert read_config(config, load_endpoints()) == []


def test_an_endpoint_the_caller_places_elsewhere_is_refused_naming_it():
    config = upstream_config()
    config["globus"]["globus_endpoints"]["nersc832"]["uuid"] = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(ValueError, match=r"nersc832 \(caller: 00000000-"):
        read_config(config, load_endpoints())
    config = upstream_config()
    config["globus"]["globus_endpoints"]["data832_raw"]["root_path"] = "/elsewhere/raw"
    with pytest.raises(ValueError, match="data832_raw"):
        read_config(config, load_endpoints())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"globus": {}, "recon_image": "x"}, "unknown section"),
        ("config.yml", "JSON object"),
        ({"globus": {"globus_endpoints": []}}, "object of endpoints"),
        ({"globus": {"flows": {}}}, "config.globus"),
    ],
)
def test_other_config_is_refused(config, message):
    with pytest.raises(ValueError, match=message):
        read_config(config, load_endpoints())


def test_is_export_control_is_an_alias_where_the_dag_has_the_setting():
    declared = {"file_path", "is_export_controlled", "send_to_nersc"}
    assert read_export_control({"is_export_control": True}, declared)[0] is True
    assert read_export_control({"is_export_control": False}, declared)[0] is False
    assert read_export_control({}, declared) == (None, [])
    with pytest.raises(ValueError, match="disagree"):
        read_export_control({"is_export_control": True, "is_export_controlled": False}, declared)
    with pytest.raises(ValueError, match="true or false"):
        read_export_control({"is_export_control": "no"}, declared)


def test_a_dag_without_export_control_refuses_true_and_ignores_false():
    with pytest.raises(ValueError, match="no export-controlled mode"):
        read_export_control({"is_export_control": True}, {"file_path"})
    assert read_export_control({"is_export_control": False}, {"file_path"})[0] is None
