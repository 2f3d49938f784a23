"""Join key types are remembered per view object (issue 19, online/reads.key_types): a registry
change of an entity's key type (applied with allow_breaking) must be what the next lookup checks,
in the same FeatureStore and in its feature server, never the type remembered before."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from parity import FeatureStore
from parity.serving.app import create_app
from tests.conftest import DRIVER_REPO, write_repo

STRING_KEYS = """
from parity import Entity
driver = Entity(name="driver", join_keys=["driver_id"], value_type="String")
"""


def status(client: TestClient, key: object) -> int:
    body = {"features": ["driver_stats:trips"], "entities": {"driver_id": [key]}}
    return client.post("/get-online-features", json=body).status_code


def test_a_changed_key_type_is_checked_by_the_next_lookup(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "repo", DRIVER_REPO)
    store = FeatureStore(root)
    store.apply()
    client = TestClient(create_app(store))
    try:
        assert store.get_online_features(["driver_stats:trips"], {"driver_id": [1]})
        assert (status(client, 1), status(client, "1")) == (200, 400)

        (root / "entities.py").write_text(STRING_KEYS)
        store.apply(allow_breaking=True)
        got = store.get_online_features(["driver_stats:trips"], {"driver_id": ["1"]})
        assert got.statuses == {"trips": ["NOT_FOUND"]}
        assert (status(client, "1"), status(client, 1)) == (200, 400)
    finally:
        client.close()
        store.close()
