"""Fixtures the DAG tests share."""

from __future__ import annotations

import pytest


@pytest.fixture
def store(airflow_db):
    """The metadata database's Variables, with no deletion-manifest entry before or after the test."""
    from include.manifests import KEY_PREFIX, MetadataDbVariables

    store = MetadataDbVariables()
    for key in store.keys(KEY_PREFIX):
        store.delete(key)
    yield store
    for key in store.keys(KEY_PREFIX):
        store.delete(key)
