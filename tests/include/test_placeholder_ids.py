"""Issue 17, finding 4 (and issue 16, finding 5): placeholder collection and Compute endpoint ids are refused by
the production profile before anything is sent; the local profile serves them (and only the ids it registers)."""

from __future__ import annotations

import pytest

from include.endpoints import load_endpoints
from include.errors import ConfigError
from include.paths import EndpointPath
from include.sites import load_sites


def test_production_refuses_placeholder_collections_and_allows_real_ones():
    production = load_endpoints("production")
    for name in ("olcf832_raw", "olcf832_scratch"):
        with pytest.raises(ConfigError, match="PLACEHOLDER"):
            production.sendable(name)
    for name in ("data832_raw", "data733", "alcf832_raw", "data7012"):  # data733: upstream's id (issue 16)
        assert production.sendable(name).uuid == production[name].uuid
    placeholders = {c.name for c in production.collections.values() if c.placeholder}
    assert placeholders == {"olcf_orion"}  # only what upstream config.yml does not have
    local = load_endpoints("local")
    assert local.sendable("olcf832_raw").uuid == local["olcf832_raw"].uuid


def test_each_refusal_names_the_placeholder():
    """Issue 16: every remaining placeholder is refused by the production profile with a message naming it (the
    endpoint, its collection and the id; the site and the id for a Compute endpoint)."""
    production = load_endpoints("production")
    on_placeholders = [name for name, e in production.endpoints.items() if e.collection.placeholder]
    assert on_placeholders
    for name in on_placeholders:
        collection = production[name].collection
        with pytest.raises(ConfigError) as refused:
            production.sendable(name)
        message = str(refused.value)
        for part in (repr(name), repr(collection.name), collection.uuid, "PLACEHOLDER", "placeholder: true"):
            assert part in message, (name, part, message)
    sites = load_sites()
    placeholder_sites = [site for site in sites.sites.values() if site.placeholder]
    assert [site.name for site in placeholder_sites] == ["olcf"]
    for site in placeholder_sites:
        with pytest.raises(ConfigError) as refused:
            sites.check_compute_endpoint(site.compute_endpoint_id, "production")
        message = str(refused.value)
        assert (
            f"sites.{site.name}.compute_endpoint_id {site.compute_endpoint_id}" in message and "PLACEHOLDER" in message
        )


def test_production_refuses_a_placeholder_compute_endpoint():
    sites = load_sites()
    olcf = sites["olcf"].compute_endpoint_id
    with pytest.raises(ConfigError, match="PLACEHOLDER"):
        sites.check_compute_endpoint(olcf, "production")
    assert sites.check_compute_endpoint(olcf, "local") == olcf
    alcf = sites["alcf"].compute_endpoint_id
    assert sites.check_compute_endpoint(alcf, "production") == alcf


def test_the_transfer_hook_sends_nothing_to_a_placeholder_in_production(facility, monkeypatch):
    from als_provider.hooks.globus_transfer import GlobusTransferHook

    monkeypatch.setenv("ALS_ENDPOINT_PROFILE", "production")
    hook = GlobusTransferHook()
    with pytest.raises(ConfigError, match=r"olcf_orion.*PLACEHOLDER"):
        hook.submit_transfer(
            EndpointPath("data832_raw", "a/b.h5"),
            EndpointPath("olcf832_raw", "a/b.h5"),
            submission_id="00000000-0000-4000-8000-000000000001",
            recursive=False,
            label="placeholder",
        )
    with pytest.raises(ConfigError, match=r"'olcf832_scratch'.*olcf_orion.*PLACEHOLDER"):
        hook.submit_delete("olcf832_scratch", ["a"], submission_id="00000000-0000-4000-8000-000000000002", label="x")
    assert facility.stats() == {}  # not even a token was asked for
