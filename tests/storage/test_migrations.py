from __future__ import annotations

import asyncio
import os
import secrets
import sys

import pytest
import sqlalchemy as sa

from tests.conftest import PG_URL, _pg_admin, _with_db
from wagate.storage.db import Database, create_engine
from wagate.storage.tables import metadata


async def test_migrated_schema_matches_the_tables(db: Database) -> None:
    def inspect(sync_conn: sa.Connection) -> dict[str, set[str]]:
        insp = sa.inspect(sync_conn)
        return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()}

    async with db.begin() as conn:
        found = await conn.run_sync(inspect)
    for table in metadata.sorted_tables:
        assert table.name in found, table.name
        assert found[table.name] == {c.name for c in table.columns}, table.name


async def test_sessions_has_every_seed_000_column(db: Database) -> None:
    seed_000 = {
        "qr",
        "qr_generated_at",
        "qr_expires_at",
        "is_ready",
        "is_connected",
        "phone_number",
        "device_name",
        "last_connected_at",
        "last_disconnected_at",
        "disconnect_reason",
        "updated_at",
    }
    assert seed_000 <= {c.name for c in metadata.tables["sessions"].columns}


@pytest.mark.skipif(not PG_URL, reason="the migration lock is PostgreSQL's (SQLite has one writer)")
async def test_processes_starting_together_migrate_one_after_the_other() -> None:
    """A fleet starts many processes at once; each migrates, none fails on the others' DDL."""
    assert PG_URL is not None
    name = f"wagate_m_{secrets.token_hex(5)}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    url = _with_db(PG_URL, name).replace("postgresql://", "postgresql+asyncpg://", 1)
    env = {**os.environ, "DATABASE_URL": _with_db(PG_URL, name)}
    try:
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "wagate", "migrate", env=env, stderr=asyncio.subprocess.PIPE
            )
            for _ in range(4)
        ]
        for child in children:
            _, err = await asyncio.wait_for(child.communicate(), 50)
            assert child.returncode == 0, err.decode()
        db = Database(create_engine(url))
        try:
            async with db.begin() as conn:
                version = (
                    await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
                ).all()
        finally:
            await db.aclose()
        assert len(version) == 1
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
