"""Globus Flows stand-in: register flows and run them, executing a subset of the Flows state language.

Routes (prefix ``/flows``, the ``flows_base_url`` of the ``globus_default`` connection), as globus-sdk's
``FlowsClient`` and ``SpecificFlowClient`` call them: ``POST /flows`` (create), ``GET /flows``,
``GET|PUT|DELETE /flows/{id}``, ``POST /flows/{id}/run``, ``GET /runs/{id}``, ``GET /runs/{id}/log``,
``POST /runs/{id}/cancel``. Flow management and run status take a ``flows.globus.org`` token; starting a
run takes the flow's own scope (``https://auth.globus.org/scopes/{flow_id}/flow_{flow_id_}_user``).

The executed subset of the state language: ``Action`` (``ActionUrl``, ``Parameters`` with ``"key.$"`` JSONPath
references, ``ResultPath``, ``WaitTime``, ``ExceptionOnActionFailure``), ``Pass`` (``Parameters``/``Result``,
``ResultPath``), ``Choice`` (``Choices`` with ``Variable`` and ``StringEquals``, ``NumericEquals``,
``BooleanEquals``, ``IsPresent``, ``NumericGreaterThan``, ``NumericLessThan``; ``Default``) and ``Fail``
(``Error``, ``Cause``); JSONPath ``$``, ``$.a.b``, ``$.a[0]``. Action providers, run in this process against
the facility's own stand-ins (same counters, same faults):

- ``https://transfer.actions.globus.org/transfer``: ``source_endpoint``, ``destination_endpoint``,
  ``DATA`` [``source_path``, ``destination_path``, ``recursive``], optional ``label``, ``sync_level``,
  ``verify_checksum``; ``https://transfer.actions.globus.org/delete``: ``endpoint``, ``DATA`` [``path``],
  ``recursive``, ``ignore_missing``. The action's ``details`` is the Transfer task document.
- ``https://compute.actions.globus.org/v3``: ``endpoint_id``, ``tasks`` [``function_id``, ``args``,
  ``kwargs``]; ``details.result`` is the list of the functions' return values.

A failed action fails the run (``ExceptionOnActionFailure`` defaults to true here) with an ``ActionFailed``
log entry whose ``details.cause`` is the provider's reason. Counters: ``flows.create``, ``flows.run``,
``flows.succeeded``, ``flows.failed``.
"""

from __future__ import annotations

import copy
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request

from include.facility.globus_auth import ServiceError, install_error_handler, request_id, require_token
from include.facility.state import FacilityState

RESOURCE_SERVER = "flows.globus.org"
TRANSFER_ACTIONS = {
    "https://transfer.actions.globus.org/transfer": "TRANSFER",
    "https://transfer.actions.globus.org/delete": "DELETE",
}
COMPUTE_ACTION = "https://compute.actions.globus.org/v3"
STATE_TYPES = frozenset({"Action", "Pass", "Choice", "Fail"})
DEFAULT_WAIT_TIME = 300
POLL_SECONDS = 0.2
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_COMPARATORS = {
    "StringEquals": lambda value, operand: isinstance(value, str) and value == operand,
    "NumericEquals": lambda value, operand: _number(value) and value == operand,
    "NumericGreaterThan": lambda value, operand: _number(value) and value > operand,
    "NumericLessThan": lambda value, operand: _number(value) and value < operand,
    "BooleanEquals": lambda value, operand: isinstance(value, bool) and value is operand,
}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def flows_error_body(code: str, message: str, resource: str) -> dict:
    """The Flows service's error shape (``FlowsAPIError`` reads ``error.code`` and ``error.detail``)."""
    return {"error": {"code": code, "detail": message}, "debug_id": request_id()}


def _error(status: int, code: str, message: str) -> ServiceError:
    return ServiceError(status, flows_error_body(code, message, ""))


class PathError(Exception):
    """A JSONPath that does not resolve in the state document."""


