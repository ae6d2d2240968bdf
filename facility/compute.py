"""Globus Compute stand-in: the REST subset globus-compute-sdk 4.19 uses, with a local worker pool.

Routes (the SDK's ``ComputeClientV2``/``V3`` paths): ``GET /v2/version``, ``POST /v3/functions``,
``GET /v2/functions/{id}``, ``POST /v3/endpoints/{ep}/submit``, ``GET /v2/tasks/{id}``,
``POST /v2/batch_status``, ``GET /v2/taskgroup/{id}``, ``GET /v2/endpoints/{ep}[/status]``.

Endpoints: the local profile registers the Compute endpoint ids of include/config/sites.yaml; any other id
answers 404 ``EndpointNotFound`` (submit, status, endpoint), as the service does for an id it does not know.
A function registered by another client answers 403 ``FunctionNotPermitted``, an unknown one 404
``FunctionNotFound``. While an endpoint is offline its status says so (``offline``, no workers) and its tasks
stay ``waiting-for-ep`` until it is back.

Every registered endpoint is served by one pool of spawned worker processes on this machine: a task's
function and arguments are deserialised there with the SDK's own ``ComputeSerializer`` and the result
(or the remote traceback, as text) is sent back as the real endpoint does. The facility process never
imports the SDK (it starts a non-daemon thread); only the workers do.

Task groups as the service keeps them: a submit without ``task_group_id`` opens a new group, a submit naming
a group the service does not know is refused (404 ``TASK_GROUP_NOT_FOUND``), and ``GET /v2/taskgroup/{id}``
lists a group's tasks (``{"taskgroup_id", "create_websockets_queue", "tasks": [{"id", "created_at"}]}``, the
shape ``Executor.reload_tasks`` reads). Results are serialised as the endpoint does: with the submit's
``result_serializers`` in order (``ComputeSerializer.serialize_from_list``), else the SDK's default (dill);
a result none of them can serialise fails the task.

Counters: ``compute.register``, ``compute.submit`` (requests), ``compute.task_created`` and
``compute.task_created.<function name>``, ``compute.executed`` and ``compute.executed.<function name>`` (runs
that reached the function). Faults (``service="compute"``, ``match`` on the function name): ``raise`` (the
function raises ``RuntimeError(message)`` at the endpoint), ``slow`` (sleep ``params.seconds``, default 5,
before running), ``crash`` (the worker process dies, as a lost worker), ``forge_result`` (the task succeeds
with ``params.payload`` as its serialised result, as from a compromised endpoint: e.g. a dill payload),
``lost_submit`` (the submit that creates a task of that function is performed and answered ``status`` instead,
as a gateway timing out; the generic ``lost_response`` matches ``METHOD path`` and so every submit alike).
Endpoint faults (``match`` on the endpoint id): ``endpoint_offline`` (from the first request that names the
endpoint, it is offline for ``params.seconds``, default 5), ``endpoint_forbidden`` (403 ``EndpointAccessForbidden``:
the endpoint exists but this client may not use it; ``times`` requests); ``function_not_permitted`` (``match`` on
the function name: 403 ``FunctionNotPermitted``, as from an endpoint whose allowed-functions list leaves it out).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import traceback
import uuid
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import FastAPI, Request

from facility.globus_auth import ServiceError, install_service, request_id, require_token
from facility.state import FacilityState
from include.sites import load_sites

#: Resource server of Globus Compute tokens (scope ``https://auth.globus.org/scopes/facd7ccc-.../all``).
RESOURCE_SERVER = "funcx_service"
API_VERSION = "1.0.0"
#: The oldest SDK and endpoint the service admits (``Client.version_check``).
MIN_SDK_VERSION = "2.0.0"
MIN_EP_VERSION = "2.0.0"
#: Worker processes running submitted functions (``FACILITY_COMPUTE_WORKERS``).
DEFAULT_WORKERS = 2

T = TypeVar("T")


def compute_error_body(code: str, message: str, resource: str) -> dict:
    """The Compute service's error shape."""
    return {"code": code, "message": message, "reason": message, "request_id": request_id(), "resource": resource}


