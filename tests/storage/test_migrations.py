from __future__ import annotations

import sqlalchemy as sa

from wagate.storage.db import Database
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