class StepFailed(Exception):
    """A state failed: ends the run FAILED; ``error`` and ``cause`` go into the log and run details."""

    def __init__(self, error: str, cause: str, details: dict | None = None) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause
        self.details = details or {}


# -- JSONPath subset ---------------------------------------------------------------------------------
def _parts(path: str) -> list[str | int]:
    if not isinstance(path, str) or not path.startswith("$"):
        raise PathError(f"{path!r} is not a JSONPath starting with '$'")
    rest, parts, position = path[1:], [], 0
    while position < len(rest):
        if rest[position] == ".":
            position += 1
        match = _PATH_PART.match(rest, position)
        if not match:
            raise PathError(f"cannot parse JSONPath {path!r}")
        parts.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        position = match.end()
    return parts


def get_path(document: Any, path: str) -> Any:
    value = document
    for part in _parts(path):
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            raise PathError(f"{path} is not present in the state document") from None
    return value


def set_path(document: dict, path: str, value: Any) -> dict:
    """``document`` with ``value`` stored at ``path`` (``$`` replaces the whole document)."""
    parts = _parts(path)
    if not parts:
        return value if isinstance(value, dict) else {"value": value}
    target = document
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value
    return document


def resolve(template: Any, document: Any) -> Any:
    """``Parameters`` with every ``"key.$": "$.path"`` replaced by ``"key": <value at path>``."""
    if isinstance(template, dict):
        resolved = {}
        for key, value in template.items():
            if key.endswith(".$"):
                resolved[key[:-2]] = get_path(document, value)
            else:
                resolved[key] = resolve(value, document)
        return resolved
    if isinstance(template, list):
        return [resolve(item, document) for item in template]
    return template


# -- definitions -------------------------------------------------------------------------------------
def validate_definition(definition: Any) -> None:
    """Refuse (400) a definition this stand-in cannot run, naming the state and the key."""

    def bad(message: str) -> ServiceError:
        return _error(400, "UNPROCESSABLE_ENTITY", f"invalid flow definition: {message}")

    if not isinstance(definition, dict) or not isinstance(definition.get("States"), dict) or not definition["States"]:
        raise bad("States must be a non-empty object")
    states = definition["States"]
    if definition.get("StartAt") not in states:
        raise bad(f"StartAt {definition.get('StartAt')!r} is not a state")
    for name, state in states.items():
        kind = state.get("Type") if isinstance(state, dict) else None
        if kind not in STATE_TYPES:
            raise bad(f"state {name!r}: Type {kind!r} is not one of {', '.join(sorted(STATE_TYPES))}")
        targets = [state.get("Next")] if state.get("Next") is not None else []
        if kind == "Choice":
            choices = state.get("Choices")
            if not isinstance(choices, list) or not choices:
                raise bad(f"state {name!r}: Choices must be a non-empty list")
            targets += [choice.get("Next") for choice in choices] + ([state["Default"]] if "Default" in state else [])
        elif kind != "Fail" and not (state.get("End") is True) ^ ("Next" in state):
            raise bad(f"state {name!r}: exactly one of Next and End: true")
        for target in targets:
            if target not in states:
                raise bad(f"state {name!r}: next state {target!r} does not exist")
        if kind == "Action":
            url = state.get("ActionUrl")
            if url not in TRANSFER_ACTIONS and url != COMPUTE_ACTION:
                raise bad(f"state {name!r}: ActionUrl {url!r} is not served by the local facility")
            if not isinstance(state.get("Parameters"), dict):
                raise bad(f"state {name!r}: Parameters must be an object")
        for key in ("ResultPath", "Variable"):
            if key in state:
                try:
                    _parts(state[key])
                except PathError as exc:
                    raise bad(f"state {name!r}: {key}: {exc}") from None


def flow_scope(flow_id: str) -> str:
    return f"https://auth.globus.org/scopes/{flow_id}/flow_{flow_id.replace('-', '_')}_user"


