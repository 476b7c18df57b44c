"""At most ``phone_limit`` sessions per phone: the repo's Conflict; migration 0004 on old rows
(one session per phone then), and 0010 that lifts the unique index (MAX_SESSIONS_PER_PHONE)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.exc import IntegrityError

from wagate.errors import Conflict
from wagate.settings import to_async_url
from wagate.storage.db import Database, alembic_config, create_engine, migrate
from wagate.storage.repos.sessions import SessionRepo
from wagate.storage.tables import sessions as t


async def test_a_second_session_with_the_phone_is_phone_registered(
    session_repo: SessionRepo,
) -> None:
    await session_repo.create("a", engine="sandbox", phone="6281234567890")
    with pytest.raises(Conflict) as info:
        await session_repo.create("b", engine="sandbox", phone="6281234567890")
    assert info.value.code == "phone_registered"
    assert info.value.message == "phone +6281234567890 is already registered to session 'a'"
    with pytest.raises(Conflict) as again:
        await session_repo.create("a", engine="sandbox", phone="6289999999999")
    assert again.value.message == "session 'a' already exists"
    await session_repo.create("c", engine="sandbox")
    await session_repo.create("d", engine="sandbox")  # any number of sessions without a phone


async def test_migration_keeps_a_shared_phone_on_the_oldest_session(database_url: str) -> None:
    url = to_async_url(database_url)
    await asyncio.to_thread(command.downgrade, alembic_config(url), "0003")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        ("old", "6281111111111", t0),
        ("newer", "6281111111111", t0 + timedelta(hours=1)),
        ("same-time-b", "6282222222222", t0),
        ("same-time-a", "6282222222222", t0),
        ("blank", "", t0),
        ("blank-too", "", t0),
        ("none", None, t0),
        ("alone", "6283333333333", t0),
    ]
    db = Database(create_engine(url))
    async with db.begin() as conn:
        for sid, phone, at in rows:
            values = {"id": sid, "phone": phone, "created_at": at, "updated_at": at}
            await conn.execute(t.insert().values(**values))
    await db.aclose()

    await migrate(url, "0009")

    db = Database(create_engine(url))
    try:
        async with db.begin() as conn:
            found = dict((await conn.execute(sa.select(t.c.id, t.c.phone))).all())
        assert found == {
            "old": "6281111111111",
            "newer": None,
            "same-time-a": "6282222222222",
            "same-time-b": None,
            "blank": None,
            "blank-too": None,
            "none": None,
            "alone": "6283333333333",
        }
        with pytest.raises(IntegrityError):
            async with db.begin() as conn:
                values = {"id": "x", "phone": "6283333333333", "created_at": t0, "updated_at": t0}
                await conn.execute(t.insert().values(**values))
    finally:
        await db.aclose()

    await migrate(url)  # 0010: a phone may have several sessions; the limit is the repo's
    db = Database(create_engine(url))
    try:
        async with db.begin() as conn:
            values = {"id": "x", "phone": "6283333333333", "created_at": t0, "updated_at": t0}
            await conn.execute(t.insert().values(**values))
    finally:
        await db.aclose()


async def test_a_phone_takes_up_to_its_limit_and_the_refusal_names_it(
    session_repo: SessionRepo,
) -> None:
    for sid in ("a", "b", "c", "d"):
        await session_repo.create(sid, engine="sandbox", phone="6281234567890", phone_limit=4)
    with pytest.raises(Conflict) as info:
        await session_repo.create("e", engine="sandbox", phone="6281234567890", phone_limit=4)
    assert info.value.code == "phone_registered"
    assert info.value.message == (
        "phone +6281234567890 already has 4 sessions ('a', 'b', 'c', 'd'): "
        "MAX_SESSIONS_PER_PHONE is 4"
    )
    assert await session_repo.get("e") is None  # refused with its insert: nothing left behind
    assert await session_repo.sessions_of_phone("6281234567890") == ["a", "b", "c", "d"]
