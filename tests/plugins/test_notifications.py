"""Failure notifications (issue 16, finding 6): a real SMTP server (aiosmtpd) and a real HTTP server receive them.

The DAGs run with ``dag.test()``, which runs a DAG's ``on_failure_callback`` itself (``DagRun.update_state``
→ ``execute_dag_callbacks``, in the test's process); on a deployment the dag-processor runs it
(tests/e2e/test_notifications_on_the_stack.py).
"""

from __future__ import annotations

import email
import json
import logging
import threading
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from facility.process import free_port
from tests.fixture_dags.notification_dags import dag_notify_failing, dag_notify_succeeding

pytestmark = pytest.mark.usefixtures("airflow_db")

SMTP_LOGIN = "airflow-mailer"
SMTP_PASSWORD = "planted-smtp-password-7f3e9a"
CONF_SECRET = "planted-conf-secret-c41d2b"
WEBHOOK_PATH_SECRET = "hooks/planted-webhook-token-93ab"
BASE_URL = "https://airflow.als.example:8443"
RECIPIENTS = ["beamline832@als.example", "staff@als.example"]
LOGGER = "als_provider.notifications"


class Inbox:
    """aiosmtpd handler: keeps every message it accepts, and the credentials it was given."""

    def __init__(self):
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        self.logins: list[tuple[str, str]] = []

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content, policy=policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, password))
        return AuthResult(success=(login, password) == (SMTP_LOGIN, SMTP_PASSWORD))


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=inbox.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()


def smtp_connection(port: int, **extra) -> str:
    return json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": port,
            "login": SMTP_LOGIN,
            "password": SMTP_PASSWORD,
            "extra": {
                "to": ", ".join(RECIPIENTS),
                "from_email": "airflow@als.example",
                "disable_ssl": True,
                "disable_tls": True,
                "timeout": 5,
                "retry_limit": 0,
                **extra,
            },
        }
    )


@pytest.fixture
def notify_env(monkeypatch):
    """No notification connection unless a test sets one; the api-server's public URL for the links."""
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_ALS_CHAT_WEBHOOK", raising=False)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL + "/")
    return monkeypatch


def body(message: email.message.EmailMessage) -> str:
    return "\n".join(part.get_content() for part in message.walk() if part.get_content_maintype() == "text")


def everything(message: email.message.EmailMessage) -> str:
    return "\n".join(f"{k}: {v}" for k, v in message.items()) + "\n" + body(message)


def test_a_failed_run_mails_dag_run_failed_tasks_and_log_links_and_no_secret(smtp_server, notify_env):
    controller, inbox = smtp_server
    notify_env.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(controller.port))

    dag_run = dag_notify_failing.test(run_conf={"api_token": CONF_SECRET})

    assert dag_run.state == "failed"
    assert len(inbox.messages) == 1, "exactly one mail for one failed run"
    rcpt, message = inbox.messages[0]
    assert sorted(rcpt) == sorted(RECIPIENTS)
    assert inbox.logins == [(SMTP_LOGIN, SMTP_PASSWORD)]  # the provider logged in with the connection
    assert message["Subject"] == f"[Airflow] test_notify_failing failed: run {dag_run.run_id}"
    text = body(message)
    run_url = f"{BASE_URL}/dags/test_notify_failing/runs/{quote(dag_run.run_id)}"
    assert "test_notify_failing" in text and dag_run.run_id in text
    assert f'href="{run_url}/tasks/breaks"' in text  # the failed task, linked to its log
    assert f'href="{run_url}"' in text
    assert "Not run (upstream failed): after" in text
    assert "fine" not in text.replace("test_notify_failing", "")  # a task that succeeded is not listed
    for secret in (SMTP_PASSWORD, CONF_SECRET, "api_token", "the failing step of the fixture"):
        assert secret not in everything(message), secret


def test_a_successful_run_sends_nothing(smtp_server, notify_env):
    controller, inbox = smtp_server
    notify_env.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(controller.port))

    assert dag_notify_succeeding.test().state == "success"
    assert inbox.messages == []


