"""Failure notifications of a DAG run: a mail through the SMTP provider's notifier, and an optional chat post.

Both are DAG-level ``on_failure_callback`` notifiers (``dag_defaults(notify=True)`` attaches them). In
Airflow 3 such a callback runs in the dag-processor, not on a worker, with the context the scheduler sent
(``dag``, ``run_id``, ``reason`` and, when a task failed, ``ti`` and ``dag_run``); ``dag.test()`` runs it in
its own process. Connections (docs/notifications.md):

- ``smtp_default`` (type smtp, as the smtp provider reads it: host, port, login, password; extras
  ``from_email``, ``disable_ssl``, ``disable_tls``, ``timeout``, ``retry_limit``) plus the extra ``to``: the
  recipients, a comma-separated string or a list.
- ``als_chat_webhook`` (optional, type http): ``host`` is the webhook URL (or its scheme and host, with the
  secret path in ``password``); the post is ``{"text": ...}`` (Slack, Mattermost).

A missing connection, a missing ``to`` or an unreachable server logs one line and sends nothing: a
notification never fails anything. The message names the DAG, the run, the failed tasks and their log links
and nothing else: no conf, no parameter, no error text, no connection field.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)

SMTP_CONN_ID = "smtp_default"
WEBHOOK_CONN_ID = "als_chat_webhook"
DEFAULT_FROM = "als-airflow@localhost"
WEBHOOK_TIMEOUT = 10.0
#: States listed as failed, and as not run because something upstream failed.
FAILED = "failed"
UPSTREAM_FAILED = "upstream_failed"


@dataclass
class RunFailure:
    """What a failure message says: ids and links only."""

    dag_id: str
    run_id: str
    reason: str
    run_url: str
    failed: list[tuple[str, str]] = field(default_factory=list)  # (task id, log URL)
    upstream_failed: list[str] = field(default_factory=list)

    @property
    def subject(self) -> str:
        return f"[Airflow] {self.dag_id} failed: run {self.run_id}"

    def text(self) -> str:
        lines = [f"DAG {self.dag_id} failed (run {self.run_id}, reason: {self.reason}).", f"Run: {self.run_url}"]
        if self.failed:
            lines.append("Failed tasks:")
            lines += [f"- {task_id}: {url}" for task_id, url in self.failed]
        else:
            lines.append("Failed tasks: none recorded (the run itself failed, e.g. timed out).")
        if self.upstream_failed:
            lines.append(f"Not run (upstream failed): {', '.join(self.upstream_failed)}")
        return "\n".join(lines)

    def html(self) -> str:
        e = html.escape
        items = "".join(f'<li><a href="{e(url)}">{e(task_id)}</a> (log)</li>' for task_id, url in self.failed)
        parts = [
            f"<p>DAG <b>{e(self.dag_id)}</b> failed: run <b>{e(self.run_id)}</b> (reason: {e(self.reason)}).</p>",
            f'<p>Run: <a href="{e(self.run_url)}">{e(self.run_url)}</a></p>',
            f"<p>Failed tasks:</p><ul>{items}</ul>" if items else "<p>Failed tasks: none recorded.</p>",
        ]
        if self.upstream_failed:
            parts.append(f"<p>Not run (upstream failed): {e(', '.join(self.upstream_failed))}</p>")
        return "".join(parts)


def _base_url() -> str:
    from airflow.sdk.configuration import conf

    return conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")


def _state(value: Any) -> str:
    return str(getattr(value, "value", value))


def task_states(dag_id: str, run_id: str) -> dict[tuple[str, int], str]:
    """``(task id, map index) -> state`` of every task instance of the run.

    In the dag-processor (and on a worker) through the supervisor (the Execution API); without a supervisor
    (``dag.test()`` runs the callback in its own process, which has the metadata database) from the database.
    """
    from airflow.sdk.execution_time import task_runner

    if getattr(task_runner, "SUPERVISOR_COMMS", None) is not None:
        states = task_runner.RuntimeTaskInstance.get_task_states(dag_id=dag_id, run_ids=[run_id])
        found: dict[tuple[str, int], str] = {}
        for key, state in states.get(run_id, {}).items():
            found[(key, -1)] = _state(state)
        return found

    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state)
            .filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
            .all()
        )
    return {(task_id, map_index): _state(state) for task_id, map_index, state in rows}


def _split_mapped(key: str, task_ids: set[str]) -> tuple[str, int]:
    """The Execution API names a mapped instance ``<task id>_<map index>``."""
    if key not in task_ids:
        head, _, tail = key.rpartition("_")
        if head in task_ids and tail.isdigit():
            return head, int(tail)
    return key, -1


def describe_failure(context: Mapping[str, Any]) -> RunFailure:
    """The failure of ``context``'s run: ids, the failed tasks (queried) and links; nothing from the conf."""
    dag = context.get("dag")
    dag_run = context.get("dag_run")
    dag_id = getattr(dag, "dag_id", None) or getattr(dag_run, "dag_id", None) or "?"
    run_id = context.get("run_id") or getattr(dag_run, "run_id", None) or "?"
    base = _base_url()
    run_url = f"{base}/dags/{quote(dag_id)}/runs/{quote(run_id)}"
    try:
        states = task_states(dag_id, run_id)
    except Exception as exc:  # the message still goes out, with the task the scheduler named
        log.warning("notification: task states of %s/%s not read (%s)", dag_id, run_id, type(exc).__name__)
        ti = context.get("ti")
        map_index = getattr(ti, "map_index", None)
        states = {(ti.task_id, -1 if map_index is None else map_index): FAILED} if ti is not None else {}
    task_ids = set(getattr(dag, "task_ids", None) or [])
    failed, upstream = [], []
    for (key, map_index), state in sorted(states.items()):
        task_id, index = _split_mapped(key, task_ids) if map_index < 0 else (key, map_index)
        name = task_id if index < 0 else f"{task_id}[{index}]"
        if state == FAILED:
            url = f"{run_url}/tasks/{quote(task_id)}" + (f"/mapped/{index}" if index >= 0 else "")
            failed.append((name, url))
        elif state == UPSTREAM_FAILED:
            upstream.append(name)
    return RunFailure(
        dag_id=dag_id,
        run_id=run_id,
        reason=str(context.get("reason") or "failed"),
        run_url=run_url,
        failed=failed,
        upstream_failed=upstream,
    )


