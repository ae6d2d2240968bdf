"""Fixtures the facility tests share."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture
def sfapi(facility):
    """An httpx client of the SFAPI stand-in, with a bearer token fetched through the real sfapi_client
    (private_key_jwt)."""
    from als_provider.hooks.sfapi import SFAPIHook

    hook = SFAPIHook()
    token = hook.get_conn().token
    with httpx.Client(base_url=f"{facility.url}/sfapi/api/v1.2", headers={"Authorization": f"Bearer {token}"}) as c:
        yield c
    hook.close()
