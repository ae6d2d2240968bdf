"""Issue 17, finding 4: placeholder collection and Compute endpoint ids are refused by the production profile
before anything is sent; the local profile serves them (and only the ids it registers)."""

from __future__ import annotations

import pytest

from include.endpoints import load_endpoints
from include.errors import ConfigError
from include.paths import EndpointPath
from include.sites import load_sites


def test_production_refuses_placeholder_collections_and_allows_real_ones():
    production = load_endpoints("production")
    for name in ("olcf832_raw", "olcf832_scratch", "data733"):
        with pytest.raises(ConfigError, match="PLACEHOLDER"):
            production.sendable(name)
    assert production.sendable("data832_raw").uuid == production["data832_raw"].uuid
    placeholders = {c.name for c in production.collections.values() if c.placeholder}
    assert placeholders == {"olcf_orion", "data733"}
    local = load_endpoints("local")
    assert local.sendable("olcf832_raw").uuid == local["olcf832_raw"].uuid


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
    with pytest.raises(ConfigError, match="PLACEHOLDER"):
        hook.submit_delete("data733", ["a"], submission_id="00000000-0000-4000-8000-000000000002", label="x")
    assert facility.stats() == {}  # not even a token was asked for
