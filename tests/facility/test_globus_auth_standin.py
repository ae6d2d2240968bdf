"""The Globus Auth stand-in, driven by the real globus-sdk over HTTP."""

from __future__ import annotations

import globus_sdk
import pytest
from globus_sdk.scopes import ComputeScopes, FlowsScopes, SpecificFlowScopes, TransferScopes
from globus_sdk.transport import RetryConfig

from facility.globus_auth import resource_server_of, split_scopes
from facility.state import LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET

FLOW_ID = "0b1c6a6f-2d9b-4a7b-9a33-1f0c2a7f4e11"


def auth_client(facility, secret: str = LOCAL_CLIENT_SECRET) -> globus_sdk.ConfidentialAppAuthClient:
    return globus_sdk.ConfidentialAppAuthClient(
        LOCAL_CLIENT_ID, secret, base_url=facility.url + "/", retry_config=RetryConfig(max_retries=0)
    )


def transfer_client(facility, authorizer, retries: int = 0) -> globus_sdk.TransferClient:
    return globus_sdk.TransferClient(
        base_url=facility.url + "/",
        authorizer=authorizer,
        retry_config=RetryConfig(max_retries=retries, backoff=lambda _ctx: 0.0),
    )


def test_client_credentials_one_token_per_resource_server(facility):
    flow_user = SpecificFlowScopes(FLOW_ID).user.with_dependency(TransferScopes.all)
    tokens = auth_client(facility).oauth2_client_credentials_tokens(
        [TransferScopes.all, ComputeScopes.all, FlowsScopes.run_status, flow_user]
    )

    by_server = tokens.by_resource_server
    assert set(by_server) == {"transfer.api.globus.org", "funcx_service", "flows.globus.org", FLOW_ID}
    assert by_server["transfer.api.globus.org"]["scope"] == str(TransferScopes.all)
    # a dependent scope is not part of the issued token's own scope
    assert by_server[FLOW_ID]["scope"] == str(SpecificFlowScopes(FLOW_ID).user)
    assert len({info["access_token"] for info in by_server.values()}) == 4
    assert all(info["token_type"] == "Bearer" and info["expires_at_seconds"] > 0 for info in by_server.values())
    assert tokens.by_scopes[str(ComputeScopes.all)]["resource_server"] == "funcx_service"
    assert facility.stats()["auth.token_issued"] == 4


def test_bad_credentials_raise_auth_api_error(facility):
    with pytest.raises(globus_sdk.AuthAPIError) as raised:
        auth_client(facility, secret="wrong").oauth2_client_credentials_tokens(TransferScopes.all)

    assert raised.value.http_status == 401
    assert raised.value.raw_json["error"] == "invalid_client"
    assert raised.value.code == "UNAUTHORIZED"
    assert raised.value.message == "Invalid client credentials"
    assert facility.stats()["auth.invalid_client"] == 1


def test_unknown_scope_is_refused(facility):
    with pytest.raises(globus_sdk.AuthAPIError) as raised:
        auth_client(facility).oauth2_client_credentials_tokens("not-a-scope")
    assert raised.value.http_status == 400
    assert raised.value.raw_json["error"] == "invalid_scope"


def test_auth_base_url_from_environment(facility, monkeypatch):
    monkeypatch.setenv("GLOBUS_SDK_SERVICE_URL_AUTH", facility.url + "/")
    client = globus_sdk.ConfidentialAppAuthClient(LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET)
    tokens = client.oauth2_client_credentials_tokens(TransferScopes.all)
    assert "transfer.api.globus.org" in tokens.by_resource_server


def test_introspect_and_revoke(facility):
    client = auth_client(facility)
    token = client.oauth2_client_credentials_tokens(TransferScopes.all).by_resource_server["transfer.api.globus.org"][
        "access_token"
    ]

    info = client.oauth2_token_introspect(token)
    assert info["active"] is True
    assert info["client_id"] == LOCAL_CLIENT_ID
    assert info["aud"] == ["transfer.api.globus.org"]

    client.oauth2_revoke_token(token)
    assert client.oauth2_token_introspect(token)["active"] is False
    with pytest.raises(globus_sdk.TransferAPIError) as raised:
        transfer_client(facility, globus_sdk.AccessTokenAuthorizer(token)).get_submission_id()
    assert (raised.value.http_status, raised.value.code) == (401, "AuthenticationFailed")


@pytest.mark.parametrize("authorizer", [None, globus_sdk.AccessTokenAuthorizer("not-issued-here")])
def test_transfer_refuses_missing_or_foreign_tokens(facility, authorizer):
    with pytest.raises(globus_sdk.TransferAPIError) as raised:
        transfer_client(facility, authorizer).get_submission_id()
    assert raised.value.http_status == 401
    assert raised.value.code == "AuthenticationFailed"


def test_transfer_refuses_token_of_another_resource_server(facility):
    token = (
        auth_client(facility)
        .oauth2_client_credentials_tokens(ComputeScopes.all)
        .by_resource_server["funcx_service"]["access_token"]
    )
    with pytest.raises(globus_sdk.TransferAPIError) as raised:
        transfer_client(facility, globus_sdk.AccessTokenAuthorizer(token)).get_submission_id()
    assert raised.value.http_status == 401
    assert "transfer.api.globus.org" in raised.value.message


def test_expired_token_is_renewed_by_the_sdk(facility):
    authorizer = globus_sdk.ClientCredentialsAuthorizer(auth_client(facility), TransferScopes.all)
    # the SDK renews a token after a 401 through its retry loop: max_retries=0 would disable that too
    client = transfer_client(facility, authorizer, retries=1)
    client.get_submission_id()
    facility.inject("auth", "token_expired", match="GET /v0.10/submission_id")

    assert client.get_submission_id()["value"]

    stats = facility.stats()
    assert stats["auth.token_expired"] == 1
    assert stats["auth.token_issued"] == 2  # the SDK fetched a new token after the 401


def test_scope_parsing():
    assert split_scopes("a  b[c[d] *e] a") == ["a", "b"]
    with pytest.raises(ValueError):
        split_scopes("a[b")
    assert resource_server_of("openid") == "auth.globus.org"
    assert resource_server_of(str(TransferScopes.all)) == "transfer.api.globus.org"
    with pytest.raises(ValueError):
        resource_server_of("https://example.org/scopes/x/all")
