"""The local facility's HTTP application: admin routes, fault injection and the stand-in services."""

from __future__ import annotations

import dataclasses
import hmac
import importlib
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from facility.state import FacilityState, Fault

log = logging.getLogger(__name__)

#: Stand-in modules; each has ``register(app, state)``. Missing ones are skipped until they exist.
SERVICE_MODULES = (
    "facility.globus_auth",
    "facility.transfer",
    "facility.compute",
    "facility.sfapi",
    "facility.scicat",
)


#: Admin routes anyone on the host may call (liveness only: no state, no secret).
OPEN_ADMIN_ROUTES = frozenset({"/_facility/health"})


def create_app(root: Path, *, admin_token: str) -> FastAPI:
    """Build the facility app serving the local profile under ``root``; ``/_facility/*`` (but ``health``)
    answers 401 unless the request carries ``Authorization: Bearer <admin_token>``."""
    if not isinstance(admin_token, str) or len(admin_token) < 16:
        raise ValueError("the facility needs an admin token of at least 16 characters")
    app = FastAPI(title="ALS local facility", docs_url=None, redoc_url=None)
    state = FacilityState(root)
    app.state.facility = state
    expected = f"Bearer {admin_token}".encode()

    @app.middleware("http")
    async def inject_http_faults(request: Request, call_next):
        if request.url.path.startswith("/_facility") and request.url.path not in OPEN_ADMIN_ROUTES:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                state.count("admin.unauthorized")
                return JSONResponse({"message": "facility admin token required"}, status_code=401)
        if not request.url.path.startswith("/_facility"):
            service, subject = _service_of(request.url.path), f"{request.method} {request.url.path}"
            fault = state.take_fault(service, "http", subject)
            if fault is not None:
                state.count(f"fault.http.{fault.status}")
                return _fault_answer(fault)
            fault = state.take_fault(service, "lost_response", subject)
            if fault is not None:  # the request is performed; its answer is lost on the way back
                response = await call_next(request)
                async for _chunk in response.body_iterator:
                    pass
                state.count(f"fault.lost_response.{fault.status}")
                return _fault_answer(fault)
        return await call_next(request)

    @app.get("/_facility/health")
    def health() -> dict:
        return {"status": "ok", "root": str(state.root), "services": app.state.services}

    @app.get("/_facility/stats")
    def stats() -> dict:
        with state.lock:
            return {"counters": dict(state.counters)}

    @app.post("/_facility/faults")
    def add_fault(body: dict) -> dict:
        fields = {f.name for f in dataclasses.fields(Fault)} - {"hits"}
        unknown = set(body) - fields
        if unknown:
            return JSONResponse({"message": f"unknown fault field(s): {sorted(unknown)}"}, status_code=400)
        state.add_fault(Fault(**body))
        return {"faults": len(state.faults)}

    @app.post("/_facility/reset")
    def reset() -> dict:
        state.reset()
        return {"status": "reset"}

    app.state.services = []
    for name in SERVICE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(app, state)
        app.state.services.append(name.rsplit(".", 1)[-1])
    return app


def _fault_answer(fault: Fault) -> JSONResponse:
    """The error answer of an injected ``http`` or ``lost_response`` fault."""
    headers = {"Retry-After": "0"} if fault.status == 429 else {}
    body = {"code": "InjectedFault", "message": fault.message, "request_id": "facility"}
    return JSONResponse(body, status_code=fault.status, headers=headers)


def _service_of(path: str) -> str:
    """Which stand-in a request path belongs to, for matching faults by service."""
    if path.startswith("/v0.10/"):
        return "transfer"
    if path.startswith("/v2/oauth2"):
        return "auth"
    if path.startswith(("/v2/", "/v3/")):
        return "compute"
    if path.startswith("/sfapi"):
        return "sfapi"
    if path.startswith("/scicat"):
        return "scicat"
    return "other"
