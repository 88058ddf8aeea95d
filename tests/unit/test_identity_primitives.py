"""Pure identity logic: password policy, opaque credentials, TOTP steps, key ring rotation."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from tenants import credentials, totp
from tenants.passwords import PasswordHashing, PasswordPolicyError, check_policy
from tenants.tokens import AccessTokens, InvalidAccessToken, KeyRing


@pytest.mark.parametrize(
    "password",
    [
        "short",
        "password1234",
        "aaaaaaaaaaaaaaaa",
        "abcdefghijklmnop",
        "123456789012",
        "abababababababab",
        "x" * 300,
        "Password123!",
        "qwertyuiop!!",
        "alice.example-2026",
    ],
)
def test_weak_passwords_are_refused(password: str) -> None:
    with pytest.raises(PasswordPolicyError):
        check_policy(password, context=("alice@example.test", "alice.example"))


@pytest.mark.parametrize(
    "password", ["correct horse battery staple", "Tr0ub4dor&3-horse-staple", "ünïcödé-pässwörd-42"]
)
def test_good_passwords_pass(password: str) -> None:
    check_policy(password, context=("bob@example.test",))


def test_policy_message_never_echoes_the_password() -> None:
    with pytest.raises(PasswordPolicyError) as exc:
        check_policy("secretval")
    assert "secretvalue1" not in str(exc.value)


async def test_argon2id_hash_and_verify() -> None:
    h = PasswordHashing(time_cost=1, memory_kib=8192)
    stored = await h.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$")
    assert await h.verify(stored, "correct horse battery staple")
    assert not await h.verify(stored, "wrong")
    assert not await h.verify(None, "anything")  # no account: dummy work, always False
    assert not await h.verify("not-a-hash", "anything")


def test_credentials_round_trip_and_refuse_other_shapes() -> None:
    cred = credentials.new_credential(credentials.API_KEY_PREFIX)
    parsed = credentials.parse_credential(str(cred), credentials.API_KEY_PREFIX)
    assert parsed == cred
    assert credentials.parse_credential(str(cred), credentials.REFRESH_PREFIX) is None
    assert credentials.matches(cred.secret, credentials.digest(cred.secret))
    assert not credentials.matches(cred.secret + "x", credentials.digest(cred.secret))
    for bad in [
        "",
        "fg_",
        f"fg_{uuid.uuid4().hex}_short",
        f"fg_{uuid.uuid4().hex}_{'a' * 43}\n",
        "fg_X_" + "a" * 43,
    ]:
        assert credentials.parse_credential(bad, credentials.API_KEY_PREFIX) is None


def test_totp_code_is_good_once_and_allows_one_step_of_drift() -> None:
    secret = totp.new_secret()
    now = time.time()
    step = int(now // 30)
    code = pyotp.TOTP(secret).at(now)
    assert totp.accepted_step(secret, code, last_step=0, now=now) == step
    assert totp.accepted_step(secret, code, last_step=step, now=now) is None
    previous = pyotp.TOTP(secret).at(now - 30)
    assert totp.accepted_step(secret, previous, last_step=0, now=now) == step - 1
    old = pyotp.TOTP(secret).at(now - 120)
    assert totp.accepted_step(secret, old, last_step=0, now=now) is None
    assert totp.accepted_step(secret, "12345a", last_step=0, now=now) is None


def test_recovery_codes_are_distinct_and_normalised() -> None:
    codes = totp.new_recovery_codes()
    assert len(set(codes)) == 10
    assert all(totp.looks_like_recovery_code(c) for c in codes)
    assert totp.recovery_digest(codes[0].upper() + " ") == totp.recovery_digest(codes[0])


def test_key_ring_rotation_keeps_old_keys_until_their_tokens_expire(tmp_path) -> None:
    ring = KeyRing.generate()
    tokens = AccessTokens(ring, issuer="i", audience="a", ttl=900)
    old_token, _ = tokens.issue(
        user_id=uuid.uuid4(), tenant_id=uuid.uuid4(), role="admin", session_id=uuid.uuid4(), epoch=0
    )
    rotated = ring.rotated(retire_after_seconds=960)
    assert rotated.current.kid != ring.current.kid
    assert len(rotated.keys) == 2
    AccessTokens(rotated, issuer="i", audience="a", ttl=900).verify(old_token)  # still valid
    path = tmp_path / "keys" / "ring.json"
    rotated.save(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"  # whatever the umask
    assert [k.kid for k in KeyRing.load(path).keys] == [k.kid for k in rotated.keys]
    # A key superseded long ago (its successor is two hours old) is dropped on the next rotation.
    old, new = ring.current, rotated.current
    aged = KeyRing(
        [
            type(old)(
                kid=old.kid, private_key=old.private_key, created_at=datetime.now(UTC) - timedelta(hours=3)
            ),
            type(new)(
                kid=new.kid, private_key=new.private_key, created_at=datetime.now(UTC) - timedelta(hours=2)
            ),
        ]
    )
    again = aged.rotated(retire_after_seconds=960)
    assert new.kid in {k.kid for k in again.keys}
    assert ring.current.kid not in {k.kid for k in again.keys}
    with pytest.raises(InvalidAccessToken):
        AccessTokens(again, issuer="i", audience="a", ttl=900).verify(old_token)


def test_access_token_lifetime_and_claims() -> None:
    tokens = AccessTokens(KeyRing.generate(), issuer="iss", audience="aud", ttl=900)
    session_id = uuid.uuid4()
    token, claims = tokens.issue(
        user_id=uuid.uuid4(), tenant_id=uuid.uuid4(), role="viewer", session_id=session_id, epoch=3
    )
    verified = tokens.verify(token)
    assert verified == claims
    assert (verified.session_id, verified.epoch) == (session_id, 3)
    assert claims.expires_at - claims.issued_at <= 900
