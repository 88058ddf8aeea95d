"""Every kind's base path lives inside its tenant's prefix, whatever it names (enumerates the kinds)."""

from __future__ import annotations

import uuid

import pytest

from connectors.base import InvalidKey
from connectors.paths import MAX_KEY_BYTES, ObjectRoot
from connectors.schemas import BASE_FIELD, KINDS


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_base_path_naming_another_tenant_stays_inside_its_own_tenant(kind: str) -> None:
    mine, other = uuid.uuid4(), uuid.uuid4()
    for base in (str(other), f"{other}/x", f"media/{other}", f"media/{other}/docs", "/", None):
        root = ObjectRoot.of(mine, base if BASE_FIELD[kind] else None)
        assert root.prefix.startswith(f"{mine}/")
        assert root.key("a.png").startswith(f"{mine}/")
        assert root.listing_prefix("").startswith(f"{mine}/")
        # What the other tenant stores is never shown through this root.
        assert root.relative(f"{other}/media/a.png") is None
        assert root.relative(f"{other}/{mine}/a.png") is None


def test_a_full_key_longer_than_stores_take_is_refused() -> None:
    root = ObjectRoot.of(uuid.uuid4(), "b" * 500)
    with pytest.raises(InvalidKey):
        root.key("k" * (MAX_KEY_BYTES - 100))
