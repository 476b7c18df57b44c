"""``INSERT … ON CONFLICT`` for both dialects, in one place."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


def insert_for(conn: AsyncConnection, table: sa.Table) -> Any:
    """The dialect's ``insert`` construct, which has ``on_conflict_do_*``."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def insert_ignore(
    conn: AsyncConnection, table: sa.Table, values: dict[str, Any], keys: list[str]
) -> int | None:
    """Insert unless a row with the same ``keys`` exists; the new primary key, or None."""
    stmt = insert_for(conn, table).values(**values).on_conflict_do_nothing(index_elements=keys)
    result = await conn.execute(stmt.returning(table.c.id))
    new_id = result.scalar()
    return int(new_id) if new_id is not None else None
