"""The credential manager: envelope encryption bound to tenant|owner|field, with key rotation."""

from __future__ import annotations

import json

import msgspec
import pytest

from connectors.credentials import Binding, CredentialError, CredentialManager, KeyRingError, LocalKeyRing

SECRET = b"AKIA-very-secret-value-7f3a"
HERE = Binding("tenant-a", "conn-1", "secret_access_key")


def test_round_trip_and_fresh_data_key_each_time() -> None:
    cm = CredentialManager(LocalKeyRing.generate())
    one, two = cm.seal(SECRET, HERE), cm.seal(SECRET, HERE)
    assert one != two
    assert SECRET not in one.encode()
    assert cm.open(one, HERE) == SECRET
    assert cm.open(two, HERE) == SECRET


@pytest.mark.parametrize(
    "elsewhere",
    [
        Binding("tenant-b", "conn-1", "secret_access_key"),
        Binding("tenant-a", "conn-2", "secret_access_key"),
        Binding("tenant-a", "conn-1", "access_key_id"),
    ],
)
def test_a_ciphertext_moved_to_another_tenant_row_or_field_does_not_open(elsewhere: Binding) -> None:
    cm = CredentialManager(LocalKeyRing.generate())
    with pytest.raises(CredentialError) as exc:
        cm.open(cm.seal(SECRET, HERE), elsewhere)
    assert "secret" not in str(exc.value).lower() or SECRET.decode() not in str(exc.value)


def test_tampering_is_detected() -> None:
    cm = CredentialManager(LocalKeyRing.generate())
    sealed = json.loads(cm.seal(SECRET, HERE))
    for field in ("ct", "dek", "nonce"):
        broken = dict(sealed)
        raw = bytearray(msgspec.json.decode(json.dumps({"b": broken[field]}), type=dict[str, bytes])["b"])
        raw[0] ^= 1
        broken[field] = msgspec.json.decode(msgspec.json.encode({"b": bytes(raw)}))["b"]
        with pytest.raises(CredentialError):
            cm.open(json.dumps(broken), HERE)
    for garbage in ["", "{}", "not json", json.dumps({**sealed, "f": 2}), json.dumps({**sealed, "extra": 1})]:
        with pytest.raises(CredentialError):
            cm.open(garbage, HERE)


def test_rotation_rewraps_under_the_newest_key() -> None:
    old = LocalKeyRing.generate()
    sealed = CredentialManager(old).seal(SECRET, HERE)
    ring = old.with_new_key()
    cm = CredentialManager(ring)
    assert cm.needs_rewrap(sealed)
    assert cm.open(sealed, HERE) == SECRET  # old secrets still open before their rewrap
    rewrapped = cm.rewrap(sealed, HERE)
    assert not cm.needs_rewrap(rewrapped)
    assert json.loads(rewrapped)["ct"] == json.loads(sealed)["ct"]  # the ciphertext itself was not touched
    assert cm.rewrap(rewrapped, HERE) == rewrapped  # idempotent: a rerun after a kill does nothing twice
    # Once rewrapped, the old key can go.
    newest_only = LocalKeyRing({ring.current_version: json_key(ring, ring.current_version)})
    assert CredentialManager(newest_only).open(rewrapped, HERE) == SECRET
    with pytest.raises(KeyRingError):
        CredentialManager(newest_only).open(sealed, HERE)
    assert CredentialManager(ring).seal(SECRET, HERE).count(f'"kek":{ring.current_version}') == 1


def json_key(ring: LocalKeyRing, version: int) -> bytes:
    import base64

    return base64.b64decode(
        next(k["key"] for k in json.loads(ring.to_json())["keys"] if k["version"] == version)
    )


def test_key_ring_file_and_inline_forms(tmp_path) -> None:
    ring = LocalKeyRing.generate().with_new_key()
    path = tmp_path / "keys" / "keyring.json"
    ring.save(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"  # whatever the umask
    assert LocalKeyRing.load(str(path)).versions == [1, 2]
    assert LocalKeyRing.load(path.read_text()).versions == [1, 2]
    for bad in [
        '{"keys": []}',
        '{"keys": [{"version": 1, "key": "c2hvcnQ="}]}',
        "{nope",
        str(tmp_path / "missing"),
    ]:
        with pytest.raises(KeyRingError):
            LocalKeyRing.load(bad)


def test_binding_parts_cannot_smuggle_separators() -> None:
    cm = CredentialManager(LocalKeyRing.generate())
    with pytest.raises(CredentialError):
        cm.seal(SECRET, Binding("tenant|x", "conn", "f"))
