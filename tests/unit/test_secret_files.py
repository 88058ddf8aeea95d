"""Every secret setting can come from a file named by `<NAME>_FILE`, as container secrets are mounted."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import SECRET_SETTINGS, Settings, SettingsError


def _secret(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content)
    return str(path)


def test_every_secret_setting_reads_its_file_with_the_trailing_newline_stripped(tmp_path: Path) -> None:
    env = {
        "FILEGATE_DATABASE_URL_FILE": _secret(tmp_path, "db", "postgresql+asyncpg://app:pw@db/fg\n"),
        "FILEGATE_MIGRATE_DATABASE_URL_FILE": _secret(tmp_path, "mdb", "postgresql+asyncpg://own:pw@db/fg\n"),
        "FILEGATE_REDIS_URL_FILE": _secret(tmp_path, "redis", "redis://:pw@redis:6379/0\n"),
        "FILEGATE_OPERATOR_TOKEN_FILE": _secret(tmp_path, "op", "operator-secret\n"),
        "FILEGATE_METRICS_TOKEN_FILE": _secret(tmp_path, "metrics", "metrics-secret"),
        "FILEGATE_KEYRING_FILE": _secret(tmp_path, "ring", '{"keys": []}\n'),
    }
    settings = Settings.from_env(env)
    assert settings.database.url == "postgresql+asyncpg://app:pw@db/fg"
    assert settings.database.migrate_url == "postgresql+asyncpg://own:pw@db/fg"
    assert settings.redis.url == "redis://:pw@redis:6379/0"
    assert settings.auth.operator_token == "operator-secret"
    assert settings.server.metrics_token == "metrics-secret"
    assert settings.auth.keyring == '{"keys": []}'


def test_the_secret_settings_are_the_ones_that_carry_credentials() -> None:
    assert {
        "DATABASE_URL",
        "MIGRATE_DATABASE_URL",
        "REDIS_URL",
        "OPERATOR_TOKEN",
        "METRICS_TOKEN",
        "KEYRING",
    } <= SECRET_SETTINGS


def test_a_keyring_file_variable_may_name_a_ring_path_like_the_variable_itself(tmp_path: Path) -> None:
    env = {"FILEGATE_KEYRING_FILE": _secret(tmp_path, "ring-path", "/run/secrets/credentials.json\n")}
    assert Settings.from_env(env).auth.keyring == "/run/secrets/credentials.json"


@pytest.mark.parametrize("name", sorted(SECRET_SETTINGS))
def test_a_secret_set_both_inline_and_as_a_file_is_refused_naming_both_and_not_the_value(
    tmp_path: Path, name: str
) -> None:
    env = {
        f"FILEGATE_{name}": "inline-secret-value",
        f"FILEGATE_{name}_FILE": _secret(tmp_path, "s", "file-secret-value"),
    }
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    assert f"FILEGATE_{name}" in message and f"FILEGATE_{name}_FILE" in message
    assert "secret-value" not in message


def test_an_unreadable_secret_file_is_refused_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="FILEGATE_OPERATOR_TOKEN_FILE"):
        Settings.from_env({"FILEGATE_OPERATOR_TOKEN_FILE": str(tmp_path / "absent")})


def test_a_file_variable_of_a_setting_that_is_not_secret_is_not_read(tmp_path: Path) -> None:
    env = {"FILEGATE_HOST_FILE": _secret(tmp_path, "host", "0.0.0.0\n")}
    assert Settings.from_env(env).server.host == "127.0.0.1"


def test_a_secret_file_wins_over_the_urls_a_running_filegate_dev_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commands fill unset URLs from `filegate dev`'s record; a URL given as a file is set, not unset (filling
    it would make the variable and its file both set, refused)."""
    from gateway import cli
    from gateway.embedded import STATE_FILE

    (tmp_path / STATE_FILE).write_text('{"FILEGATE_DATABASE_URL": "postgresql+asyncpg://embedded/db"}')
    monkeypatch.setenv("FILEGATE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("FILEGATE_DATABASE_URL", raising=False)
    monkeypatch.setenv(
        "FILEGATE_DATABASE_URL_FILE", _secret(tmp_path, "db", "postgresql+asyncpg://mounted/db\n")
    )
    assert cli._settings().database.url == "postgresql+asyncpg://mounted/db"


def test_a_malformed_inline_credential_ring_is_a_settings_error_naming_the_variable() -> None:
    from gateway.keys import load_credential_ring

    settings = Settings.from_env({"FILEGATE_MODE": "production", "FILEGATE_KEYRING": "{" + "x" * 5000})
    with pytest.raises(SettingsError, match="FILEGATE_KEYRING"):
        load_credential_ring(settings)
