from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

import pytest

from wagate.engine.sandbox import SandboxEngine
from wagate.errors import ConfigError
from wagate.logs import configure
from wagate.roles.serve import Gateway, make_dirs
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


@pytest.mark.parametrize(
    ("given", "level"),
    [("trace", "debug"), ("warn", "warning"), ("WARN", "warning"), ("fatal", "critical")]
    + [("silent", "off"), ("Info", "info"), ("warning", "warning")],
)
def test_log_level_takes_pino_names(
    monkeypatch: pytest.MonkeyPatch, given: str, level: str
) -> None:
    monkeypatch.setenv("LOG_LEVEL", given)
    assert load_settings().log_level == level


def test_log_level_off_logs_nothing() -> None:
    root = logging.getLogger()
    handlers, old = root.handlers[:], root.level
    try:
        configure("off")
        assert root.level > logging.CRITICAL
        assert not logging.getLogger("wagate.x").isEnabledFor(logging.CRITICAL)
    finally:
        root.handlers[:], root.level = handlers, old


@pytest.mark.parametrize(
    ("env", "overrides", "port"),
    [
        ({"WORKER_PORT": "8001"}, {}, 8001),
        ({"WORKER_PORT": "8001", "PORT": "3000"}, {}, 3000),
        ({"WORKER_PORT": "8001", "WAGATE_PORT": "9000", "PORT": "3000"}, {}, 9000),
        ({"WORKER_PORT": "8001"}, {"port": 7000}, 7000),
        ({}, {}, 8080),
    ],
)
def test_worker_port_is_the_port_when_no_port_is_set(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], overrides: dict[str, int], port: int
) -> None:
    for name in ("PORT", "WAGATE_PORT", "WORKER_PORT", "WAGATE_WORKER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert load_settings(**overrides).port == port


def test_port_variable_names_where_the_port_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PORT", "WAGATE_PORT", "WORKER_PORT", "WAGATE_WORKER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert load_settings().port_variable == "PORT"
    monkeypatch.setenv("WORKER_PORT", "8001")
    assert load_settings().port_variable == "WORKER_PORT"
    monkeypatch.setenv("PORT", "3000")
    assert load_settings().port_variable == "PORT"


def test_knobs_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "WAGATE_URL": "http://gw:1",
        "WAGATE_CLI_TIMEOUT_MS": "1500",
        "WAGATE_SANDBOX_PORT": "9100",
        "WAGATE_SQLITE_BUSY_TIMEOUT_MS": "1234",
        "WAGATE_SANDBOX_OPEN_TIMEOUT_MS": "700",
        "WAGATE_SANDBOX_CLOSE_TIMEOUT_MS": "300",
        "WAGATE_SANDBOX_REQUEST_TIMEOUT_MS": "900",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_settings()
    assert (s.gateway_url, s.cli_timeout_ms, s.sandbox_port) == ("http://gw:1", 1500, 9100)
    assert s.sqlite_busy_timeout_ms == 1234
    timeouts = (s.sandbox_open_timeout_ms, s.sandbox_close_timeout_ms)
    assert timeouts + (s.sandbox_request_timeout_ms,) == (700, 300, 900)


def test_each_package_reads_a_typed_view_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "WAGATE_STOP_TIMEOUT_MS": "2500",
        "WORKER_BACKOFF_BASE_MS": "250",
        "WAGATE_QR_EXPIRY_MS": "90000",
        "WAGATE_SEND_INTERVAL_MS": "1500",
        "WAGATE_LIVE_WINDOW_MS": "45000",
        "WAGATE_WEBHOOK_POLL_MS": "50",
        "WAGATE_SQLITE_BUSY_TIMEOUT_MS": "1234",
        "WAGATE_STORAGE": "local",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_settings()
    assert (s.worker.stop_timeout_s, s.worker.backoff.base_s) == (2.5, 0.25)
    assert s.worker.qr_expiry == timedelta(seconds=90)
    assert (s.send.interval_s, s.send.stop_timeout_s) == (1.5, 2.5)
    assert s.ingest.live_window == timedelta(seconds=45)
    assert (s.webhooks.poll_s, s.webhooks.stop_timeout_s) == (0.05, 2.5)
    assert s.storage.sqlite_busy_timeout_s == 1.234
    # the field is ``blob_store`` (``storage`` is the view); the variable is the same
    assert (s.blob_store, s.storage.blob_backend) == ("local", "local")


async def test_the_gateway_hands_the_knobs_on(tmp_path: Path, database_url: str) -> None:
    s = load_settings(
        engine="sandbox",
        data_dir=tmp_path / "data",
        database_url=database_url,
        api_key="k",
        sandbox_url="http://127.0.0.1:9",
        sandbox_key="sk",
        sandbox_open_timeout_ms=700,
        sandbox_close_timeout_ms=300,
        sandbox_request_timeout_ms=900,
        sqlite_busy_timeout_ms=1234,
    )
    async with Gateway(s) as gw:
        engine = gw.engine
        assert isinstance(engine, SandboxEngine)
        assert (engine._open_timeout_s, engine._close_timeout_s) == (0.7, 0.3)
        assert engine._request_timeout_s == 0.9
        assert engine._headers == {"X-Api-Key": "sk"}
        if gw.db.dialect == "sqlite":
            async with gw.db.begin() as conn:
                busy = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
            assert busy == 1234


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"AUTH_DIR": "/proc/x"}, "cannot create AUTH_DIR folder /proc/x: "),
        ({"WAGATE_DATA_DIR": "{file}"}, "cannot create WAGATE_DATA_DIR folder {file}: "),
        ({"SESSIONS_DIR": "{file}/sub"}, "cannot create SESSIONS_DIR folder {file}/sub: "),
        ({"WAGATE_MEDIA_DIR": "{file}/m"}, "cannot create WAGATE_MEDIA_DIR folder {file}/m: "),
    ],
)
async def test_a_folder_that_cannot_be_made_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], needle: str
) -> None:
    file = tmp_path / "a-file"
    file.write_text("x")
    monkeypatch.setenv("WAGATE_DATA_DIR", str(tmp_path / "data"))
    for k, v in env.items():
        monkeypatch.setenv(k, v.format(file=file))
    with pytest.raises(ConfigError) as info:
        make_dirs(load_settings())
    assert info.value.message.startswith(needle.format(file=file))
    assert "\n" not in info.value.message


