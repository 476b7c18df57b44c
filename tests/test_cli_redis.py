"""``wagate redis rebuild``: seed 004's keys written from the database, or one clear line."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from click.testing import Result
from redis import asyncio as aioredis
from typer.testing import CliRunner

from tests.storage.conftest import raw_redis, redis_prefix, redis_url, snapshot
from wagate.cli import app
from wagate.storage.repos.sessions import SessionRepo

__all__ = ["raw_redis", "redis_prefix", "redis_url"]  # the fixtures this module uses

# variables a developer's shell may carry that would point the command elsewhere
_CLEARED = (
    "DATABASE_URL",
    "WAGATE_DATABASE_URL",
    "REDIS_URL",
    "WAGATE_REDIS_URL",
    "WAGATE_REDIS_PREFIX",
)


async def _rebuild(tmp_path: Path, **env: str) -> Result:
    values: dict[str, str | None] = dict.fromkeys(_CLEARED)
    values |= {"WAGATE_DATA_DIR": str(tmp_path / "data"), **env}
    return await asyncio.to_thread(CliRunner().invoke, app, ["redis", "rebuild"], env=values)


async def test_it_writes_every_sessions_keys_and_says_how_many(
    session_repo: SessionRepo,
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    raw_redis: aioredis.Redis,
    tmp_path: Path,
) -> None:
    await session_repo.create("s1", engine="sandbox", phone="6281111111111")
    await session_repo.create("s2", engine="sandbox")

    done = await _rebuild(
        tmp_path, DATABASE_URL=database_url, REDIS_URL=redis_url, WAGATE_REDIS_PREFIX=redis_prefix
    )

    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == "wrote the Redis keys of 2 sessions"
    keys = await snapshot(raw_redis, redis_prefix)
    assert keys[f"{redis_prefix}session:s1:status"] == ("pending", False)
    assert keys[f"{redis_prefix}phone:6281111111111:session"] == ("s1", False)
    assert f"{redis_prefix}session:s2:created" in keys


@pytest.mark.parametrize("missing", ["DATABASE_URL", "REDIS_URL"])
async def test_a_missing_url_is_one_line_naming_it(
    missing: str, database_url: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": database_url, "REDIS_URL": "redis://127.0.0.1:6379/0"}
    del env[missing]

    failed = await _rebuild(tmp_path, **env)

    assert failed.exit_code == 1
    (line,) = failed.stderr.strip().splitlines()
    assert missing in line and line.startswith("error:")


async def test_an_unreachable_redis_is_one_line(database_url: str, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    failed = await _rebuild(
        tmp_path,
        DATABASE_URL=database_url,
        REDIS_URL=f"redis://127.0.0.1:{port}/0",
        WAGATE_REDIS_TIMEOUT_MS="2000",
    )

    assert failed.exit_code == 1
    (line,) = failed.stderr.strip().splitlines()
    assert "redis unavailable" in line
