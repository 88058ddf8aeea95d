"""The deployment files keep their hardening: docker-compose.yml, Dockerfile and .dockerignore.

Static checks only (no Docker engine, no network): the files are parsed and read as a reviewer would.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

FILEGATE_SERVICES = {"gateway", "worker", "migrate"}
DATA_SERVICES = {"postgres", "redis", "clamd"}
# Services allowed to run without a non-root `user:`. Every image in the file runs as its own
# unprivileged user, so there is none; a future exception must be named here and explained in the
# compose file.
ROOT_USER_EXCEPTIONS: set[str] = set()


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


COMPOSE_DATA = _compose()
SERVICES: dict[str, dict[str, Any]] = COMPOSE_DATA["services"]


def _networks(service: dict[str, Any]) -> set[str]:
    nets = service.get("networks", [])
    return set(nets) if isinstance(nets, list) else set(nets.keys())


def _secret_targets(service: dict[str, Any]) -> set[str]:
    targets = set()
    for item in service.get("secrets", []):
        if isinstance(item, str):
            targets.add(item)
        else:
            targets.add(item.get("target") or item["source"])
    return targets


def _secret_sources(service: dict[str, Any]) -> set[str]:
    return {item if isinstance(item, str) else item["source"] for item in service.get("secrets", [])}


def _published_host_ips(service: dict[str, Any]) -> list[str]:
    """The host address of each published port; "" when a port is published on every address."""
    ips = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ips.append(str(port.get("host_ip", "")))
            continue
        parts = str(port).split(":")
        # "8080" and "8080:8080" bind every address; "IP:HOST:CONTAINER" names one.
        ips.append(":".join(parts[:-2]) if len(parts) >= 3 else "")
    return ips


# --- docker-compose.yml -----------------------------------------------------------------------------


def test_compose_uses_the_spec_without_a_version_key() -> None:
    assert "version" not in COMPOSE_DATA
    assert set(SERVICES) >= FILEGATE_SERVICES | DATA_SERVICES


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_is_hardened(name: str) -> None:
    service = SERVICES[name]
    assert "ALL" in service.get("cap_drop", []), f"{name}: cap_drop must contain ALL"
    assert not service.get("cap_add"), f"{name}: adds capabilities back"
    assert "no-new-privileges:true" in service.get("security_opt", []), f"{name}: no-new-privileges"
    assert service.get("read_only") is True, f"{name}: root filesystem must be read-only"
    assert not service.get("privileged"), f"{name}: privileged"
    assert "network_mode" not in service, f"{name}: must stay on the compose networks"
    assert any(str(t).split(":", 1)[0] == "/tmp" for t in service.get("tmpfs", [])), f"{name}: /tmp tmpfs"
    assert service.get("mem_limit"), f"{name}: memory limit"
    assert service.get("pids_limit"), f"{name}: pids limit"
    assert service.get("restart") in {"no", "always", "unless-stopped", "on-failure"} or str(
        service.get("restart", "")
    ).startswith("on-failure:"), f"{name}: restart policy"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_runs_as_a_non_root_user(name: str) -> None:
    user = SERVICES[name].get("user")
    if name in ROOT_USER_EXCEPTIONS:
        pytest.skip(f"{name} is a documented exception")
    assert user is not None, f"{name}: no `user:` (the image default may be root)"
    uid, _, gid = str(user).partition(":")
    assert uid not in {"", "0", "root"}, f"{name}: runs as root ({user})"
    assert gid not in {"0", "root"}, f"{name}: runs with the root group ({user})"


def test_root_user_exceptions_are_exactly_the_documented_ones() -> None:
    without_user = {
        name for name, s in SERVICES.items() if str(s.get("user", "0")).partition(":")[0] in {"0", "root"}
    }
    assert without_user == ROOT_USER_EXCEPTIONS


def test_filegate_services_use_the_image_user() -> None:
    for name in FILEGATE_SERVICES:
        assert SERVICES[name]["user"] == "10001:10001"


def test_backend_network_is_internal() -> None:
    networks = COMPOSE_DATA["networks"]
    assert networks["backend"]["internal"] is True
    assert not (networks.get("edge") or {}).get("internal"), "edge carries the published port"


@pytest.mark.parametrize("name", sorted(DATA_SERVICES))
def test_data_services_are_internal_only_and_unpublished(name: str) -> None:
    service = SERVICES[name]
    internal = {n for n, cfg in COMPOSE_DATA["networks"].items() if (cfg or {}).get("internal") is True}
    assert _networks(service), f"{name}: attached to no network (would land on the default one)"
    assert _networks(service) <= internal, f"{name}: on a non-internal network"
    assert not service.get("ports"), f"{name}: publishes ports"


def test_only_filegate_services_reach_the_backend() -> None:
    on_backend = {name for name, s in SERVICES.items() if "backend" in _networks(s)}
    assert on_backend == FILEGATE_SERVICES | DATA_SERVICES


def test_only_the_gateway_is_on_the_edge_and_publishes() -> None:
    assert {name for name, s in SERVICES.items() if "edge" in _networks(s)} == {"gateway"}
    assert {name for name, s in SERVICES.items() if s.get("ports")} == {"gateway"}


def test_gateway_publishes_on_loopback_only() -> None:
    ips = _published_host_ips(SERVICES["gateway"])
    assert ips, "the gateway publishes its port"
    assert set(ips) == {"127.0.0.1"}


def test_dependencies_wait_for_health_and_migrations() -> None:
    gateway = SERVICES["gateway"]["depends_on"]
    assert gateway["migrate"]["condition"] == "service_completed_successfully"
    assert gateway["redis"]["condition"] == "service_healthy"
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["migrate"]["restart"] == "no"
    for name in DATA_SERVICES:
        assert SERVICES[name].get("healthcheck", {}).get("test"), f"{name}: healthcheck"


def test_postgres_creates_the_owner_role_and_database_from_a_secret() -> None:
    env = SERVICES["postgres"]["environment"]
    assert env["POSTGRES_USER"] == "filegate_owner"
    assert env["POSTGRES_DB"] == "filegate"
    assert "POSTGRES_PASSWORD" not in env
    assert env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres-owner-password"
    assert "postgres-owner-password" in _secret_targets(SERVICES["postgres"])


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_secrets_referenced_by_a_service_are_mounted_in_it(name: str) -> None:
    service = SERVICES[name]
    env = service.get("environment", {})
    assert isinstance(env, dict)
    for key, value in env.items():
        for secret in re.findall(r"\{secret:([A-Za-z0-9._-]+)\}", str(value)):
            assert secret in _secret_targets(service), f"{name}: {key} uses {secret}, which is not mounted"
        if str(value).startswith("/run/secrets/"):
            assert str(value).removeprefix("/run/secrets/") in _secret_targets(service), f"{name}: {key}"
    declared = COMPOSE_DATA["secrets"]
    for source in _secret_sources(service):
        assert declared[source]["file"].startswith("./secrets/"), source


def test_no_password_is_written_into_the_compose_file() -> None:
    for name, service in SERVICES.items():
        for key, value in (service.get("environment") or {}).items():
            if key.endswith("_URL") and "@" in str(value):
                userinfo = str(value).split("://", 1)[1].split("@", 1)[0]
                if ":" in userinfo:
                    password = userinfo.split(":", 1)[1]
                    assert re.fullmatch(r"\{secret:[A-Za-z0-9._-]+\}", password), f"{name}: {key}"
            if key.endswith(("_TOKEN", "_PASSWORD")):
                assert re.fullmatch(r"\{secret:[A-Za-z0-9._-]+\}", str(value)), f"{name}: {key}"


def test_filegate_services_run_through_the_secrets_wrapper() -> None:
    for name in FILEGATE_SERVICES:
        service = SERVICES[name]
        assert service["entrypoint"][:3] == ["python", "-I", "-c"], name
        # An entrypoint override drops the image's CMD, so each service names its command.
        assert service["command"] == [name if name != "gateway" else "serve"], name


# --- the secrets wrapper itself ---------------------------------------------------------------------


class _Exec(Exception):
    """Raised by the stand-in for os.execvpe: the wrapper got as far as starting filegate."""


def _run_wrapper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], argv: list[str]
) -> dict[str, Any]:
    """Run the compose entrypoint script in-process, with tmp_path standing in for /run/secrets."""
    script = SERVICES["gateway"]["entrypoint"][3]
    assert "/run/secrets/" in script
    script = script.replace("/run/secrets/", f"{tmp_path}/")
    for key in list(os.environ):
        if key.startswith("FILEGATE_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    captured: dict[str, Any] = {}

    def fake_execvpe(file: str, args: list[str], environ: dict[str, str]) -> None:
        captured.update(file=file, args=args, env=environ)
        raise _Exec

    monkeypatch.setattr(os, "execvpe", fake_execvpe)
    monkeypatch.setattr(sys, "argv", ["-c", *argv])
    with pytest.raises(_Exec):
        exec(compile(script, "<compose entrypoint>", "exec"), {"__name__": "__main__"})
    return captured


def test_wrapper_fills_secrets_and_percent_encodes_them_in_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.engine import make_url

    (tmp_path / "postgres-app-password").write_text("p@ss:w/rd%#\n")
    (tmp_path / "operator-token").write_text("tok/en@1\n\n")
    url = SERVICES["gateway"]["environment"]["FILEGATE_DATABASE_URL"]
    done = _run_wrapper(
        tmp_path,
        monkeypatch,
        {
            "FILEGATE_DATABASE_URL": url,
            "FILEGATE_OPERATOR_TOKEN": "{secret:operator-token}",
            "UNRELATED": "{secret:operator-token}",
        },
        ["tenant", "create"],
    )
    assert (done["file"], done["args"]) == ("filegate", ["filegate", "tenant", "create"])
    env = done["env"]
    parsed = make_url(env["FILEGATE_DATABASE_URL"])  # how Filegate and `filegate migrate` read it
    assert (parsed.username, parsed.password, parsed.host, parsed.database) == (
        "filegate_app",
        "p@ss:w/rd%#",
        "postgres",
        "filegate",
    )
    assert env["FILEGATE_OPERATOR_TOKEN"] == "tok/en@1"  # verbatim outside URLs, trailing newlines dropped
    assert env["UNRELATED"] == "{secret:operator-token}"  # only FILEGATE_* variables are touched
    assert env["PATH"] == os.environ["PATH"]


@pytest.mark.parametrize(
    ("files", "message"),
    [({}, "FILEGATE_METRICS_TOKEN needs the secret"), ({"metrics-token": "\n"}, "is empty")],
)
def test_wrapper_refuses_missing_or_empty_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str], message: str
) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    with pytest.raises(SystemExit) as exc:
        _run_wrapper(tmp_path, monkeypatch, {"FILEGATE_METRICS_TOKEN": "{secret:metrics-token}"}, ["serve"])
    assert message in str(exc.value.code)


def test_worker_healthcheck_names_real_code() -> None:
    """The worker's healthcheck is Python in YAML: make sure what it imports still exists."""
    test = SERVICES["worker"]["healthcheck"]["test"]
    assert test[:4] == ["CMD", "python", "-I", "-c"]
    compile(test[4], "<worker healthcheck>", "exec")
    from arq.worker import check_health  # noqa: F401

    from gateway.settings import Settings  # noqa: F401
    from workers.settings import worker_settings  # noqa: F401


