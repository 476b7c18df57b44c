"""Every event commits in the transaction of the state it reports: both or neither.

Each test records the real outbox rows and makes the event write fail at the
point where, before, a crash or a database outage between the state write and
the event write lost the event.
"""

from __future__ import annotations

from typing import Any

import pytest

from wagate.clock import ManualClock
from wagate.domain.group import GroupInfo
from wagate.domain.session import DisconnectKind, SessionState
from wagate.engine.base import LinkOptions
from wagate.ingest.groups import GroupSync
from wagate.storage.auth_state import MemoryAuthStore
from wagate.storage.db import Database
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.groups import GroupRepo
from wagate.storage.repos.sessions import SessionRepo
from wagate.storage.repos.webhooks import DeliveryRepo, SubscriptionRepo
from wagate.testing import ScriptedLink
from wagate.webhooks.events import Event
from wagate.webhooks.outbox import Outbox
from wagate.webhooks.session_events import StatusEvents


class Outage(Exception):
    """The database went away in the middle of a transaction."""


class FailingOutbox(Outbox):
    """The real outbox, whose next ``fail`` event writes fail (the transaction is lost)."""

    def __init__(self, db: Database, clock: ManualClock, fail: int = 1) -> None:
        super().__init__(db, clock)
        self.fail = fail

    async def emit_in(self, conn: Any, event: Event, session_id: str | None, data: Any) -> int:
        count = await super().emit_in(conn, event, session_id, data)
        if self.fail > 0:
            self.fail -= 1
            raise Outage(f"connection lost after writing {event}")
        return count


@pytest.fixture
async def deliveries(db: Database, clock: ManualClock) -> DeliveryRepo:
    subs = SubscriptionRepo(db, clock)
    await subs.create("all", url="http://127.0.0.1/h", events=["*"], secret="s" * 16, headers={})
    return DeliveryRepo(db, clock)


async def events(deliveries: DeliveryRepo) -> list[tuple[str, dict[str, Any]]]:
    found = sorted(await deliveries.find(), key=lambda d: d.id)
    return [(d.event, d.payload["data"]) for d in found]


async def test_a_session_state_and_its_event_commit_together(
    db: Database, clock: ManualClock, deliveries: DeliveryRepo
) -> None:
    outbox = FailingOutbox(db, clock, fail=0)
    sessions = SessionRepo(db, clock, on_write=StatusEvents(outbox))
    await sessions.create("s1", engine="sandbox")
    await sessions.record_connected(
        "s1",
        phone_number="628",
        jid="628:1@s.whatsapp.net",
        wa_name="Me",
        device_name=None,
        lid=None,
    )
    # recorded by the write itself: no listener, no second write was needed
    ((name, data),) = await events(deliveries)
    assert name == "session.status"
    assert (data["state"], data["status"], data["phone"], data["pushName"]) == (
        "connected",
        "connected",
        "628",
        "Me",
    )
    await sessions.update("s1", proxy="socks5://p:1")  # not a lifecycle change: no event
    assert len(await events(deliveries)) == 1

    outbox.fail = 1
    with pytest.raises(Outage):
        await sessions.record_disconnected(
            "s1", SessionState.RECONNECTING, DisconnectKind.CONNECTION_LOST, "network down"
        )
    session = await sessions.get("s1")
    assert session is not None and session.status is SessionState.CONNECTED  # neither was kept
    assert len(await events(deliveries)) == 1

    await sessions.record_disconnected(
        "s1", SessionState.RECONNECTING, DisconnectKind.CONNECTION_LOST, "network down"
    )
    name, data = (await events(deliveries))[-1]
    assert (name, data["state"], data["disconnectKind"], data["reason"]) == (
        "session.status",
        "reconnecting",
        "connection_lost",
        "network down",
    )


async def test_a_qr_and_its_event_commit_together(
    db: Database, clock: ManualClock, deliveries: DeliveryRepo
) -> None:
    sessions = SessionRepo(db, clock, on_write=StatusEvents(Outbox(db, clock)))
    await sessions.create("s1", engine="sandbox")
    await sessions.record_qr("s1", "2@abc", clock.now(), clock.now())
    await sessions.update("s1", pair_code="ABCD-EFGH")
    (qr, qr_data), (pair, pair_data) = await events(deliveries)
    assert (qr, qr_data["qr"], qr_data["expiresAt"]) == (
        "session.qr",
        "2@abc",
        clock.now().isoformat(),
    )
    assert (pair, pair_data["pairCode"]) == ("session.qr", "ABCD-EFGH")


async def test_a_group_row_and_its_event_commit_together(
    db: Database, clock: ManualClock, deliveries: DeliveryRepo
) -> None:
    groups, audit = GroupRepo(db, clock), AuditRepo(db, clock)
    outbox = FailingOutbox(db, clock)
    sync = GroupSync(groups, audit, outbox)
    link = ScriptedLink([], MemoryAuthStore("s1"), LinkOptions())
    link.group_list = [GroupInfo("1@g.us", "Team", 3)]
    with pytest.raises(Outage):
        await sync.discover("s1", link)
    assert await groups.get("s1", "1@g.us") is None  # no row without its group.discovered
    assert await events(deliveries) == []

    assert await sync.discover("s1", link) == 1
    link.group_list = [GroupInfo("1@g.us", "Team HQ", 3)]
    outbox.fail = 1
    with pytest.raises(Outage):
        await sync.discover("s1", link)
    group = await groups.get("s1", "1@g.us")
    assert group is not None and group.name == "Team"  # no rename without its event
    assert await audit.recent("s1", event="group_rename") == []

    await sync.discover("s1", link)
    assert [name for name, _ in await events(deliveries)] == ["group.discovered", "group.renamed"]
    (rename,) = await audit.recent("s1", event="group_rename")
    assert rename.data == {"from": "Team", "to": "Team HQ", "wa_group_id": "1@g.us"}
