"""The e2e marker, registered here too so that tests/ui runs on its own (tests/e2e/conftest.py has it as well)."""

from __future__ import annotations


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: end-to-end test on the real local stack (PostgreSQL, Airflow processes)")