# --- Dockerfile and .dockerignore -------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, rest = stripped.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_runs_as_a_fixed_non_root_user() -> None:
    users = [args for kw, args in _dockerfile_instructions() if kw == "USER"]
    assert users, "no USER instruction: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]} must be a numeric non-zero uid"
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_dockerfile_has_a_healthcheck_and_fetches_nothing_by_url() -> None:
    instructions = _dockerfile_instructions()
    healthchecks = [args for kw, args in instructions if kw == "HEALTHCHECK"]
    assert healthchecks and healthchecks[-1].upper() != "NONE"
    assert "/health/live" in healthchecks[-1]
    for kw, args in instructions:
        assert not (kw == "ADD" and re.search(r"\bhttps?://", args)), f"ADD {args}"


def test_dockerfile_is_multi_stage_on_slim_bookworm() -> None:
    instructions = _dockerfile_instructions()
    froms = [args for kw, args in instructions if kw == "FROM"]
    assert len(froms) >= 2
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in {f"{kw} {args}" for kw, args in instructions}
    assert ("ENTRYPOINT", '["filegate"]') in instructions
    assert ("CMD", '["serve"]') in instructions


def test_dockerfile_copies_every_package_pyproject_builds() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {args.split()[0].rstrip("/") for kw, args in _dockerfile_instructions() if kw == "COPY"}
    for pattern in includes:
        assert pattern.rstrip("*") in copied, f"Dockerfile does not COPY {pattern.rstrip('*')}/"
    assert "pyproject.toml" in copied


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    entries = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    for required in (
        ".git",
        ".venv",
        "var",
        "**/__pycache__",
        "tests",
        "bench",
        "node_modules",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        "secrets",
        ".env",
    ):
        assert required in entries, f".dockerignore lacks {required}"