@dataclass
class Flow:
    id: str
    owner: str
    title: str
    definition: dict
    input_schema: dict
    subtitle: str = ""
    description: str = ""
    keywords: list = field(default_factory=list)
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)

    def document(self) -> dict:
        owner = f"urn:globus:auth:identity:{self.owner}"
        return {
            "id": self.id,
            "title": self.title,
            "subtitle": self.subtitle,
            "description": self.description,
            "keywords": self.keywords,
            "definition": self.definition,
            "input_schema": self.input_schema,
            "globus_auth_scope": flow_scope(self.id),
            "globus_auth_username": f"{self.id}@clients.auth.globus.org",
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "flow_owner": owner,
            "flow_administrators": [],
            "flow_starters": [],
            "flow_viewers": [],
            "run_managers": [],
            "run_monitors": [],
            "subscription_id": None,
            "user_role": "flow_owner",
        }


@dataclass
class Run:
    run_id: str
    flow: Flow
    owner: str
    body: dict
    label: str | None
    tags: list
    status: str = "ACTIVE"
    display_status: str = "ACTIVE"
    start_time: str = field(default_factory=_now)
    completion_time: str | None = None
    details: dict = field(default_factory=dict)
    log: list = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)

    def document(self) -> dict:
        owner = f"urn:globus:auth:identity:{self.owner}"
        return {
            "run_id": self.run_id,
            "action_id": self.run_id,
            "flow_id": self.flow.id,
            "flow_title": self.flow.title,
            "flow_last_updated": self.flow.updated_at,
            "status": self.status,
            "display_status": self.display_status,
            "start_time": self.start_time,
            "completion_time": self.completion_time,
            "label": self.label,
            "tags": self.tags,
            "details": self.details,
            "run_owner": owner,
            "created_by": owner,
            "run_managers": [],
            "run_monitors": [],
            "user_role": "run_owner",
            "manage_by": [],
            "monitor_by": [],
        }


