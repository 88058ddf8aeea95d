"""Hostile input at the edge: each gets a 4xx problem with a stable code, never a 500."""

from __future__ import annotations

import pytest

from tests.factories import create_tenant


def _problem(r, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status
    assert body["request_id"] == r.headers["x-request-id"]
    if code:
        assert body["code"] == code
    assert "Traceback" not in r.text


@pytest.mark.parametrize(
    "body",
    [b"{bad", b"", b"null", b"[]", b'"string"', b"\xff\xfe\x00", b'{"tenant": "a", "email": "b@c.d"'],
)
async def test_malformed_json_is_validation_failed(client, body: bytes) -> None:
    r = await client.post("/v1/auth/login", content=body, headers={"content-type": "application/json"})
    _problem(r, 400, "validation_failed")


async def test_unknown_fields_are_refused(client) -> None:
    t = await create_tenant(client)
    r = await client.post(
        "/v1/users", json={"email": "x@y.test", "role": "user", "is_admin": True}, headers=t.admin.headers
    )
    _problem(r, 400, "validation_failed")
    assert "is_admin" in r.json()["detail"]
    r = await client.put("/v1/policy", json={"max_file_size": 10, "surprise": 1}, headers=t.admin.headers)
    _problem(r, 400, "validation_failed")


@pytest.mark.parametrize(
    "body",
    [
        {"email": 5, "role": "user"},
        {"email": "x@y.test", "role": "superuser"},
        {"email": "not-an-email", "role": "user"},
        {"email": "x@y.test", "role": ["admin"]},
        {"email": "x@y.test"},
    ],
)
async def test_wrong_types_are_refused(client, body) -> None:
    t = await create_tenant(client)
    r = await client.post("/v1/users", json=body, headers=t.admin.headers)
    _problem(r, 400, "validation_failed")


async def test_ten_megabyte_body_is_refused(client) -> None:
    body = b'{"tenant": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    r = await client.post("/v1/auth/login", content=body, headers={"content-type": "application/json"})
    _problem(r, 413, "body_too_large")


@pytest.mark.parametrize("shape", ["array", "object", "inside_known_field"])
async def test_ten_thousand_deep_json_is_refused(client, shape: str) -> None:
    t = await create_tenant(client)
    depth = 10_000
    if shape == "array":
        body = b"[" * depth + b"]" * depth
    elif shape == "object":
        body = b'{"a":' * depth + b"1" + b"}" * depth
    else:
        body = (
            b'{"max_file_size": 10, "archive_limits": '
            + b'{"max_depth":' * depth
            + b"1"
            + b"}" * depth
            + b"}"
        )
    r = await client.put(
        "/v1/policy", content=body, headers={**t.admin.headers, "content-type": "application/json"}
    )
    assert 400 <= r.status_code < 500, r.text
    _problem(r, r.status_code)


async def test_unknown_route_and_method(client) -> None:
    _problem(await client.get("/v1/does-not-exist"), 404, "not_found")
    r = await client.delete("/v1/me")
    _problem(r, 405, "method_not_allowed")


async def test_bad_path_and_query_parameters(client) -> None:
    t = await create_tenant(client)
    _problem(await client.get("/v1/users/not-a-uuid", headers=t.admin.headers), 404)
    _problem(
        await client.get("/v1/users", params={"limit": "many"}, headers=t.admin.headers),
        400,
        "validation_failed",
    )
    _problem(
        await client.get("/v1/users", params={"cursor": "!!notacursor"}, headers=t.admin.headers),
        400,
        "validation_failed",
    )
    _problem(
        await client.get("/v1/audit", params={"since": "yesterday"}, headers=t.admin.headers),
        400,
        "validation_failed",
    )


async def test_limit_above_500_is_clamped(client) -> None:
    t = await create_tenant(client)
    r = await client.get("/v1/audit", params={"limit": 100000}, headers=t.admin.headers)
    assert r.status_code == 200


async def test_hostile_strings_are_stored_verbatim_not_interpreted(client) -> None:
    t = await create_tenant(client)
    name = "'; DROP TABLE users; --\u202e<script>"
    r = await client.post(
        "/v1/api-keys", json={"name": name, "scopes": ["users.read"]}, headers=t.admin.headers
    )
    assert r.status_code == 201
    listed = (await client.get("/v1/api-keys", headers=t.admin.headers)).json()["items"]
    assert listed[0]["name"] == name
