"""``admin_users``: the admin API's users; a hash is given and kept, never a password."""

from __future__ import annotations

from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from wagate.clock import Clock
from wagate.domain.admin import AdminUser
from wagate.errors import Conflict
from wagate.storage.db import Database
from wagate.storage.tables import admin_users as t
from wagate.storage.upsert import insert_for


def _to_user(row: RowMapping) -> AdminUser:
    return AdminUser(**dict(row))


class AdminRepo:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create(self, username: str, password_hash: str) -> AdminUser:
        """A new user; :class:`Conflict` (``admin_exists``) when the name is taken."""
        now = self._clock.now()
        values = {
            "username": username,
            "password_hash": password_hash,
            "created_at": now,
            "updated_at": now,
        }
        try:
            async with self._db.begin() as conn:
                await conn.execute(t.insert().values(**values))
        except IntegrityError:
            raise Conflict(f"admin user {username!r} exists", code="admin_exists") from None
        return await self._require(username)

    async def update(self, username: str, password_hash: str) -> bool:
        """Replace the user's hash; False when there is no such user."""
        values = {"password_hash": password_hash, "updated_at": self._clock.now()}
        async with self._db.begin() as conn:
            result = await conn.execute(t.update().where(t.c.username == username).values(**values))
        return bool(result.rowcount)

    async def save(self, username: str, password_hash: str) -> AdminUser:
        """Create the user, or replace its hash when it exists."""
        now = self._clock.now()
        async with self._db.begin() as conn:
            stmt = insert_for(conn, t).values(
                username=username, password_hash=password_hash, created_at=now, updated_at=now
            )
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["username"],
                    set_={"password_hash": password_hash, "updated_at": now},
                )
            )
        return await self._require(username)

    async def get(self, username: str) -> AdminUser | None:
        async with self._db.begin() as conn:
            result = await conn.execute(t.select().where(t.c.username == username))
            row = result.mappings().first()
        return _to_user(row) if row else None

    async def _require(self, username: str) -> AdminUser:
        user = await self.get(username)
        assert user is not None
        return user