def _error(status: int, code: str, message: str, resource: str) -> ServiceError:
    return ServiceError(status, compute_error_body(code, message, resource))


@dataclass
class Function:
    function_uuid: str
    function_name: str
    function_code: str
    description: str | None
    metadata: dict
    owner: str

    def document(self) -> dict[str, Any]:
        """The function as ``GET /v2/functions/{function_id}`` answers it: its fields but its owner."""
        return {name: value for name, value in asdict(self).items() if name != "owner"}


@dataclass
class Task:
    task_id: str
    function_uuid: str
    function_name: str
    endpoint_id: str
    task_group_id: str
    result_serializers: list[str] | None = None
    status: str = "waiting-for-ep"
    result: str | None = None
    exception: str | None = None
    created_t: float = field(default_factory=time.time)
    completion_t: float | None = None
    details: dict = field(default_factory=dict)
    future: Future | None = None

    def document(self) -> dict[str, Any]:
        """What ``GET /v2/tasks/{id}`` answers."""
        status = self.status
        if status == "waiting-for-ep" and self.future is not None and self.future.running():
            status = "running"
        doc: dict[str, Any] = {"task_id": self.task_id, "status": status, "task_group_id": self.task_group_id}
        if status in ("success", "failed"):
            doc["completion_t"] = str(self.completion_t)
            doc["details"] = {"endpoint_id": self.endpoint_id, **self.details}
        if status == "success":
            doc["result"] = self.result
        elif status == "failed":
            doc["exception"] = self.exception
        return doc


def execute_task(
    function_code: str, payload: str, fault: dict | None, result_serializers: list[str] | None = None
) -> dict[str, Any]:
    """Run one task in a worker process; returns ``{"result"}`` or ``{"exception"}`` (traceback text)."""
    import platform

    import dill
    import globus_compute_sdk
    from globus_compute_sdk.serialize import ComputeSerializer

    details = {
        "python_version": platform.python_version(),
        "dill_version": dill.__version__,
        "os": platform.platform(),
        "globus_compute_sdk_version": globus_compute_sdk.__version__,
        "task_transitions": {"execution-start": time.time()},
    }
    serde = ComputeSerializer()
    try:
        function, args, kwargs = serde.unpack_and_deserialize(function_code + payload)
    except Exception:
        return {"exception": traceback.format_exc(), "ran": False, "details": details}
    kind = (fault or {}).get("kind")
    if kind == "slow":
        time.sleep(float((fault or {}).get("params", {}).get("seconds", 5)))
    elif kind == "crash":
        os._exit(70)
    try:
        if kind == "raise":
            raise RuntimeError((fault or {}).get("message") or "injected fault")
        result = function(*args, **kwargs)
    except BaseException as exc:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next))
        return {"exception": text, "ran": True, "details": details}
    details["task_transitions"]["execution-end"] = time.time()
    if kind == "forge_result":  # a compromised endpoint answers whatever it likes
        return {"result": str((fault or {}).get("params", {}).get("payload", "")), "ran": True, "details": details}
    try:
        if result_serializers:
            return {"result": serde.serialize_from_list(result, result_serializers), "ran": True, "details": details}
        return {"result": serde.serialize(result), "ran": True, "details": details}
    except Exception:
        return {"exception": "Result serialization failed:\n" + traceback.format_exc(), "ran": True, "details": details}