# --- the proxy pool (seed 004) ------------------------------------------------------------


def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if "PROXY_URL" in name or name.endswith("PROXY_PROBE"):
            monkeypatch.delenv(name)


def test_numbered_proxy_urls_come_in_numeric_order(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_proxy_env(monkeypatch)
    monkeypatch.setenv("PROXY_URL_2", "socks5h://b:1080")
    monkeypatch.setenv("PROXY_URL_10", "socks5h://j:1080")
    monkeypatch.setenv("PROXY_URL_1", " socks5h://a:1080 ")
    s = load_settings()
    expected = ["socks5h://a:1080", "socks5h://b:1080", "socks5h://j:1080"]
    assert s.proxy_urls == expected
    assert s.proxy_pool.urls == tuple(expected)


def test_empty_numbered_proxy_urls_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_proxy_env(monkeypatch)
    monkeypatch.setenv("PROXY_URL_1", "")
    monkeypatch.setenv("PROXY_URL_2", "   ")
    monkeypatch.setenv("PROXY_URL_3", "socks5h://c:1080")
    assert load_settings().proxy_urls == ["socks5h://c:1080"]
    monkeypatch.delenv("PROXY_URL_3")
    assert load_settings().proxy_urls == []


def test_numbered_names_win_over_the_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """README: WAGATE_PROXY_URLS is "read only when no PROXY_URL_n is set"."""
    _no_proxy_env(monkeypatch)
    monkeypatch.setenv("WAGATE_PROXY_URLS", '["socks5h://x:1080"]')
    assert load_settings().proxy_urls == ["socks5h://x:1080"]
    monkeypatch.setenv("PROXY_URL_1", "socks5h://a:1080")
    assert load_settings().proxy_urls == ["socks5h://a:1080"]


def test_a_wagate_numbered_proxy_url_wins_over_the_seed_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As with every setting (``test_wagate_names_win``): WAGATE_PROXY_URL_1 over PROXY_URL_1."""
    _no_proxy_env(monkeypatch)
    monkeypatch.setenv("PROXY_URL_1", "socks5h://seed:1080")
    monkeypatch.setenv("WAGATE_PROXY_URL_1", "socks5h://ours:1080")
    monkeypatch.setenv("PROXY_URL_2", "socks5h://b:1080")
    assert load_settings().proxy_urls == ["socks5h://ours:1080", "socks5h://b:1080"]


@pytest.mark.parametrize(
    ("given", "probe"),
    [
        ("sandbox.local:9100", ("sandbox.local", 9100)),
        ("127.0.0.1:443", ("127.0.0.1", 443)),
        ("[::1]:1080", ("::1", 1080)),
    ],
)
def test_the_proxy_probe_parses_into_host_and_port(
    monkeypatch: pytest.MonkeyPatch, given: str, probe: tuple[str, int]
) -> None:
    _no_proxy_env(monkeypatch)
    monkeypatch.setenv("WAGATE_PROXY_PROBE", given)
    assert load_settings().proxy_pool.probe == probe


def test_without_a_probe_the_pool_uses_the_engines_target(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_proxy_env(monkeypatch)
    assert load_settings().proxy_pool.probe is None


@pytest.mark.parametrize("given", ["nohost", "host:", "host:port", "a b:80"])
def test_a_malformed_proxy_probe_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    _no_proxy_env(monkeypatch)
    monkeypatch.setenv("WAGATE_PROXY_PROBE", given)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "WAGATE_PROXY_PROBE" in info.value.message


def test_the_pool_settings_are_read_in_their_units(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_proxy_env(monkeypatch)
    env = {
        "MAX_SESSIONS_PER_PROXY": "3",
        "WAGATE_PROXY_CHECK_INTERVAL_MS": "45000",
        "WAGATE_PROXY_CHECK_TIMEOUT_MS": "2500",
        "WAGATE_PROXY_RECHECK_BASE_MS": "1000",
        "WAGATE_PROXY_RECHECK_MAX_MS": "8000",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    view = load_settings().proxy_pool
    assert (view.max_per_proxy, view.check_every) == (3, timedelta(seconds=45))
    assert view.check_timeout_s == 2.5
    assert (view.recheck.base_s, view.recheck.max_s) == (1.0, 8.0)


async def test_a_bad_numbered_proxy_url_stops_start_up_with_one_config_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    """A start-up error is one line naming the variable (``cli._run_role`` shows only a
    ConfigError so), wherever it is found: reading settings or starting the gateway."""
    _no_proxy_env(monkeypatch)
    monkeypatch.setenv("PROXY_URL_1", "http://user:s3cret-pw@10.0.0.1:8080")
    with pytest.raises(ConfigError) as info:
        s = load_settings(
            engine="sandbox", data_dir=tmp_path / "data", database_url=database_url, api_key="k"
        )
        async with Gateway(s):
            pass
    assert "PROXY_URL_1" in info.value.message
    assert "s3cret-pw" not in info.value.message
