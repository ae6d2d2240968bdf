"""A failed dispatcher run on the real stack: the dag-processor runs its ``on_failure_callback`` and the mail
reaches a real SMTP server (aiosmtpd) started by the test (issue 16, finding 6).

``smtp_default`` is created through the REST API (the metadata database), pointing at that server; the run
fails in ``plan`` (an unknown conf key, which carries a planted secret). On the stack the callback reads the
failed tasks through the dag-processor's supervisor (the Execution API), not the database.
"""

from __future__ import annotations

import email
import time
from email import policy
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from facility.process import free_port
from tests.e2e.conftest import DISPATCHER, connection_secrets, find_secrets

pytestmark = pytest.mark.e2e

SMTP_LOGIN = "airflow-mailer"
SMTP_PASSWORD = "planted-stack-smtp-password-51c0"
CONF_SECRET = "planted-stack-conf-secret-8d2e"
RECIPIENT = "beamline832@als.example"


class Inbox:
    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.original_content, policy=policy.default))
        return "250 OK"

    @staticmethod
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (auth_data.login.decode(), auth_data.password.decode()) == (SMTP_LOGIN, SMTP_PASSWORD)
        return AuthResult(success=ok)


@pytest.fixture
def smtp_on_the_stack(stack):
    inbox = Inbox()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=free_port(), authenticator=inbox.authenticate, auth_require_tls=False
    )
    controller.start()
    connection = {
        "connection_id": "smtp_default",
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": controller.port,
        "login": SMTP_LOGIN,
        "password": SMTP_PASSWORD,
        "extra": (
            f'{{"to": "{RECIPIENT}", "from_email": "airflow@als.example", "disable_ssl": true,'
            ' "disable_tls": true, "timeout": 5, "retry_limit": 0}'
        ),
    }
    stack.request("POST", "/api/v2/connections", json=connection)
    try:
        yield inbox
    finally:
        stack.request("DELETE", "/api/v2/connections/smtp_default")
        controller.stop()


@pytest.mark.timeout(600)
def test_a_failed_run_is_mailed_by_the_dag_processor(stack, smtp_on_the_stack):
    inbox = smtp_on_the_stack
    run_id = stack.trigger(DISPATCHER, {"file_path": "BLS-00001_x/a.h5", "api_token": CONF_SECRET})
    assert stack.wait(DISPATCHER, run_id, timeout=300) == "failed"

    def of_this_run() -> list:  # other tests' failed runs on the same stack may be mailed meanwhile
        return [m for m in inbox.messages if m["Subject"] == f"[Airflow] {DISPATCHER} failed: run {run_id}"]

    deadline = time.monotonic() + 180  # the dag-processor takes the callback on its next loop
    while not of_this_run() and time.monotonic() < deadline:
        time.sleep(1)
    assert len(of_this_run()) == 1, "no mail from the dag-processor (see its log under the stack's home)"
    time.sleep(5)
    assert len(of_this_run()) == 1, "one mail per failed run"

    message = of_this_run()[0]
    assert message["To"] == RECIPIENT
    assert message["Subject"] == f"[Airflow] {DISPATCHER} failed: run {run_id}"
    body = message.get_body(("html",)).get_content()
    run_url = f"{stack.api_url}/dags/{DISPATCHER}/runs/{quote(run_id)}"
    assert f'href="{run_url}/tasks/plan"' in body  # the failed task, linked to its log
    whole = str(message) + body
    assert not find_secrets([("mail", whole)], [SMTP_PASSWORD, CONF_SECRET, *connection_secrets()])
    assert "api_token" not in whole
