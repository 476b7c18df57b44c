"""A control plane's fleet parts from settings: the JWT secret, the admin from the environment."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from wagate.clock import ManualClock
from wagate.errors import ConfigError
from wagate.roles.registry import admin_auth, ensure_configured_admin, load_or_create_jwt_secret
from wagate.settings import Settings
from wagate.storage.db import Database
from wagate.storage.repos.admins import AdminRepo
from wagate.testing import settings_for_tests


def _settings(tmp_path: Path, database_url: str, **kw: object) -> Settings:
    return settings_for_tests(tmp_path / "data", database_url=database_url, **kw)


def test_a_configured_secret_wins(tmp_path: Path, database_url: str) -> None:
    settings = _settings(tmp_path, database_url, jwt_secret="c" * 32)
    assert load_or_create_jwt_secret(settings) == "c" * 32
    assert not settings.jwt_secret_file.exists()


def test_a_secret_is_generated_once_and_kept_private(tmp_path: Path, database_url: str) -> None:
    settings = _settings(tmp_path, database_url)
    secret = load_or_create_jwt_secret(settings)
    assert len(secret) >= 32
    assert load_or_create_jwt_secret(settings) == secret
    assert stat.S_IMODE(settings.jwt_secret_file.stat().st_mode) == 0o600
    settings.jwt_secret_file.write_text("short\n")
    assert len(load_or_create_jwt_secret(settings)) >= 32  # too weak to keep: replaced


def test_a_short_configured_secret_stops_start_up(tmp_path: Path, database_url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _settings(tmp_path, database_url, jwt_secret="short")
    assert "WAGATE_JWT_SECRET" in caught.value.message


async def test_tokens_outlive_a_restart_with_the_kept_secret(
    tmp_path: Path, database_url: str, db: Database, clock: ManualClock
) -> None:
    settings = _settings(tmp_path, database_url)
    first = admin_auth(db, clock, settings)
    await first.create_user("admin", "correct horse")
    token = await first.login("admin", "correct horse")
    assert await admin_auth(db, clock, settings).verify(token) == "admin"


async def test_the_admin_of_the_environment_is_made_then_updated(
    tmp_path: Path, database_url: str, db: Database, clock: ManualClock
) -> None:
    assert (
        await ensure_configured_admin(
            admin_auth(db, clock, _settings(tmp_path, database_url)),
            _settings(tmp_path, database_url),
        )
        is None
    )
    for password in ("first password", "second password"):
        settings = _settings(tmp_path, database_url, admin_user="ops", admin_password=password)
        auth = admin_auth(db, clock, settings)
        user = await ensure_configured_admin(auth, settings)
        assert user is not None and user.username == "ops"
        assert await auth.verify(await auth.login("ops", password)) == "ops"
    assert await AdminRepo(db, clock).get("ops") is not None


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"admin_user": "ops"}, "WAGATE_ADMIN_PASSWORD"),
        ({"admin_password": "long enough"}, "WAGATE_ADMIN_USER"),
        ({"admin_user": "ops", "admin_password": "short"}, "WAGATE_ADMIN_PASSWORD"),
        ({"admin_user": "o p s", "admin_password": "long enough"}, "WAGATE_ADMIN_USER"),
    ],
)
async def test_a_half_or_bad_admin_configuration_names_the_variable(
    tmp_path: Path,
    database_url: str,
    db: Database,
    clock: ManualClock,
    given: dict[str, str],
    named: str,
) -> None:
    settings = _settings(tmp_path, database_url, **given)
    with pytest.raises(ConfigError) as caught:
        await ensure_configured_admin(admin_auth(db, clock, settings), settings)
    assert named in caught.value.message