def _connection(conn_id: str):
    """The connection, or None (logged in one line) when it is not configured."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def _recipients(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.replace(";", ",").split(",")
    if not isinstance(value, Iterable):
        return []
    return [str(v).strip() for v in value if str(v).strip()]


class _Notifier(BaseNotifier):
    """A notifier without templates: ``__call__`` goes straight to ``notify`` (which never raises).

    ``BaseNotifier.__call__`` renders template fields with ``context["dag"]``'s Jinja environment; in
    ``dag.test()`` that is the scheduler's ``SerializedDAG``, which has none, so the stock call fails there.
    """

    def __call__(self, *args) -> None:
        self.notify(args[0] if len(args) == 1 else {"dag": args[0]})


class FailureMail(_Notifier):
    """Mail the failure of a run through the smtp provider's ``SmtpNotifier`` (connection ``smtp_conn_id``)."""

    def __init__(self, smtp_conn_id: str = SMTP_CONN_ID):
        super().__init__()
        self.smtp_conn_id = smtp_conn_id

    def notify(self, context: Any) -> None:
        try:
            self._send(context)
        except Exception as exc:  # never fails anything; the error's type and text hold no secret
            log.warning("notification: failure mail not sent (%s: %s)", type(exc).__name__, str(exc)[:200])

    def _send(self, context: Any) -> None:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        conn = _connection(self.smtp_conn_id)
        if conn is None:
            log.info("notification: no connection %s, failure mail not sent", self.smtp_conn_id)
            return
        extra = conn.extra_dejson
        to = _recipients(extra.get("to"))
        if not to:
            log.info("notification: connection %s has no extra 'to', failure mail not sent", self.smtp_conn_id)
            return
        failure = describe_failure(context)
        SmtpNotifier(
            to=to,
            from_email=extra.get("from_email") or DEFAULT_FROM,
            subject=failure.subject,
            html_content=failure.html(),
            smtp_conn_id=self.smtp_conn_id,
        ).notify(context)
        log.info(
            "notification: failure mail for %s/%s sent to %d recipient(s)", failure.dag_id, failure.run_id, len(to)
        )


def webhook_url(conn) -> str:
    """The webhook URL of an HTTP connection: ``host`` (a URL, or a host with ``schema``/``port``) + ``password``."""
    host = (conn.host or "").rstrip("/")
    if "://" not in host:
        host = f"{conn.schema or 'https'}://{host}" + (f":{conn.port}" if conn.port else "")
    path = (conn.password or "").strip()
    return host + (("/" + path.lstrip("/")) if path else "")


class ChatWebhook(_Notifier):
    """Post the failure of a run as ``{"text": ...}`` to the URL of an HTTP connection (Slack, Mattermost)."""

    def __init__(self, conn_id: str = WEBHOOK_CONN_ID, timeout: float = WEBHOOK_TIMEOUT):
        super().__init__()
        self.conn_id = conn_id
        self.timeout = timeout

    def notify(self, context: Any) -> None:
        try:
            self._post(context)
        except Exception as exc:  # type only: a request error may carry the URL, whose path is a secret
            log.warning("notification: chat post not sent (%s)", type(exc).__name__)

    def _post(self, context: Any) -> None:
        import requests

        conn = _connection(self.conn_id)
        if conn is None:
            log.info("notification: no connection %s, chat post skipped", self.conn_id)
            return
        failure = describe_failure(context)
        response = requests.post(webhook_url(conn), json={"text": failure.text()}, timeout=self.timeout)
        if response.status_code >= 400:
            log.warning("notification: chat post refused (HTTP %d)", response.status_code)
            return
        log.info("notification: chat post for %s/%s sent", failure.dag_id, failure.run_id)


def failure_notifiers() -> list[BaseNotifier]:
    """The DAG-level ``on_failure_callback`` of ``dag_defaults(notify=True)``: the mail and the chat post."""
    return [FailureMail(), ChatWebhook()]
