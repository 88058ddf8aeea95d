"""The seal on records Redis holds for security decisions: what it refuses, what it lets through."""

from __future__ import annotations

import base64
import json
import time

import pytest
from structlog.testing import capture_logs

from connectors.credentials import LocalKeyRing
from gateway.security.redis_records import CLOCK_SKEW, PURPOSE, RecordSeal, Refusal

SESSION = "fg:session:" + "a" * 64
OTHER = "fg:session:" + "b" * 64


def _seal(ring: LocalKeyRing) -> RecordSeal:
    return RecordSeal(ring.derived_keys(PURPOSE))


def _alerts(logs: list[dict[str, object]]) -> list[object]:
    return [
        e.get("reason") for e in logs if e["event"] == "security.alert" and e["kind"] == "redis_record_forged"
    ]


def test_a_sealed_record_opens_under_its_own_key_only() -> None:
    seal = _seal(LocalKeyRing.generate())
    stored = seal.seal(SESSION, '{"role":"viewer"}', ttl=60)
    assert seal.open(SESSION, stored) == '{"role":"viewer"}'
    with capture_logs() as logs:
        assert seal.open(OTHER, stored) is Refusal.FORGED  # moved under a cookie the attacker chose
    assert _alerts(logs) == ["bad_mac"]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: s.replace("viewer", "admin"),
        lambda s: '{"role":"admin"}',
        lambda s: "",
        lambda s: s.split(".", 1)[1],
        lambda s: s[:-1],
    ],
)
def test_an_altered_or_unsealed_record_is_refused_with_an_alert(tamper) -> None:  # type: ignore[no-untyped-def]
    seal = _seal(LocalKeyRing.generate())
    stored = seal.seal(SESSION, '{"role":"viewer"}', ttl=60)
    with capture_logs() as logs:
        assert seal.open(SESSION, tamper(stored)) is Refusal.FORGED
    assert len(_alerts(logs)) == 1
    assert "admin" not in str(logs) and "viewer" not in str(logs)  # the value is never logged


def test_a_record_copied_earlier_is_not_believed_past_its_time() -> None:
    seal = _seal(LocalKeyRing.generate())
    now = time.time()
    stored = seal.seal(SESSION, "live", ttl=60)
    assert seal.open(SESSION, stored) == "live"
    with capture_logs() as logs, pytest.MonkeyPatch.context() as mp:
        mp.setattr(time, "time", lambda: now + 62)  # just expired: Redis may be a second late, quiet
        assert seal.open(SESSION, stored) is Refusal.EXPIRED
        mp.setattr(time, "time", lambda: now + 62 + CLOCK_SKEW + 1)  # written back long after: replayed
        assert seal.open(SESSION, stored) is Refusal.FORGED
    assert _alerts(logs) == ["replayed"]


def test_rotation_keeps_older_records_verifiable_while_their_version_is_in_the_ring() -> None:
    old_ring = LocalKeyRing.generate()
    new_ring = old_ring.with_new_key()
    before = _seal(old_ring).seal(SESSION, "1", ttl=60)
    after = _seal(new_ring).seal(SESSION, "2", ttl=60)
    assert after.split(".")[1] == "2" and before.split(".")[1] == "1"
    assert _seal(new_ring).open(SESSION, before) == "1"
    # A replica still on the old ring cannot verify the new version: a quiet miss, not trusted.
    with capture_logs() as logs:
        assert _seal(old_ring).open(SESSION, after) is Refusal.UNVERIFIABLE
    assert _alerts(logs) == []
    # Another deployment's ring (a neighbour sharing Redis) seals nothing we trust.
    with capture_logs() as logs:
        assert _seal(LocalKeyRing.generate()).open(SESSION, before) is Refusal.FORGED
    assert _alerts(logs) == ["bad_mac"]


def test_record_keys_are_derived_not_the_credential_keys_themselves() -> None:
    ring = LocalKeyRing.generate()
    derived = ring.derived_keys(PURPOSE)
    assert set(derived) == {1} and len(derived[1]) == 32
    assert derived != ring.derived_keys(b"something else")
    kek = base64.b64decode(json.loads(ring.to_json())["keys"][0]["key"])
    assert derived[1] != kek
