"""Globus Auth stand-in: the client-credentials token grant, introspection and revocation.

Speaks the wire protocol of ``auth.globus.org`` that ``ConfidentialAppAuthClient`` and
``ClientCredentialsAuthorizer`` use: ``POST /v2/oauth2/token`` (form body, HTTP Basic client auth) answers
one token per resource server (the first at the top level, the rest in ``other_tokens``). Issued tokens
live in ``state.tokens`` (in memory: after a facility restart clients get a 401 and the SDK's renewing
authorizers fetch a new token by themselves).

Other stand-ins check bearer tokens with :func:`require_token` and answer errors with :class:`ServiceError`
(installed on the app by :func:`install_error_handler`).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from facility.state import FacilityState

#: Lifetime of an access token, as Globus Auth issues them (48 h).
TOKEN_LIFETIME_SECONDS = 172800
AUTH_RESOURCE_SERVER = "auth.globus.org"
#: Services whose scopes are built on a client id but whose resource server is a name.
_CLIENT_ID_RESOURCE_SERVERS = {
    "facd7ccc-c5f4-42aa-916b-a0e270e2c2a9": "funcx_service",  # Globus Compute
    "eec9b274-0c81-4334-bdc2-54e90e689b9a": "flows.globus.org",  # Globus Flows
}
_OIDC_SCOPES = {"openid", "profile", "email"}
_URN_SCOPE = re.compile(r"^urn:globus:auth:scope:(?P<rs>[^:\s]+):(?P<name>\S+)$")
_URL_SCOPE = re.compile(r"^https://auth\.globus\.org/scopes/(?P<rs>[^/\s]+)/(?P<name>\S+)$")


@dataclass(frozen=True)
class Token:
    """An access token issued by this facility."""

    access_token: str
    client_id: str
    resource_server: str
    scope: str
    issued_at: int
    expires_at: int

    def active(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) < self.expires_at


class ServiceError(Exception):
    """An error answer in the calling service's own shape (raised from any stand-in route)."""

    def __init__(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def install_error_handler(app: FastAPI) -> None:
    """Render :class:`ServiceError` as its JSON body (idempotent)."""

    async def handle(_request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)

    app.add_exception_handler(ServiceError, handle)


def install_service(app: FastAPI, state: FacilityState) -> None:
    """What every Globus-like service needs on ``app``: :class:`ServiceError` rendered, and the token store
    ``state.tokens`` (shared: Auth issues the tokens the others check) (idempotent)."""
    install_error_handler(app)
    if not hasattr(state, "tokens"):
        state.tokens = {}


def request_id() -> str:
    """A Globus-like request id."""
    return secrets.token_urlsafe(7)[:9]


def transfer_error_body(code: str, message: str, resource: str) -> dict:
    """Globus Transfer's error shape (also fine for any service with ``code``/``message`` errors)."""
    return {"code": code, "message": message, "request_id": request_id(), "resource": resource}


def require_token(
    request: Request,
    state: FacilityState,
    *,
    resource_server: str | None = None,
    error_body: Callable[[str, str, str], dict] = transfer_error_body,
) -> Token:
    """The facility-issued token of ``Authorization: Bearer``; otherwise raise a 401 :class:`ServiceError`.

    ``resource_server`` (e.g. ``transfer.api.globus.org``) refuses tokens issued for another service, as the
    real services do. ``error_body(code, message, resource)`` shapes the 401 body (default: Transfer's
    ``{"code": "AuthenticationFailed", "message", "request_id", "resource"}``). Fault ``service="auth",
    kind="token_expired"`` (``match`` on ``METHOD path``) expires the presented token once.
    """
    resource = request.url.path

    def fail(message: str) -> ServiceError:
        return ServiceError(401, error_body("AuthenticationFailed", message, resource), {"WWW-Authenticate": "Bearer"})

    header = request.headers.get("authorization")
    if not header:
        raise fail("No Authorization header provided")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise fail("Authorization header must use the Bearer scheme")
    with state.lock:
        token = state.tokens.get(value.strip())
    if token is None or not token.active():
        raise fail("Token is not active")
    if resource_server is not None and token.resource_server != resource_server:
        raise fail(f"Token is not valid for {resource_server}")
    if state.take_fault("auth", "token_expired", f"{request.method} {resource}") is not None:
        with state.lock:
            state.tokens.pop(token.access_token, None)
        state.count("auth.token_expired")
        raise fail("Token is not active")
    return token


def split_scopes(scope_string: str) -> list[str]:
    """The top-level scopes of a Globus scope string (dependent scopes in ``[...]`` dropped)."""
    scopes: list[str] = []
    current: list[str] = []
    depth = 0
    for char in scope_string:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced ']' in scope string")
        elif depth == 0 and char.isspace():
            if current:
                scopes.append("".join(current))
                current = []
        elif depth == 0:
            current.append(char)
    if depth:
        raise ValueError("unbalanced '[' in scope string")
    if current:
        scopes.append("".join(current))
    return list(dict.fromkeys(scopes))


def resource_server_of(scope: str) -> str:
    """The resource server a scope belongs to (Globus's conventions); ValueError if not a scope."""
    if scope in _OIDC_SCOPES:
        return AUTH_RESOURCE_SERVER
    for pattern in (_URN_SCOPE, _URL_SCOPE):
        match = pattern.match(scope)
        if match:
            return _CLIENT_ID_RESOURCE_SERVERS.get(match["rs"], match["rs"])
    raise ValueError(f"not a Globus scope: {scope!r}")


def _oauth_error(status: int, error: str, description: str, code: str, title: str) -> ServiceError:
    """Globus Auth's OAuth error shape: RFC 6749 ``error`` plus Globus ``errors`` sub-documents."""
    error_id = str(uuid.uuid4())
    body = {
        "error": error,
        "error_description": description,
        "errors": [{"id": error_id, "code": code, "title": title, "detail": description, "status": str(status)}],
    }
    return ServiceError(status, body)


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str] | None:
    """Client id and secret from HTTP Basic (``client_secret_basic``) or the form (``client_secret_post``)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, sep, secret = decoded.partition(":")
        return (client_id, secret) if sep else None
    if "client_id" in form and "client_secret" in form:
        return form["client_id"], form["client_secret"]
    return None


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", errors="replace")
    return {key: values[-1] for key, values in parse_qs(body, keep_blank_values=True).items()}


def register(app: FastAPI, state: FacilityState) -> None:
    """Add the Globus Auth routes under ``/v2/oauth2``."""
    install_service(app, state)

    def authenticate_client(request: Request, form: dict[str, str]) -> str:
        credentials = _client_credentials(request, form)
        if credentials is None or credentials != (state.client_id, state.client_secret):
            state.count("auth.invalid_client")
            raise _oauth_error(401, "invalid_client", "Invalid client credentials", "UNAUTHORIZED", "Unauthorized")
        return credentials[0]

    def issue(client_id: str, resource_server: str, scopes: list[str]) -> dict:
        now = int(time.time())
        token = Token(
            access_token=secrets.token_urlsafe(32),
            client_id=client_id,
            resource_server=resource_server,
            scope=" ".join(scopes),
            issued_at=now,
            expires_at=now + TOKEN_LIFETIME_SECONDS,
        )
        with state.lock:
            state.tokens[token.access_token] = token
        state.count("auth.token_issued")
        return {
            "access_token": token.access_token,
            "expires_in": TOKEN_LIFETIME_SECONDS,
            "resource_server": resource_server,
            "scope": token.scope,
            "token_type": "Bearer",
        }

    @app.post("/v2/oauth2/token")
    async def token(request: Request) -> dict:
        form = await _form(request)
        client_id = authenticate_client(request, form)
        grant_type = form.get("grant_type", "")
        if grant_type != "client_credentials":
            raise _oauth_error(
                400,
                "unsupported_grant_type",
                f"Grant type {grant_type!r} is not supported here",
                "UNSUPPORTED_GRANT_TYPE",
                "Bad Request",
            )
        try:
            scopes = split_scopes(form.get("scope", ""))
            by_server: dict[str, list[str]] = {}
            for scope in scopes:
                by_server.setdefault(resource_server_of(scope), []).append(scope)
        except ValueError as exc:
            raise _oauth_error(400, "invalid_scope", str(exc), "INVALID_SCOPE", "Bad Request") from None
        if not by_server:
            raise _oauth_error(400, "invalid_scope", "No scope requested", "INVALID_SCOPE", "Bad Request")
        tokens = [issue(client_id, server, server_scopes) for server, server_scopes in by_server.items()]
        return {**tokens[0], "other_tokens": tokens[1:]}

    @app.post("/v2/oauth2/token/introspect")
    async def introspect(request: Request) -> dict:
        form = await _form(request)
        authenticate_client(request, form)
        with state.lock:
            found = state.tokens.get(form.get("token", ""))
        if found is None or not found.active():
            return {"active": False}
        return {
            "active": True,
            "token_type": "Bearer",
            "scope": found.scope,
            "client_id": found.client_id,
            "sub": found.client_id,
            "username": f"{found.client_id}@clients.auth.globus.org",
            "name": None,
            "email": None,
            "aud": [found.resource_server],
            "iss": "https://auth.globus.org",
            "exp": found.expires_at,
            "iat": found.issued_at,
            "nbf": found.issued_at,
            "identity_set": [found.client_id],
        }

    @app.post("/v2/oauth2/token/revoke")
    async def revoke(request: Request) -> dict:
        form = await _form(request)
        authenticate_client(request, form)
        with state.lock:
            state.tokens.pop(form.get("token", ""), None)
        return {"active": False}
