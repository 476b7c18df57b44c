"""``wagate admin create-user``: a user of the admin API, made in the control plane's database."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

from wagate.cli import app
from wagate.clock import ManualClock
from wagate.control.admins import AdminAuth
from wagate.errors import Unauthorized
from wagate.storage.db import Database
from wagate.storage.repos.admins import AdminRepo

_CLEARED = ("WAGATE_DATABASE_URL", "DATABASE_URL", "WAGATE_ADMIN_USER", "WAGATE_ADMIN_PASSWORD")


async def _cli(tmp_path: Path, *args: str, database_url: str | None, input: str = "") -> Result:
    env: dict[str, str | None] = dict.fromkeys(_CLEARED)
    env |= {"WAGATE_DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": database_url}
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env, input=input)


async def _signs_in(db: Database, username: str, password: str) -> bool:
    clock = ManualClock()
    auth = AdminAuth(AdminRepo(db, clock), clock, secret="x" * 32, ttl=timedelta(hours=1))
    try:
        await auth.login(username, password)
    except Unauthorized:
        return False
    return True


async def test_create_user_then_update_its_password(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    made = await _cli(
        tmp_path,
        "admin",
        "create-user",
        "ops",
        "--password",
        "first pass",
        database_url=database_url,
    )
    assert made.exit_code == 0, made.output
    assert "admin user ops is ready" in made.output
    assert await _signs_in(db, "ops", "first pass")

    again = await _cli(
        tmp_path,
        "admin",
        "create-user",
        "ops",
        "--password",
        "other pass",
        database_url=database_url,
    )
    assert again.exit_code == 1
    assert "exists" in again.output and "--update" in again.output

    updated = await _cli(
        tmp_path,
        "admin",
        "create-user",
        "ops",
        "--password",
        "other pass",
        "--update",
        database_url=database_url,
    )
    assert updated.exit_code == 0, updated.output
    assert await _signs_in(db, "ops", "other pass")
    assert not await _signs_in(db, "ops", "first pass")


async def test_the_password_is_asked_for_when_not_given(
    tmp_path: Path, database_url: str, db: Database
) -> None:
    made = await _cli(
        tmp_path,
        "admin",
        "create-user",
        "ops",
        database_url=database_url,
        input="hidden pass\nhidden pass\n",
    )
    assert made.exit_code == 0, made.output
    assert "hidden pass" not in made.output
    assert await _signs_in(db, "ops", "hidden pass")


async def test_clear_failures(tmp_path: Path, database_url: str) -> None:
    short = await _cli(
        tmp_path, "admin", "create-user", "ops", "--password", "short", database_url=database_url
    )
    assert short.exit_code == 1 and "password" in short.output
    nowhere = await _cli(
        tmp_path, "admin", "create-user", "ops", "--password", "long enough", database_url=None
    )
    assert nowhere.exit_code == 1 and "DATABASE_URL" in nowhere.output
