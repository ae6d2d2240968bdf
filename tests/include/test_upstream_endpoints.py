"""Issue 16, finding 5: our collection ids and roots are upstream's (als-computing/splash_flows config.yml, copied
into tests/include/fixtures/upstream_endpoints.yaml with its commit), so that drift on either side fails here."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
import yaml

from include.endpoints import load_endpoints

FIXTURE = Path(__file__).parent / "fixtures" / "upstream_endpoints.yaml"
DOC = Path(__file__).resolve().parents[2] / "docs" / "facility-fidelity.md"


@pytest.fixture(scope="module")
def upstream():
    return yaml.safe_load(FIXTURE.read_text())


@pytest.fixture(scope="module")
def production():
    return load_endpoints("production")


def root(text: str) -> PurePosixPath:
    return PurePosixPath(text.rstrip("/") or "/")


def test_every_endpoint_is_accounted_for(upstream, production):
    listed = [*upstream["same"], *upstream["below"], *upstream["ours_only"]]
    assert len(listed) == len(set(listed))
    assert set(listed) == set(production.endpoints)
    used = {*upstream["same"].values(), *upstream["below"].values()}
    assert used | set(upstream["upstream_only"]) == set(upstream["upstream"])
    assert not used & set(upstream["upstream_only"])


def test_endpoints_named_by_upstream_have_its_collection_and_root(upstream, production):
    differ = {}
    for ours, key in upstream["same"].items():
        theirs = upstream["upstream"][key]
        mine = production[ours]
        if (mine.uuid, mine.root) != (theirs["uuid"], root(theirs["root_path"])):
            differ[ours] = {"ours": (mine.uuid, str(mine.root)), key: (theirs["uuid"], theirs["root_path"])}
    for ours, key in upstream["below"].items():
        theirs = upstream["upstream"][key]
        mine = production[ours]
        if mine.uuid != theirs["uuid"] or not mine.root.is_relative_to(root(theirs["root_path"])):
            differ[ours] = {"ours": (mine.uuid, str(mine.root)), key: (theirs["uuid"], theirs["root_path"])}
    assert differ == {}


def test_only_what_upstream_lacks_is_a_placeholder(upstream, production):
    upstream_ids = {entry["uuid"] for entry in upstream["upstream"].values()}
    placeholders = {c.name for c in production.collections.values() if c.placeholder}
    assert placeholders == {"olcf_orion"}
    for name in placeholders:
        assert production.collections[name].uuid not in upstream_ids
    on_placeholders = {name for name, e in production.endpoints.items() if e.collection.placeholder}
    assert on_placeholders <= set(upstream["ours_only"])


def test_the_doc_notes_each_reconciled_collection(production):
    text = DOC.read_text()
    assert "## Collection UUIDs reconciled with upstream config.yml" in text
    for name in ("alcf_eagle", "data7012", "data733"):
        assert production.collections[name].uuid in text, name
