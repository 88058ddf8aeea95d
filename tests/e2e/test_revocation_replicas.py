"""Three gateway processes on one database and one Redis: revocation made on one replica holds on every
replica, also after Redis lost every key (a restart without persistence, a failover, an eviction)."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import PASSWORD, LiveServer, _free_port, make_tenant, start_server, stop_all
from tests.redis_loss import lose_redis_keys


@dataclass
class Replicas:
    urls: list[str]
    redis_prefix: str
    first: LiveServer


@pytest.fixture
def cluster(live_server: LiveServer, tmp_path: Path) -> Iterator[Replicas]:
    """Three `filegate serve` processes sharing a Redis prefix of their own (the flush below is theirs)."""
    env = dict(live_server.env, FILEGATE_REDIS_KEY_PREFIX=f"fge2e:{uuid.uuid4().hex}:")
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for i in range(3):
            port = str(_free_port())
            procs.append(start_server(dict(env, FILEGATE_PORT=port), tmp_path / f"replica{i}.log"))
            urls.append(f"http://127.0.0.1:{port}")
        yield Replicas(
            urls, env["FILEGATE_REDIS_KEY_PREFIX"], LiveServer(urls[0], tmp_path / "replica0.log", env)
        )
    finally:
        stop_all(procs)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _statuses(urls: list[str], token: str, path: str = "/v1/me") -> list[int]:
    return [httpx.get(url + path, headers=_bearer(token)).status_code for url in urls]


def test_revocation_holds_on_every_replica_after_redis_loses_its_keys(cluster: Replicas) -> None:
    replicas = cluster.urls
    a, b, c = replicas
    t = make_tenant(cluster.first)
    admin = _bearer(t.access_token)
    tokens: dict[str, dict[str, str]] = {}
    for name, role in (("leaver", "user"), ("disabled", "user"), ("demoted", "manager")):
        email = f"{name}-{uuid.uuid4().hex[:6]}@{t.slug}.test"
        r = httpx.post(
            f"{a}/v1/users", json={"email": email, "role": role, "password": PASSWORD}, headers=admin
        )
        assert r.status_code == 201, r.text
        login = httpx.post(
            f"{b}/v1/auth/login", json={"tenant": t.slug, "email": email, "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        tokens[name] = {"id": r.json()["id"], **login.json()}
    for name in tokens:  # every replica has seen every token (and cached its answers)
        assert _statuses(replicas, tokens[name]["access_token"]) == [200, 200, 200]
    assert _statuses(replicas, tokens["demoted"]["access_token"], "/v1/users") == [200, 200, 200]

    leaver = tokens["leaver"]
    r = httpx.post(
        f"{c}/v1/auth/logout",
        json={"refresh_token": leaver["refresh_token"]},
        headers=_bearer(leaver["access_token"]),
    )
    assert r.status_code == 204
    r = httpx.patch(f"{a}/v1/users/{tokens['disabled']['id']}", json={"disabled": True}, headers=admin)
    assert r.status_code == 200
    r = httpx.patch(f"{b}/v1/users/{tokens['demoted']['id']}", json={"role": "viewer"}, headers=admin)
    assert r.status_code == 200

    def refused_everywhere() -> None:
        for name in tokens:
            assert _statuses(replicas, tokens[name]["access_token"]) == [401, 401, 401], name
        assert _statuses(replicas, tokens["demoted"]["access_token"], "/v1/users") == [401, 401, 401]
        assert _statuses(replicas, t.access_token) == [200, 200, 200]  # the admin is untouched

    refused_everywhere()
    assert asyncio.run(lose_redis_keys(cluster.redis_prefix)) > 0
    refused_everywhere()