class ComputeService:
    """Functions, task groups and tasks of the stand-in, and the worker pool that runs them."""

    def __init__(self, state: FacilityState, workers: int | None = None) -> None:
        self.state = state
        self.workers = workers or int(os.environ.get("FACILITY_COMPUTE_WORKERS", DEFAULT_WORKERS))
        self.functions: dict[str, Function] = {}
        self.task_groups: dict[str, list[str]] = {}
        self.tasks: dict[str, Task] = {}
        self.payloads: dict[str, str] = {}
        #: The Compute endpoints of the local profile (include/config/sites.yaml).
        self.endpoints = {s.compute_endpoint_id for s in load_sites().sites.values() if s.compute_endpoint_id}
        self.offline_until: dict[str, float] = {}
        self.waiting: dict[str, list[tuple[Task, Function]]] = {}
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def pool(self) -> ProcessPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
            return self._pool

    def _drop_broken_pool(self, broken: ProcessPoolExecutor) -> None:
        with self._pool_lock:
            if self._pool is broken:
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def check_endpoint(self, endpoint_id: str, resource: str) -> None:
        """404 for an id the local profile does not register, 403 for an injected ``endpoint_forbidden``."""
        if endpoint_id not in self.endpoints:
            raise _error(404, "EndpointNotFound", f"Endpoint {endpoint_id} could not be found", resource)
        if self.state.take_fault("compute", "endpoint_forbidden", endpoint_id) is not None:
            self.state.count("fault.compute.endpoint_forbidden")
            raise _error(
                403, "EndpointAccessForbidden", f"Endpoint {endpoint_id} is not accessible to this user", resource
            )
        fault = self.state.take_fault("compute", "endpoint_offline", endpoint_id)
        if fault is not None:
            self.state.count("fault.compute.endpoint_offline")
            with self.state.lock:
                self.offline_until[endpoint_id] = time.monotonic() + float(fault.params.get("seconds", 5))
            threading.Timer(float(fault.params.get("seconds", 5)), self.release, args=(endpoint_id,)).start()

    def online(self, endpoint_id: str) -> bool:
        with self.state.lock:
            return time.monotonic() >= self.offline_until.get(endpoint_id, 0.0)

    def release(self, endpoint_id: str) -> None:
        """The endpoint is back: start the tasks that waited for it."""
        with self.state.lock:
            waiting = self.waiting.pop(endpoint_id, [])
        for task, function in waiting:
            self.start(task, function)

    def start_or_wait(self, task: Task, function: Function) -> None:
        if self.online(task.endpoint_id):
            self.start(task, function)
        else:
            with self.state.lock:
                self.waiting.setdefault(task.endpoint_id, []).append((task, function))

    def start(self, task: Task, function: Function) -> None:
        fault = self.state.take_fault("compute", "raise", function.function_name)
        fault = fault or self.state.take_fault("compute", "slow", function.function_name)
        fault = fault or self.state.take_fault("compute", "crash", function.function_name)
        fault = fault or self.state.take_fault("compute", "forge_result", function.function_name)
        fault_doc = None if fault is None else {"kind": fault.kind, "message": fault.message, "params": fault.params}
        if fault is not None:
            self.state.count(f"fault.compute.{fault.kind}")
        payload = self.payloads.pop(task.task_id)
        pool = self.pool()
        try:
            future = pool.submit(execute_task, function.function_code, payload, fault_doc, task.result_serializers)
        except (BrokenProcessPool, RuntimeError):
            self._drop_broken_pool(pool)
            pool = self.pool()
            future = pool.submit(execute_task, function.function_code, payload, fault_doc, task.result_serializers)
        task.future = future
        future.add_done_callback(lambda f: self._finish(task, f, pool))

    def _finish(self, task: Task, future: Future, pool: ProcessPoolExecutor) -> None:
        try:
            outcome = future.result()
        except BrokenProcessPool:
            outcome = {"exception": "parsl.executors.high_throughput.errors.WorkerLost: worker process died"}
            self._drop_broken_pool(pool)
        except BaseException as exc:  # cancelled at shutdown, or a pool failure
            outcome = {"exception": f"{type(exc).__name__}: {exc}"}
        if outcome.get("ran"):
            self.state.count("compute.executed")
            self.state.count(f"compute.executed.{task.function_name}")
        with self.state.lock:
            task.completion_t = time.time()
            task.details = outcome.get("details") or {}
            if "result" in outcome:
                task.status, task.result = "success", outcome["result"]
            else:
                task.status, task.exception = "failed", outcome["exception"]
            task.future = None