# -- the engine --------------------------------------------------------------------------------------
class FlowsService:
    """Flows, runs, and one thread per run that walks its states."""

    def __init__(self, state: FacilityState) -> None:
        self.state = state
        self.lock = threading.RLock()
        self.flows: dict[str, Flow] = {}
        self.runs: dict[str, Run] = {}

    def flow(self, flow_id: str, client: str) -> Flow:
        with self.lock:
            found = self.flows.get(flow_id)
        if found is None or found.owner != client:
            raise _error(404, "NOT_FOUND", f"No flow with id '{flow_id}' visible to you")
        return found

    def run(self, run_id: str, client: str) -> Run:
        with self.lock:
            found = self.runs.get(run_id)
        if found is None or found.owner != client:
            raise _error(404, "NOT_FOUND", f"No run with id '{run_id}' visible to you")
        return found

    def _log(self, run: Run, code: str, description: str, **details: Any) -> None:
        with self.lock:
            run.log.append({"code": code, "description": description, "details": details, "time": _now()})

    def start(self, run: Run) -> None:
        threading.Thread(target=self._execute, args=(run,), name=f"flow-run-{run.run_id[:8]}", daemon=True).start()

    def _execute(self, run: Run) -> None:
        definition = run.flow.definition
        document = copy.deepcopy(run.body)
        self._log(run, "FlowStarted", "The Flow Instance started execution", input=copy.deepcopy(document))
        name = definition["StartAt"]
        try:
            while name is not None:
                if run.cancel.is_set():
                    self._end(run, "ENDED", "CANCELED", {"code": "FlowCanceled", "description": "Run was canceled"})
                    return
                state = definition["States"][name]
                document, name = self._step(run, name, state, document)
        except StepFailed as failed:
            self.state.count("flows.failed")
            details = {
                "code": "FlowFailed",
                "description": f"{failed.error}: {failed.cause}",
                "details": failed.details,
            }
            state_name = failed.details.get("state_name")
            self._log(
                run,
                "FlowFailed",
                "The Flow Instance failed",
                state_name=state_name,
                error=failed.error,
                cause=failed.cause,
            )
            self._end(run, "FAILED", "FAILED", details)
            return
        except Exception as exc:  # a bug here must still end the run, as the service would
            self.state.count("flows.failed")
            self._end(run, "FAILED", "FAILED", {"code": "FlowFailed", "description": f"{type(exc).__name__}: {exc}"})
            return
        self.state.count("flows.succeeded")
        self._log(run, "FlowSucceeded", "The Flow Instance completed successfully", output=copy.deepcopy(document))
        self._end(run, "SUCCEEDED", "SUCCEEDED", {"code": "FlowSucceeded", "output": document})

    def _end(self, run: Run, status: str, display: str, details: dict) -> None:
        with self.lock:
            run.status, run.display_status, run.details, run.completion_time = status, display, details, _now()

    def _step(self, run: Run, name: str, state: dict, document: dict) -> tuple[dict, str | None]:
        kind = state["Type"]
        self._log(run, f"{kind}Started", f"State {name} of type {kind} started", state_name=name, state_type=kind)
        try:
            if kind == "Fail":
                error, cause = state.get("Error", "States.Fail"), state.get("Cause", f"state {name} failed")
                raise StepFailed(error, cause, {"state_name": name})
            if kind == "Choice":
                target = self._choose(state, document)
                self._log(run, "ChoiceCompleted", f"State {name} chose {target}", state_name=name, next=target)
                return document, target
            if kind == "Pass":
                if "Parameters" in state:
                    value = resolve(state["Parameters"], document)
                else:
                    value = copy.deepcopy(state.get("Result", document))
                document = set_path(document, state.get("ResultPath", "$"), value)
                self._log(run, "PassCompleted", f"State {name} completed", state_name=name)
            else:
                document = self._action(run, name, state, document)
        except PathError as exc:
            raise StepFailed("States.ParameterPathFailure", f"state {name}: {exc}", {"state_name": name}) from None
        return document, (None if state.get("End") else state.get("Next"))

    def _choose(self, state: dict, document: dict) -> str:
        for choice in state["Choices"]:
            try:
                value, present = get_path(document, choice["Variable"]), True
            except PathError:
                value, present = None, False
            if "IsPresent" in choice and present is bool(choice["IsPresent"]):
                return choice["Next"]
            for operator, test in _COMPARATORS.items():
                if operator in choice and present and test(value, choice[operator]):
                    return choice["Next"]
        if "Default" not in state:
            raise StepFailed("States.NoChoiceMatched", "no choice matched and there is no Default")
        return state["Default"]

    def _action(self, run: Run, name: str, state: dict, document: dict) -> dict:
        parameters = resolve(state["Parameters"], document)
        url = state["ActionUrl"]
        deadline = time.monotonic() + float(state.get("WaitTime", DEFAULT_WAIT_TIME))
        self._log(run, "ActionStarted", f"State {name} of type Action started", state_name=name, action_url=url)
        try:
            if url == COMPUTE_ACTION:
                result = self._compute(run, parameters, deadline)
            else:
                result = self._transfer(run, TRANSFER_ACTIONS[url], parameters, deadline)
        except StepFailed as failed:
            failed.details = {"state_name": name, "action_url": url, **failed.details}
            self._log(run, "ActionFailed", f"State {name} of type Action failed", **failed.details, cause=failed.cause)
            if state.get("ExceptionOnActionFailure", True):
                raise
            result = {"status": "FAILED", "details": {"cause": failed.cause}}
        else:
            self._log(run, "ActionCompleted", f"State {name} of type Action completed", state_name=name)
        return set_path(document, state.get("ResultPath", "$"), result)

    def _wait(self, run: Run, done, deadline: float, what: str) -> None:
        while not done():
            if run.cancel.is_set():
                raise StepFailed("ActionCanceled", f"{what}: the run was canceled")
            if time.monotonic() >= deadline:
                raise StepFailed("ActionTimeout", f"{what} did not complete within the state's WaitTime")
            time.sleep(POLL_SECONDS)

    # -- Transfer action provider
    def _transfer(self, run: Run, kind: str, parameters: dict, deadline: float) -> dict:
        service = getattr(self.state, "transfer", None)
        if service is None:
            raise StepFailed("ActionFailedException", "the Transfer stand-in is not running")
        items = parameters.get("DATA")
        body = {
            key: value for key, value in parameters.items() if key not in ("DATA", "source_endpoint_id", "endpoint_id")
        }
        if kind == "TRANSFER":
            body["source_endpoint"] = parameters.get("source_endpoint") or parameters.get("source_endpoint_id")
            body["destination_endpoint"] = parameters.get("destination_endpoint") or parameters.get(
                "destination_endpoint_id"
            )
            item_type = "transfer_item"
        else:
            body["endpoint"] = parameters.get("endpoint") or parameters.get("endpoint_id")
            item_type = "delete_item"
        body.update(
            DATA_TYPE=kind.lower(),
            submission_id=str(uuid.uuid4()),
            DATA=[{"DATA_TYPE": item_type, **item} for item in items] if isinstance(items, list) else items,
        )
        try:
            _, result = service.submit(kind, body, run.owner, f"/v0.10/{kind.lower()}")
        except ServiceError as exc:
            raise StepFailed("ActionFailedException", f"{exc.body.get('code')}: {exc.body.get('message')}") from None
        task = service.task(result["task_id"], "/v0.10/task")
        what = f"Transfer task {task.task_id}"
        try:
            self._wait(run, lambda: task.status != "ACTIVE", deadline, what)
        except StepFailed:
            service.cancel(task, "/v0.10/task")
            raise
        with service.lock:
            document = task.document()
            events = list(task.events)
        if document["status"] != "SUCCEEDED":
            reason = document.get("fatal_error") or next((e for e in reversed(events) if e.get("is_error")), {})
            cause = f"{what} {document['status']}: {reason.get('code')}: {reason.get('description')}"
            raise StepFailed("ActionFailedException", cause, {"action_id": task.task_id})
        return {
            "action_id": task.task_id,
            "status": "SUCCEEDED",
            "display_status": "SUCCEEDED",
            "start_time": document["request_time"],
            "completion_time": document["completion_time"],
            "details": document,
        }

    # -- Compute action provider
    def _compute(self, run: Run, parameters: dict, deadline: float) -> dict:
        from include.facility.compute import Task as ComputeTask

        service = getattr(self.state, "compute", None)
        if service is None:
            raise StepFailed("ActionFailedException", "the Compute stand-in is not running")
        endpoint_id, tasks = parameters.get("endpoint_id"), parameters.get("tasks")
        if not isinstance(endpoint_id, str) or not isinstance(tasks, list) or not tasks:
            raise StepFailed("ActionFailedException", "Compute action needs endpoint_id and a non-empty tasks list")
        group_id, started = str(uuid.uuid4()), []
        for spec in tasks:
            function_id = spec.get("function_id") if isinstance(spec, dict) else None
            with self.state.lock:
                function = service.functions.get(str(function_id))
            if function is None:
                raise StepFailed("ActionFailedException", f"FUNCTION_NOT_FOUND: Function {function_id} not found")
            if function.owner != run.owner:
                raise StepFailed("ActionFailedException", f"FUNCTION_ACCESS_FORBIDDEN: Function {function_id}")
            payload = service.pool().submit(pack_arguments, spec.get("args") or [], spec.get("kwargs") or {}).result()
            task = ComputeTask(str(uuid.uuid4()), function.function_uuid, function.function_name, endpoint_id, group_id)
            with self.state.lock:
                service.tasks[task.task_id] = task
                service.payloads[task.task_id] = payload
                service.task_groups.setdefault(group_id, []).append(task.task_id)
            self.state.count("compute.task_created")
            service.start(task, function)
            started.append(task)
        for task in started:
            self._wait(run, lambda t=task: t.status in ("success", "failed"), deadline, f"Compute task {task.task_id}")
        failed = [task for task in started if task.status == "failed"]
        if failed:
            text = (failed[0].exception or "").strip()
            last = text.splitlines()[-1] if text else "no exception text"
            cause = f"Compute task {failed[0].task_id} ({failed[0].function_name}) failed: {last}"
            raise StepFailed("ActionFailedException", cause, {"action_id": group_id, "exception": text})
        results = [service.pool().submit(unpack_result, task.result).result() for task in started]
        return {
            "action_id": group_id,
            "status": "SUCCEEDED",
            "display_status": "SUCCEEDED",
            "details": {"result": results, "task_ids": [task.task_id for task in started]},
        }


