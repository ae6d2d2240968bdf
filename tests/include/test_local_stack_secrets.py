"""Issue 26 finding 5: the local stack's secrets stay with Airflow (no PostgreSQL or processes needed here)."""

from __future__ import annotations

import json
import stat
from urllib.parse import urlsplit

from facility.process import facility_environment
from tools.local_stack import LocalStack


def test_i26_finding_5_the_stack_has_its_own_database_role_and_the_facility_none_of_its_secrets(tmp_path):
    """Found: Airflow used PostgreSQL as ``postgres`` (trust), and the facility inherited the stack's Fernet key,
    JWT secret and AIRFLOW_CONN_*."""
    stack = LocalStack(tmp_path / "home", port=18080, database="als_unit", facility_port=18765)
    url = urlsplit(stack.database_url)
    assert url.username == "als_unit_airflow" != "postgres" and len(url.password) >= 24
    assert stat.S_IMODE((tmp_path / "home" / "postgres.password").stat().st_mode) == 0o600
    assert LocalStack(tmp_path / "home", database="als_unit").database_url == stack.database_url  # kept per home
    env = stack.env
    secrets = [env["AIRFLOW__CORE__FERNET_KEY"], env["AIRFLOW__API_AUTH__JWT_SECRET"], url.password,
               json.loads(env["AIRFLOW_CONN_ALS_SIGNING"])["password"]]  # fmt: skip
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == stack.database_url
    facility = facility_environment(stack.facility_root)
    assert not [name for name in facility if name.startswith("AIRFLOW")]
    assert not [secret for secret in secrets if secret in json.dumps(facility)]
    assert stack.facility.token_file == tmp_path / "home" / "facility.admin-token"