def test_without_connections_the_callback_logs_one_line_and_fails_nothing(notify_env, caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        dag_run = dag_notify_failing.test()
    assert dag_run.state == "failed"
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert lines == [
        "notification: no connection smtp_default, failure mail not sent",
        "notification: no connection als_chat_webhook, chat post skipped",
    ]
    assert not [r for r in caplog.records if "Callback failed" in r.getMessage()]


def test_an_unreachable_smtp_server_only_logs(notify_env, caplog):
    """``make demo`` has no SMTP server: a refused connection is one warning, never an error of the run."""
    from als_provider.notifications import FailureMail

    notify_env.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(free_port()))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        FailureMail()({"dag": dag_notify_failing, "run_id": "manual__never", "reason": "task_failure"})
    (line,) = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert line.startswith("notification: failure mail not sent (ConnectionRefusedError")
    assert SMTP_PASSWORD not in caplog.text


def test_a_connection_without_recipients_sends_nothing(smtp_server, notify_env, caplog):
    from als_provider.notifications import FailureMail

    controller, inbox = smtp_server
    notify_env.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(controller.port, to=""))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        FailureMail()({"dag": dag_notify_failing, "run_id": "manual__never", "reason": "task_failure"})
    assert inbox.messages == []
    assert "connection smtp_default has no extra 'to'" in caplog.text


class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[str, dict]] = []
    status = 200

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        type(self).received.append((self.path, json.loads(self.rfile.read(length))))
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook_server():
    handler = type("Hook", (_Hook,), {"received": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()


def test_the_chat_webhook_posts_the_failure(webhook_server, notify_env):
    server, handler = webhook_server
    notify_env.setenv(
        "AIRFLOW_CONN_ALS_CHAT_WEBHOOK",
        json.dumps(
            {"conn_type": "http", "host": f"http://127.0.0.1:{server.server_port}", "password": WEBHOOK_PATH_SECRET}
        ),
    )

    dag_run = dag_notify_failing.test(run_conf={"api_token": CONF_SECRET})

    assert dag_run.state == "failed"
    (path, payload), *more = handler.received
    assert not more
    assert path == "/" + WEBHOOK_PATH_SECRET  # the secret path of the URL comes from the connection's password
    assert set(payload) == {"text"}
    text = payload["text"]
    run_url = f"{BASE_URL}/dags/test_notify_failing/runs/{quote(dag_run.run_id)}"
    assert f"DAG test_notify_failing failed (run {dag_run.run_id}" in text
    assert f"- breaks: {run_url}/tasks/breaks" in text
    for secret in (CONF_SECRET, WEBHOOK_PATH_SECRET, "planted-webhook-token"):
        assert secret not in text


def test_a_refused_chat_post_only_logs(webhook_server, notify_env, caplog):
    from als_provider.notifications import ChatWebhook

    server, handler = webhook_server
    handler.status = 500
    notify_env.setenv(
        "AIRFLOW_CONN_ALS_CHAT_WEBHOOK",
        json.dumps({"conn_type": "http", "host": f"http://127.0.0.1:{server.server_port}/hooks/x"}),
    )
    with caplog.at_level(logging.INFO, logger=LOGGER):
        ChatWebhook()({"dag": dag_notify_failing, "run_id": "manual__never", "reason": "task_failure"})
    assert [p for p, _ in handler.received] == ["/hooks/x"]
    assert "notification: chat post refused (HTTP 500)" in caplog.text


@pytest.mark.parametrize(("file_name", "dag_id"), [("bl832_dispatcher.py", "bl832_dispatcher"), ("prune.py", "prune")])
def test_the_dispatcher_and_prune_notify_on_failure(file_name, dag_id):
    from als_provider.notifications import ChatWebhook, FailureMail
    from tests.dags.dag_helpers import load_dag

    dag = load_dag(dag_id, file_name)
    kinds = {type(callback) for callback in dag.on_failure_callback or []}
    assert kinds == {FailureMail, ChatWebhook}
