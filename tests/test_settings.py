from __future__ import annotations

from pathlib import Path

import pytest

from wagate.errors import ConfigError
from wagate.settings import load_settings, to_async_url


def test_defaults_are_the_embedded_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    s = load_settings()
    assert s.port == 8080
    assert s.engine == "neonize"
    assert s.sqlalchemy_url == "sqlite+aiosqlite:///data/wagate.db"
    assert s.auth_root == Path("data/auth")
    assert (s.backoff_base_ms, s.backoff_max_ms, s.qr_expiry_ms) == (1000, 30000, 300000)


def test_seed_names_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "API_KEY": "k",
        "PORT": "3000",
        "AUTH_DIR": "/data/auth",
        "LOG_LEVEL": "DEBUG",
        "WORKER_BACKOFF_BASE_MS": "250",
        "WORKER_BACKOFF_MAX_MS": "9000",
        "WORKER_ID": "w-7",
        "WORKER_PORT": "8001",
        "WORKER_MAX_SESSIONS": "50",
        "DATABASE_URL": "postgres://u@db:5432/x",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_settings()
    assert (s.api_key, s.port, s.auth_root, s.log_level) == ("k", 3000, Path("/data/auth"), "debug")
    assert (s.backoff_base_ms, s.backoff_max_ms, s.worker_id) == (250, 9000, "w-7")
    assert (s.worker_port, s.worker_max_sessions) == (8001, 50)
    assert s.sqlalchemy_url == "postgresql+asyncpg://u@db:5432/x"


def test_sessions_dir_is_an_alias_of_auth_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONS_DIR", "/srv/sessions")
    assert load_settings().auth_root == Path("/srv/sessions")


def test_wagate_names_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "3000")
    monkeypatch.setenv("WAGATE_PORT", "9000")
    assert load_settings().port == 9000


@pytest.mark.parametrize(
    ("var", "value", "needle"),
    [
        ("PORT", "eighty", "invalid setting PORT (got 'eighty')"),
        ("WORKER_BACKOFF_BASE_MS", "-5", "WORKER_BACKOFF_BASE_MS"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL"),
        ("WAGATE_ENGINE", "baileys", "WAGATE_ENGINE"),
    ],
)
def test_bad_value_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert needle in info.value.message
    assert "\n" not in info.value.message


def test_database_url_value_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://root:hunter2@db/x")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "DATABASE_URL" in info.value.message
    assert "hunter2" not in info.value.message


def test_async_urls() -> None:
    assert to_async_url("postgresql://a@b/c") == "postgresql+asyncpg://a@b/c"
    assert to_async_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
