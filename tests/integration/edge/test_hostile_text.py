"""Strings PostgreSQL refuses, values at the edges of their types, look-alike emails: a 4xx, never a 500.

Each attack here used to reach the database and come back as a 500 whose log line carried SQLAlchemy's
statement parameters (emails, argon2 hashes, API key hashes).
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import msgspec
import pytest
import structlog
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from gateway.db import create_engine
from gateway.logging import configure_logging
from gateway.settings import Settings
from tenants.inputs import END, TEXT_PATTERN
from tests.conftest import OPERATOR_TOKEN
from tests.factories import PASSWORD, bearer, create_tenant, login

HOSTILE = ["\x00", "\x01", "\x1b[31m", "\x7f", "\x85", "\u2028"]


def _problem(r: Any, status: int = 400, code: str = "validation_failed") -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    assert r.json()["code"] == code, r.text


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The gateway's own redacting JSON log, captured: what an operator's log store would receive."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    saved_structlog = structlog.get_config()
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    # Nothing bound while this test runs may keep the JSON processors (structlog caches a logger on first
    # use): later tests of this process capture log events.
    structlog.configure(cache_logger_on_first_use=False)
    yield stream
    root.handlers, root.level = saved[0], saved[1]
    structlog.configure(**saved_structlog)


@pytest.mark.parametrize("bad", HOSTILE)
async def test_control_characters_in_every_text_field_are_refused_not_a_500(client, bad: str) -> None:
    t = await create_tenant(client)
    h = t.admin.headers
    slug = f"t-{uuid.uuid4().hex[:12]}"
    operator = bearer(OPERATOR_TOKEN)
    tenant_body = {"name": "N", "slug": slug, "admin_email": f"a@{slug}.test", "admin_password": PASSWORD}
    attempts: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/v1/users", {"json": {"email": f"x{bad}y@z.test", "role": "user"}, "headers": h}),
        ("POST", "/v1/api-keys", {"json": {"name": f"k{bad}", "scopes": ["users.read"]}, "headers": h}),
        ("POST", "/v1/tenants", {"json": {**tenant_body, "name": f"N{bad}"}, "headers": operator}),
        ("POST", "/v1/tenants", {"json": {**tenant_body, "slug": f"{slug}{bad}"}, "headers": operator}),
        (
            "POST",
            "/v1/tenants",
            {"json": {**tenant_body, "admin_email": f"a{bad}@x.test"}, "headers": operator},
        ),
        ("GET", "/v1/audit", {"params": {"action": f"auth{bad}"}, "headers": h}),
        ("GET", "/v1/audit", {"params": {"actor": f"user{bad}"}, "headers": h}),
        ("GET", "/v1/audit/export", {"params": {"action": f"auth{bad}"}, "headers": h}),
        ("GET", "/v1/uploads", {"params": {"state": f"clean{bad}"}, "headers": h}),
        ("GET", "/v1/auth/oidc/google/login", {"params": {"tenant": f"{t.slug}{bad}"}}),
        ("GET", f"/v1/identity-providers/g{quote(bad)}", {"headers": h}),
        (
            "POST",
            "/v1/connections",
            {"json": {"kind": "local", "name": f"c{bad}", "config": {"base_path": "x"}}, "headers": h},
        ),
        (
            "POST",
            "/v1/connections",
            {"json": {"kind": "local", "name": "c", "config": {"base_path": f"x{bad}"}}, "headers": h},
        ),
        (
            "PUT",
            "/v1/identity-providers/google",
            {"json": {"client_id": f"id{bad}", "preset": "google"}, "headers": h},
        ),
    ]
    for method, url, kw in attempts:
        r = await client.request(method, url, **kw)
        assert r.status_code < 500, (method, url, r.text)
        _problem(r)


async def test_nul_in_login_is_refused_and_still_counts_as_a_failed_login(client, settings: Settings) -> None:
    t = await create_tenant(client)
    for bad in ({"tenant": t.slug + "\x00"}, {"email": t.admin_email.replace("@", "\x00@")}):
        r = await client.post(
            "/v1/auth/login", json={"tenant": t.slug, "email": t.admin_email, "password": "x", **bad}
        )
        _problem(r)
    # The refused attempts aimed at the admin's account count toward its lockout, like wrong passwords.
    sneaky = t.admin_email.replace("@", "\u200b@")
    for _ in range(settings.auth.lockout_threshold):
        r = await client.post("/v1/auth/login", json={"tenant": t.slug, "email": sneaky, "password": "x"})
        assert r.status_code in (400, 423), r.text
    r = await client.post(
        "/v1/auth/login", json={"tenant": t.slug, "email": t.admin_email, "password": PASSWORD}
    )
    _problem(r, 423, "account_locked")
    events = (await client.get("/v1/audit", params={"action": "auth.login"}, headers=t.admin.headers)).json()
    reasons = [e["details"].get("reason") for e in events["items"] if e["outcome"] == "failure"]
    assert reasons.count("invalid_input") >= 2, reasons


def _cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(values)).decode().rstrip("=")


@pytest.mark.parametrize(
    "at",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2024-01-01T00:00:00", "2024-13-01T00:00:00Z"],
)
async def test_hand_made_cursor_with_a_datetime_out_of_range_is_refused(client, at: str) -> None:
    t = await create_tenant(client)
    cursor = _cursor(at, str(uuid.uuid4()))
    for url in ("/v1/users", "/v1/api-keys", "/v1/uploads", "/v1/connections"):
        _problem(await client.get(url, params={"cursor": cursor}, headers=t.admin.headers))


@pytest.mark.parametrize("seq", [2**63, -(2**63) - 1, 10**40, "12", 1.5])
async def test_hand_made_audit_cursor_with_a_huge_integer_is_refused(client, seq: Any) -> None:
    t = await create_tenant(client)
    r = await client.get("/v1/audit", params={"cursor": _cursor(seq)}, headers=t.admin.headers)
    _problem(r)


@pytest.mark.parametrize(
    "at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+23:59"]
)
async def test_since_and_until_at_the_edges_of_the_datetime_range_are_refused(client, at: str) -> None:
    t = await create_tenant(client)
    for url in ("/v1/audit", "/v1/audit/export"):
        for name in ("since", "until"):
            _problem(await client.get(url, params={name: at}, headers=t.admin.headers))


@pytest.mark.parametrize(
    "at", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "2030-01-01T00:00:00"]
)
async def test_api_key_expiry_at_the_edge_of_the_datetime_range_is_refused(client, at: str) -> None:
    t = await create_tenant(client)
    r = await client.post(
        "/v1/api-keys",
        json={"name": "k", "scopes": ["users.read"], "expires_at": at},
        headers=t.admin.headers,
    )
    _problem(r)


@pytest.mark.parametrize("value", [b"\xff\xfe", b"caf\xc3", b"a\x00b"])
async def test_multipart_form_field_with_invalid_utf8_or_nul_is_refused(client, value: bytes) -> None:
    t = await create_tenant(client)
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n'.encode()
        + value
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        "Content-Type: text/plain\r\n\r\nhello\r\n".encode()
        + f"--{boundary}--\r\n".encode()
    )
    r = await client.post(
        "/v1/uploads",
        content=body,
        headers={**t.admin.headers, "content-type": f"multipart/form-data; boundary={boundary}"},
    )
    _problem(r)


async def test_a_refused_write_logs_no_email_and_no_password_hash(client, json_log: io.StringIO) -> None:
    t = await create_tenant(client)
    email = f"leak-{uuid.uuid4().hex[:8]}\x00@x.test"
    r = await client.post(
        "/v1/users", json={"email": email, "role": "user", "password": PASSWORD}, headers=t.admin.headers
    )
    assert r.status_code == 400, r.text
    logged = json_log.getvalue()
    assert "$argon2" not in logged
    assert email.split("\x00")[0] not in logged


async def _failed_statement(settings: Settings, value: object) -> DBAPIError:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as caught:
                await conn.execute(text("SELECT CAST(:v AS integer)"), {"v": value})
    finally:
        await engine.dispose()
    return caught.value


async def test_database_errors_never_log_statement_parameters(
    settings: Settings, json_log: io.StringIO
) -> None:
    secret = f"$argon2id$v=19$m=65536,t=3,p=4${uuid.uuid4().hex}"
    exc = await _failed_statement(settings, secret)
    assert secret not in str(exc)
    logging.getLogger("filegate.errors").error("boom", exc_info=exc)
    logged = json_log.getvalue()
    assert "boom" in logged
    assert secret not in logged and "argon2id" not in logged


async def test_database_error_messages_that_quote_the_value_are_not_logged(
    settings: Settings, json_log: io.StringIO
) -> None:
    """asyncpg puts the refused value into its own message ("invalid input for query argument $1: ...")."""
    value = 10**30 + 4242
    exc = await _failed_statement(settings, value)
    logging.getLogger("filegate.errors").error("boom", exc_info=exc)
    logged = json_log.getvalue()
    assert "boom" in logged and "DataError" in logged
    assert str(value) not in logged


# --- emails: one identity per person, whatever the Unicode form ------------------------------------------
def _fullwidth(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


@pytest.mark.parametrize(
    "variant",
    [
        lambda e: _fullwidth(e.split("@")[0]) + "@" + e.split("@")[1],  # fullwidth compatibility forms
        lambda e: e.split("@")[0] + "@" + _fullwidth(e.split("@")[1].upper()),
        lambda e: e.replace("a", "\u1d2c", 1),  # MODIFIER LETTER CAPITAL A: NFKC makes it "A"
        lambda e: e.upper(),
    ],
    ids=["fullwidth-local", "fullwidth-domain", "modifier-letter", "upper"],
)
async def test_email_in_another_unicode_form_is_the_same_user(client, variant: Any) -> None:
    t = await create_tenant(client)
    twin = variant(t.admin_email)
    assert twin != t.admin_email
    r = await client.post("/v1/users", json={"email": twin, "role": "user"}, headers=t.admin.headers)
    _problem(r, 409, "conflict")
    await login(client, t.slug, twin)


@pytest.mark.parametrize("invisible", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u202e"])
async def test_email_with_an_invisible_character_is_refused(client, invisible: str) -> None:
    t = await create_tenant(client)
    domain = t.admin_email.split("@", 1)[1]
    r = await client.post(
        "/v1/users", json={"email": f"ad{invisible}min@{domain}", "role": "user"}, headers=t.admin.headers
    )
    _problem(r)
    slug = f"t-{uuid.uuid4().hex[:12]}"
    r = await client.post(
        "/v1/tenants",
        json={"name": "N", "slug": slug, "admin_email": f"a{invisible}@x.test", "admin_password": PASSWORD},
        headers=bearer(OPERATOR_TOKEN),
    )
    _problem(r)


async def test_tenant_slug_with_a_trailing_newline_is_refused(client) -> None:
    slug = f"t-{uuid.uuid4().hex[:12]}"
    r = await client.post(
        "/v1/tenants",
        json={"name": "N", "slug": slug + "\n", "admin_email": f"a@{slug}.test", "admin_password": PASSWORD},
        headers=bearer(OPERATOR_TOKEN),
    )
    _problem(r)


# --- the class, enumerated: every string any request body can carry is constrained ------------------------
# Strings never stored or compared as text: hashed (passwords), parsed (tokens), or checked by the login
# service itself so that a refused login still counts as a failed one.
UNCONSTRAINED = {
    ("LoginRequest", "tenant"),
    ("LoginRequest", "email"),
    ("LoginRequest", "password"),
    ("LoginRequest", "totp"),
    ("TotpConfirm", "code"),
    ("RefreshRequest", "refresh_token"),
    ("LogoutRequest", "refresh_token"),
    ("PasswordChange", "current_password"),
    ("PasswordChange", "new_password"),
    ("UserCreate", "password"),
    ("TenantCreate", "admin_password"),
}


# Objects decoded again, by the connection's kind, into the `KINDS` structs (which are checked too).
DECODED_BY_KIND = {("ConnectionPatch", "config"), ("ConnectionPatch", "secrets")}


def _strings(info: Any, where: tuple[str, str]) -> Iterator[tuple[tuple[str, str], Any]]:
    mi = msgspec.inspect
    if isinstance(info, mi.StrType):
        yield where, info
    elif isinstance(info, mi.StructType):
        for f in info.fields:
            if (info.cls.__name__, f.name) not in DECODED_BY_KIND:
                yield from _strings(f.type, (info.cls.__name__, f.name))
    elif isinstance(info, mi.UnionType):
        for t in info.types:
            yield from _strings(t, where)
    elif isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        yield from _strings(info.item_type, where)
    elif isinstance(info, mi.DictType):
        yield from _strings(info.key_type, where)
        yield from _strings(info.value_type, where)
    elif isinstance(info, mi.AnyType):
        raise AssertionError(f"{where}: an untyped value; decode it into a typed Struct")


def _refuses_control_characters(pattern: str) -> bool:
    # Anchored at both ends (`anchored`), every negated class leaves out NUL and its fellows, and no bare `.`.
    if not (pattern.startswith("^(?:") and pattern.endswith(END)):
        return False
    negated = re.findall(r"\[\^((?:\\.|[^\]])*)\]", pattern)
    bare_dot = re.search(r"(?<!\\)\.(?![^\[]*\])", pattern)
    return all("\\x00-" in cls for cls in negated) and bare_dot is None


def test_every_string_of_every_request_body_refuses_control_characters(settings: Settings) -> None:
    from connectors.schemas import KINDS
    from gateway.app import create_app

    app = create_app(settings)
    bodies: set[Any] = set()
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            data = handler.parsed_fn_signature.parameters.get("data")
            if data is not None:
                bodies.add(data.annotation)
    # `PATCH /v1/connections/{id}` takes config and secrets as objects and decodes them by kind.
    bodies.update(t for pair in KINDS.values() for t in pair)
    assert len(bodies) > 10, bodies
    checked = 0
    for body in bodies:
        for where, info in _strings(msgspec.inspect.type_info(body), ("<body>", "")):
            checked += 1
            if where in UNCONSTRAINED:
                continue
            assert info.pattern and _refuses_control_characters(info.pattern), (where, info.pattern)
            for bad in HOSTILE:
                if bad == "\u2028" and info.pattern == TEXT_PATTERN:
                    continue  # multi-line text may break lines
                assert re.search(info.pattern, f"a{bad}") is None, (where, bad)
    assert checked > 30


async def test_migration_rewrites_stored_emails_into_the_canonical_form(client, test_db, owner_conn) -> None:
    """Rows stored before NFKC + casefold (as `lower()` left them) can still sign in afterwards."""
    from alembic import command

    from gateway.migrate import alembic_config
    from tests.conftest import APP_ROLE

    t = await create_tenant(client)
    domain = t.admin_email.split("@", 1)[1]
    old_forms = {
        f"straße@{domain}": f"strasse@{domain}",
        f"\uff41\uff42@{domain}": f"ab@{domain}",
        f"a\u200bb@{domain}": None,  # invisible: left for the operator, never silently merged
    }
    ids = {}
    for stored in old_forms:
        ids[stored] = await owner_conn.fetchval(
            "INSERT INTO users (id, tenant_id, email, role, password_hash, disabled, totp_enabled) "
            "SELECT gen_random_uuid(), tenant_id, $1, 'user', password_hash, false, false FROM users "
            "WHERE tenant_id = $2 AND email = $3 RETURNING id",
            stored,
            uuid.UUID(t.id),
            t.admin_email,
        )
    cfg = alembic_config(test_db.owner_url, APP_ROLE)
    await asyncio.to_thread(command.downgrade, cfg, "0008_extension_mismatch")
    await asyncio.to_thread(command.upgrade, cfg, "head")
    for stored, canonical in old_forms.items():
        now = await owner_conn.fetchval("SELECT email FROM users WHERE id = $1", ids[stored])
        assert now == (canonical or stored)
    await login(client, t.slug, f"STRASSE@{domain}")
    await login(client, t.slug, f"straße@{domain}")


@pytest.mark.parametrize("value", ["9999999999999999999", "\u00b2", "\u0661\u0662", "+5", " 5", "-1"])
async def test_hand_parsed_integer_headers_are_refused_not_a_500(client, value: str) -> None:
    t = await create_tenant(client)
    tus = {**t.admin.headers, "Tus-Resumable": "1.0.0"}
    raw = value.encode("latin-1", errors="ignore") or value.encode()  # header bytes as a client sends them
    r = await client.post("/v1/tus/", headers={**tus, "Upload-Length": raw})
    assert 400 <= r.status_code < 500, r.text
    r = await client.post("/v1/tus/", headers={**tus, "Upload-Length": "10"})
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    r = await client.patch(
        location,
        content=b"x",
        headers={**tus, "Upload-Offset": raw, "Content-Type": "application/offset+octet-stream"},
    )
    assert 400 <= r.status_code < 500, r.text
    r = await client.post(
        "/v1/uploads",
        content=b"x",
        headers={**t.admin.headers, "Content-Type": "text/plain", "Content-Length": raw},
    )
    assert 400 <= r.status_code < 500, r.text