def pack_arguments(args: list, kwargs: dict) -> str:
    """The SDK's task payload for ``(args, kwargs)`` (runs in a Compute worker: the SDK stays out of here)."""
    from globus_compute_sdk.serialize import ComputeSerializer

    serde = ComputeSerializer()
    return serde.pack_buffers([serde.serialize(tuple(args)), serde.serialize(dict(kwargs))])


def unpack_result(serialized: str) -> Any:
    """A task's deserialised return value (runs in a Compute worker)."""
    from globus_compute_sdk.serialize import ComputeSerializer

    return ComputeSerializer().deserialize(serialized)


# -- routes ------------------------------------------------------------------------------------------
def register(app: FastAPI, state: FacilityState) -> None:
    """Add the Flows routes under ``/flows``."""
    install_error_handler(app)
    if not hasattr(state, "tokens"):
        state.tokens = {}
    service = FlowsService(state)
    state.flows = service

    def client(request: Request) -> str:
        """Flow management takes a ``flows.globus.org`` token."""
        return require_token(request, state, resource_server=RESOURCE_SERVER, error_body=flows_error_body).client_id

    async def body_of(request: Request) -> dict:
        try:
            body = await request.json()
        except ValueError:
            raise _error(400, "BAD_REQUEST", "Request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _error(400, "BAD_REQUEST", "Request body must be a JSON object")
        return body

    def checked(body: dict, existing: Flow | None = None) -> dict:
        fields = {
            "title": body.get("title", existing.title if existing else None),
            "definition": body.get("definition", existing.definition if existing else None),
            "input_schema": body.get("input_schema", existing.input_schema if existing else None),
        }
        if not isinstance(fields["title"], str) or not 1 <= len(fields["title"]) <= 128:
            raise _error(400, "UNPROCESSABLE_ENTITY", "title must be 1 to 128 characters")
        validate_definition(fields["definition"])
        if not isinstance(fields["input_schema"], dict):
            raise _error(400, "UNPROCESSABLE_ENTITY", "input_schema must be a JSON Schema object")
        for key in ("subtitle", "description"):
            if isinstance(body.get(key), str):
                fields[key] = body[key]
        if isinstance(body.get("keywords"), list):
            fields["keywords"] = body["keywords"]
        return fields

    @app.post("/flows/flows", status_code=201)
    async def create_flow(request: Request) -> dict:
        owner = client(request)
        flow = Flow(id=str(uuid.uuid4()), owner=owner, **checked(await body_of(request)))
        with service.lock:
            service.flows[flow.id] = flow
        state.count("flows.create")
        return flow.document()

    @app.get("/flows/flows")
    def list_flows(request: Request, marker: str | None = None, per_page: int = 20) -> dict:
        owner = client(request)
        with service.lock:
            mine = [flow.document() for flow in service.flows.values() if flow.owner == owner]
        start = int(marker or 0)
        page = mine[start : start + max(1, min(per_page, 50))]
        more = start + len(page) < len(mine)
        return {
            "flows": page,
            "limit": per_page,
            "has_next_page": more,
            "marker": str(start + len(page)) if more else None,
        }

    @app.get("/flows/flows/{flow_id}")
    def get_flow(flow_id: str, request: Request) -> dict:
        return service.flow(flow_id, client(request)).document()

    @app.put("/flows/flows/{flow_id}")
    async def update_flow(flow_id: str, request: Request) -> dict:
        flow = service.flow(flow_id, client(request))
        fields = checked(await body_of(request), flow)
        with service.lock:
            for key, value in fields.items():
                setattr(flow, key, value)
            flow.updated_at = _now()
        return flow.document()

    @app.delete("/flows/flows/{flow_id}")
    def delete_flow(flow_id: str, request: Request) -> dict:
        flow = service.flow(flow_id, client(request))
        with service.lock:
            service.flows.pop(flow.id, None)
        return flow.document()

    @app.post("/flows/flows/{flow_id}/run", status_code=201)
    async def run_flow(flow_id: str, request: Request) -> dict:
        token = require_token(request, state, error_body=flows_error_body)
        with service.lock:
            flow = service.flows.get(flow_id)
        if flow is None or flow.owner != token.client_id:
            raise _error(404, "NOT_FOUND", f"No flow with id '{flow_id}' visible to you")
        if token.resource_server != flow_id:
            raise _error(403, "FORBIDDEN", f"Starting a run needs a token for the flow's scope {flow_scope(flow_id)}")
        body = await body_of(request)
        state.count("flows.run")
        run_input = body.get("body")
        if not isinstance(run_input, dict):
            raise _error(400, "BAD_REQUEST", "body: the run input must be a JSON object")
        _validate_input(run_input, flow.input_schema)
        tags = body.get("tags") or []
        run = Run(str(uuid.uuid4()), flow, token.client_id, run_input, body.get("label"), tags)
        with service.lock:
            service.runs[run.run_id] = run
            document = run.document()  # as the service answers: the run has just started
        service.start(run)
        return document

    @app.get("/flows/runs/{run_id}")
    def get_run(run_id: str, request: Request) -> dict:
        run = service.run(run_id, _any_flow_token(request))
        with service.lock:
            return run.document()

    @app.get("/flows/runs/{run_id}/log")
    def run_log(
        run_id: str, request: Request, limit: int = 10, reverse_order: bool = False, marker: str | None = None
    ) -> dict:
        run = service.run(run_id, _any_flow_token(request))
        with service.lock:
            entries = list(reversed(run.log)) if reverse_order else list(run.log)
        start = int(marker or 0)
        page = entries[start : start + max(1, min(limit, 100))]
        more = start + len(page) < len(entries)
        return {
            "entries": page,
            "limit": limit,
            "has_next_page": more,
            "marker": str(start + len(page)) if more else None,
        }

    @app.post("/flows/runs/{run_id}/cancel")
    def cancel_run(run_id: str, request: Request) -> dict:
        run = service.run(run_id, _any_flow_token(request))
        run.cancel.set()
        with service.lock:
            return run.document()

    def _any_flow_token(request: Request) -> str:
        """Run status takes a ``flows.globus.org`` token or the run's flow's own token."""
        return require_token(request, state, error_body=flows_error_body).client_id


def _validate_input(run_input: dict, schema: dict) -> None:
    import jsonschema

    try:
        jsonschema.validate(run_input, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(part) for part in exc.absolute_path) or "(root)"
        raise _error(
            400, "UNPROCESSABLE_ENTITY", f"input does not match the flow's input_schema at {where}: {exc.message}"
        ) from None
    except jsonschema.SchemaError as exc:
        raise _error(400, "UNPROCESSABLE_ENTITY", f"the flow's input_schema is invalid: {exc.message}") from None


def _page_marker(start: int, count: int, total: int) -> dict:
    more = start + count < total
    return {"has_next_page": more, "marker": str(start + count) if more else None}
