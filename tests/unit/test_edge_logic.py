"""Pure edge logic: settings, redaction, client address behind proxies, audit canonical form."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
from litestar.connection import ASGIConnection

from gateway.audit import chain
from gateway.logging import REDACTED, redact
from gateway.security.client import client_ip
from gateway.settings import Settings, SettingsError


def test_settings_defaults_are_safe() -> None:
    s = Settings.from_env({})
    assert s.server.host == "127.0.0.1"
    assert s.auth.access_token_ttl == 900
    assert s.auth.operator_token is None
    assert s.server.mode == "embedded"
    assert not s.behind_tls


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ACCESS_TOKEN_TTL", "901"),
        ("ACCESS_TOKEN_TTL", "x"),
        ("PORT", "0"),
        ("MODE", "yolo"),
        ("TRUSTED_PROXIES", "not-a-net"),
    ],
)
def test_bad_settings_name_the_variable_not_the_value(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as exc:
        Settings.from_env({f"FILEGATE_{name}": value})
    assert f"FILEGATE_{name}" in str(exc.value)


def test_require_names_every_missing_variable() -> None:
    with pytest.raises(SettingsError) as exc:
        Settings.from_env({}).require("DATABASE_URL", "REDIS_URL")
    assert "FILEGATE_DATABASE_URL" in str(exc.value)
    assert "FILEGATE_REDIS_URL" in str(exc.value)


def test_redaction_of_keys_and_token_shaped_values() -> None:
    jwt_like = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    key = "fg_" + "a" * 32 + "_" + "B" * 43
    event = {
        "event": f"got {jwt_like} and {key}",
        "password": "hunter2hunter2",
        "refresh_token": "x",
        "headers": {"Authorization": "Bearer abcdefghijk", "accept": "json"},
        "nested": [{"client_secret": "s"}, "Bearer abcdefghijklmn"],
        "user_id": "keep-me",
    }
    out = redact(None, "info", dict(event))
    text = json.dumps(out)
    for secret in (jwt_like, key, "hunter2hunter2", "abcdefghijk"):
        assert secret not in text
    assert out["password"] == REDACTED
    assert out["headers"]["accept"] == "json"
    assert out["user_id"] == "keep-me"


def _conn(peer: str, xff: str | None = None) -> ASGIConnection:
    headers = [(b"x-forwarded-for", xff.encode())] if xff else []
    return ASGIConnection(
        {
            "type": "http",
            "client": (peer, 1234),
            "headers": headers,
            "path": "/",
            "query_string": b"",
            "method": "GET",
        }
    )


def test_client_ip_believes_forwarded_for_only_from_trusted_proxies() -> None:
    assert client_ip(_conn("203.0.113.9", "1.2.3.4"), ()) == "203.0.113.9"
    assert client_ip(_conn("10.0.0.5", "1.2.3.4"), ("10.0.0.0/8",)) == "1.2.3.4"
    # A client cannot hide behind a spoofed hop: the nearest untrusted address wins.
    assert client_ip(_conn("10.0.0.5", "6.6.6.6, 1.2.3.4"), ("10.0.0.0/8",)) == "1.2.3.4"
    assert client_ip(_conn("10.0.0.5", "1.2.3.4, 10.0.0.7"), ("10.0.0.0/8",)) == "1.2.3.4"


def test_chain_link_is_sha256_of_prev_and_sorted_compact_json() -> None:
    event = {"seq": 1, "b": "ü", "a": {"z": 1, "y": None}, "hash": "ignored"}
    expected_body = json.dumps(
        {k: v for k, v in event.items() if k != "hash"},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    assert chain.canonical(event) == expected_body
    assert (
        chain.link(chain.GENESIS, event) == hashlib.sha256(chain.GENESIS.encode() + expected_body).hexdigest()
    )
    assert chain.format_at(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2026-01-02T03:04:05.000006Z"


@pytest.mark.parametrize("request_id", [None, "req-1", 'q"uote\\'])
def test_split_canonical_reassembles_exactly(request_id: str | None) -> None:
    event = {
        "at": "2026-01-01T00:00:00.000000Z",
        "action": "a.b",
        "outcome": "success",
        "actor": {"type": "user", "id": "u"},
        "target": {"type": None, "id": None},
        "ip": "::1",
        "request_id": request_id,
        "details": {"z": ["ü", 1], "a": {"y": True}},
    }
    head, middle, tail = chain.split_canonical(event)
    prev = "ab" * 32
    full = {**event, "prev_hash": prev, "seq": 42}
    assert (head + prev + middle + "42" + tail).encode() == chain.canonical(full)