def _created_at(task: Task) -> str:
    """A task's creation time as the task group document writes it (``2021-05-05T15:00:00.000000``)."""
    return datetime.fromtimestamp(task.created_t, UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def _known(table: dict[str, T], key: str, code: str, what: str, resource: str) -> T:
    """``table[key]`` (read under the state's lock), else the service's 404 ``code``: "<what> <key> not found"."""
    found = table.get(key)
    if found is None:
        raise _error(404, code, f"{what} {key} not found", resource)
    return found


def _uuid(value: str, what: str, resource: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise _error(400, "BAD_REQUEST", f"{what} {value!r} is not a UUID", resource) from None


def register(app: FastAPI, state: FacilityState) -> None:
    """Add the Globus Compute routes (``/v2/...``, ``/v3/...``)."""
    install_service(app, state)
    service = ComputeService(state)
    state.compute = service
    app.router.on_shutdown.append(service.shutdown)

    def authorize(request: Request):
        return require_token(request, state, resource_server=RESOURCE_SERVER, error_body=compute_error_body)

    @app.get("/v2/version")
    def version() -> dict:
        return {
            "api": API_VERSION,
            "min_sdk_version": MIN_SDK_VERSION,
            "min_ep_version": MIN_EP_VERSION,
            "compute": "facility",
        }

    @app.post("/v3/functions")
    async def register_function(request: Request) -> dict:
        token = authorize(request)
        body = await request.json()
        resource = request.url.path
        for key in ("function_name", "function_code"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise _error(400, "BAD_REQUEST", f"{key}: missing", resource)
        if body.get("serialized", True) is not True:
            raise _error(400, "BAD_REQUEST", "the facility runs serialized functions only", resource)
        function = Function(
            function_uuid=str(uuid.uuid4()),
            function_name=body["function_name"],
            function_code=body["function_code"],
            description=body.get("description"),
            metadata=body.get("meta") or {},
            owner=token.client_id,
        )
        with state.lock:
            service.functions[function.function_uuid] = function
        state.count("compute.register")
        return {"function_uuid": function.function_uuid}

    def document(
        request: Request, table: dict[str, Function] | dict[str, Task], key: str, code: str, what: str
    ) -> dict:
        """For an authorised caller, ``table[key]``'s document (read under the lock), else the service's 404."""
        authorize(request)
        with state.lock:
            return _known(table, key, code, what, request.url.path).document()

    @app.get("/v2/functions/{function_id}")
    def get_function(function_id: str, request: Request) -> dict:
        return document(request, service.functions, function_id, "FunctionNotFound", "Function")

    @app.post("/v3/endpoints/{endpoint_id}/submit")
    async def submit(endpoint_id: str, request: Request) -> dict:
        token = authorize(request)
        resource = request.url.path
        endpoint_id = _uuid(endpoint_id, "endpoint id", resource)
        body = await request.json()
        state.count("compute.submit")
        service.check_endpoint(endpoint_id, resource)
        tasks_in = body.get("tasks")
        if not isinstance(tasks_in, dict) or not tasks_in:
            raise _error(400, "BAD_REQUEST", "tasks: missing or empty", resource)
        with state.lock:
            functions = {}
            for function_id, payloads in tasks_in.items():
                function = _known(service.functions, function_id, "FunctionNotFound", "Function", resource)
                allowlisted = state.take_fault("compute", "function_not_permitted", function.function_name) is None
                if function.owner != token.client_id or not allowlisted:
                    raise _error(403, "FunctionNotPermitted", f"Function {function_id} is not permitted here", resource)
                if not isinstance(payloads, list) or not all(isinstance(p, str) for p in payloads):
                    raise _error(400, "BAD_REQUEST", f"tasks.{function_id}: expected a list of strings", resource)
                functions[function_id] = function
            serializers = body.get("result_serializers")
            if serializers is not None and (
                not isinstance(serializers, list) or not all(isinstance(x, str) for x in serializers)
            ):
                raise _error(400, "BAD_REQUEST", "result_serializers: expected a list of import paths", resource)
            group_id = body.get("task_group_id")
            if group_id is not None:
                _known(service.task_groups, group_id, "TASK_GROUP_NOT_FOUND", "Task group", resource)
            group_id = group_id or str(uuid.uuid4())
            group = service.task_groups.setdefault(group_id, [])
            created: dict[str, list[str]] = {}
            new_tasks = []
            for function_id, payloads in tasks_in.items():
                function = functions[function_id]
                for payload in payloads:
                    task = Task(
                        str(uuid.uuid4()), function_id, function.function_name, endpoint_id, group_id, serializers
                    )
                    service.tasks[task.task_id] = task
                    service.payloads[task.task_id] = payload
                    group.append(task.task_id)
                    created.setdefault(function_id, []).append(task.task_id)
                    new_tasks.append((task, function))
        lost = None
        for task, function in new_tasks:
            state.count("compute.task_created")
            state.count(f"compute.task_created.{function.function_name}")
            service.start_or_wait(task, function)
            lost = lost or state.take_fault("compute", "lost_submit", function.function_name)
        if lost is not None:  # performed; the answer is lost on the way back
            state.count(f"fault.lost_response.{lost.status}")
            raise ServiceError(
                lost.status, {"code": "InjectedFault", "message": lost.message, "request_id": "facility"}
            )
        return {"request_id": request_id(), "task_group_id": group_id, "endpoint_id": endpoint_id, "tasks": created}

    @app.get("/v2/tasks/{task_id}")
    def get_task(task_id: str, request: Request) -> dict:
        return document(request, service.tasks, task_id, "TASK_NOT_FOUND", "Task")

    @app.post("/v2/batch_status")
    async def batch_status(request: Request) -> dict:
        authorize(request)
        body = await request.json()
        task_ids = body.get("task_ids")
        if not isinstance(task_ids, list):
            raise _error(400, "BAD_REQUEST", "task_ids: expected a list", request.url.path)
        with state.lock:
            results = {tid: service.tasks[tid].document() for tid in task_ids if tid in service.tasks}
        return {"response": "batch", "results": results}

    @app.get("/v2/taskgroup/{task_group_id}")
    def get_task_group(task_group_id: str, request: Request) -> dict:
        authorize(request)
        with state.lock:
            group = _known(service.task_groups, task_group_id, "TASK_GROUP_NOT_FOUND", "Task group", request.url.path)
            return {
                "taskgroup_id": task_group_id,
                "create_websockets_queue": False,
                "tasks": [{"id": t, "created_at": _created_at(service.tasks[t])} for t in group],
            }

    @app.get("/v2/endpoints/{endpoint_id}/status")
    def endpoint_status(endpoint_id: str, request: Request) -> dict:
        authorize(request)
        endpoint_id = _uuid(endpoint_id, "endpoint id", request.url.path)
        service.check_endpoint(endpoint_id, request.url.path)
        if not service.online(endpoint_id):
            with state.lock:
                pending = len(service.waiting.get(endpoint_id, []))
            details = {"total_workers": 0, "idle_workers": 0, "pending_tasks": pending, "outstanding_tasks": pending}
            return {"status": "offline", "details": {**details, "managers": 0}}
        with state.lock:
            running = sum(1 for t in service.tasks.values() if t.endpoint_id == endpoint_id and t.future is not None)
        details = {
            "total_workers": service.workers,
            "idle_workers": max(service.workers - running, 0),
            "pending_tasks": max(running - service.workers, 0),
            "outstanding_tasks": running,
            "managers": 1,
        }
        return {"status": "online", "details": details}

    @app.get("/v2/endpoints/{endpoint_id}")
    def endpoint(endpoint_id: str, request: Request) -> dict:
        authorize(request)
        endpoint_id = _uuid(endpoint_id, "endpoint id", request.url.path)
        service.check_endpoint(endpoint_id, request.url.path)
        return {
            "uuid": endpoint_id,
            "name": "facility",
            "display_name": "local facility",
            "status": "online" if service.online(endpoint_id) else "offline",
            "hostname": "127.0.0.1",
            "description": "local facility worker pool",
            "endpoint_config": None,
            "endpoint_version": None,
            "ip_address": "127.0.0.1",
            "local_user": None,
            "multi_user": False,
            "public": False,
            "sdk_version": None,
            "subscription_uuid": None,
            "user_config_schema": None,
            "user_config_template": None,
        }
