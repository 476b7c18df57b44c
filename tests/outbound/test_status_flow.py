"""queued → sent → delivered → read, failures, retries, and the events they emit."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.outbound.conftest import ALICE, ALICE_JID, Rig, RigFactory
from wagate.clock import ManualClock
from wagate.domain.message import Message, ReceiptStatus
from wagate.engine.base import ReceiptEvent
from wagate.errors import InvalidInput, TransientError
from wagate.outbound.media_fetch import MediaFetcher
from wagate.outbound.rules import SendRequest
from wagate.outbound.sender import Sender
from wagate.outbound.service import SendService
from wagate.storage.db import Database
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.outbound import OutboundRepo
from wagate.storage.spool import MediaSpool
from wagate.testing import connected, eventually, lost, until
from wagate.webhooks.events import Event


def receipt(wa_id: str, status: ReceiptStatus, by: str | None = None) -> ReceiptEvent:
    return ReceiptEvent(ALICE_JID, (wa_id,), status, datetime.now(UTC), by)


async def test_receipts_move_a_message_forward_and_emit_acks(rig: Rig) -> None:
    link = await rig.connect()
    sent = (await rig.send(text="hello")).json()
    wa_id = sent["messageId"]
    await rig.wait_status(sent["id"], "sent")
    link.push(receipt(wa_id, ReceiptStatus.DELIVERED))
    delivered = await rig.wait_status(sent["id"], "delivered")
    assert delivered["deliveredAt"] is not None and delivered["readAt"] is None
    link.push(receipt(wa_id, ReceiptStatus.READ))
    read = await rig.wait_status(sent["id"], "read")
    assert read["readAt"] is not None
    link.push(receipt(wa_id, ReceiptStatus.DELIVERED))  # late and out of order: ignored
    link.push(receipt(wa_id, ReceiptStatus.PLAYED))
    await rig.wait_status(sent["id"], "played")
    assert [e["messageId"] for e in rig.outbox.of(Event.MESSAGE_SENT)] == [wa_id]
    acks = rig.outbox.of(Event.MESSAGE_ACK)
    assert [a["status"] for a in acks] == ["delivered", "read", "played"]
    assert acks[0]["id"] == sent["id"] and acks[0]["chat"] == ALICE_JID


async def test_a_receipt_before_the_sent_write_is_kept(rig: Rig) -> None:
    await rig.create()
    queued = (await rig.send(text="early")).json()
    await rig.gateway.sender.receipt("s1", receipt(queued["messageId"], ReceiptStatus.DELIVERED))
    assert (await rig.get(queued["id"]))["status"] == "delivered"
    row = await rig.gateway.outbound.mark_sent(
        queued["id"], wa_msg_id=queued["messageId"], at=datetime.now(UTC), payload=None
    )
    assert row is not None and row.status == "delivered" and row.sent_at is not None


async def test_receipts_for_unknown_ids_change_nothing(rig: Rig) -> None:
    link = await rig.connect()
    sent = (await rig.send(text="x")).json()
    await rig.wait_status(sent["id"], "sent")
    link.push(receipt("NOT-OURS", ReceiptStatus.READ))
    link.push(receipt(sent["messageId"], ReceiptStatus.DELIVERED))  # handled after it, in order
    await rig.wait_status(sent["id"], "delivered")  # so the unknown one was handled: not "read"
    acks = rig.outbox.of(Event.MESSAGE_ACK)
    assert [(a["id"], a["status"]) for a in acks] == [(sent["id"], "delivered")]


async def test_messages_queued_offline_go_out_in_order_on_connect(rig: Rig) -> None:
    await rig.create()
    ids = [(await rig.send(text=f"m{i}")).json()["id"] for i in range(5)]
    assert [(await rig.get(i))["status"] for i in ids] == ["queued"] * 5
    link = await rig.connect()
    await eventually(lambda: len(link.sent) == 5)
    assert [m.text for m in link.sent] == [f"m{i}" for i in range(5)]
    for i in ids:
        await rig.wait_status(i, "sent")


async def test_transient_failure_stays_queued_until_reconnect(rig: Rig) -> None:
    link = await rig.connect()
    link.send_error = TransientError("socket closed")
    queued = (await rig.send(text="later")).json()
    await eventually(lambda: rig.gateway.sender.draining() == ["s1"])
    message = await _wait_for_error(rig, queued["id"])
    assert (message["status"], message["error"]) == ("queued", "socket closed")
    assert message["attempts"] >= 1
    rig.engine.add([connected()])
    link.push(lost())
    await eventually(lambda: len(rig.engine.links) == 2 and rig.engine.links[1].sent != [])
    again = rig.engine.links[1].sent[0]
    assert (again.id, again.text) == (queued["messageId"], "later")  # the same WhatsApp id
    await rig.wait_status(queued["id"], "sent")
    assert rig.outbox.of(Event.MESSAGE_FAILED) == []


async def test_permanent_failure_fails_with_an_event(rig: Rig) -> None:
    link = await rig.connect()
    link.send_error = InvalidInput("to", "not on WhatsApp")
    queued = (await rig.send(text="nobody")).json()
    failed = await rig.wait_status(queued["id"], "failed")
    assert failed["error"] == "not on WhatsApp"
    (event,) = rig.outbox.of(Event.MESSAGE_FAILED)
    assert (event["id"], event["error"], event["attempts"]) == (queued["id"], "not on WhatsApp", 1)
    # the queue moves on
    link.send_error = None
    nxt = (await rig.send(text="next")).json()
    await rig.wait_status(nxt["id"], "sent")


async def test_too_many_attempts_fail_the_message(make_rig: RigFactory) -> None:
    rig = await make_rig(send_max_attempts=3, send_retry_max_ms=1)
    link = await rig.connect()
    link.send_error = TransientError("timeout")
    queued = (await rig.send(text="doomed")).json()
    failed = await rig.wait_status(queued["id"], "failed")
    assert failed["attempts"] == 3
    assert "gave up after 3 attempts" in failed["error"]
    assert len(rig.outbox.of(Event.MESSAGE_FAILED)) == 1


async def test_a_message_whose_media_vanished_fails(make_rig: RigFactory) -> None:
    rig = await make_rig(outbox_inline_max_bytes=0)
    await rig.create()
    queued = (
        await rig.send(type="document", media={"base64": "JVBERi0=", "filename": "a.pdf"})
    ).json()
    outbox = rig.gateway.settings.data_dir / "outbox" / "s1"
    (spooled,) = outbox.iterdir()
    spooled.unlink()
    await rig.connect()
    failed = await rig.wait_status(queued["id"], "failed")
    assert "cannot be read" in failed["error"]


async def _wait_for_error(rig: Rig, message_id: int) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def has_error() -> bool:
        found.update(await rig.get(message_id))
        return found["error"] is not None

    await until(has_error, limit_s=5)
    return found


async def test_an_idle_session_finds_rows_queued_elsewhere(make_rig: RigFactory) -> None:
    rig = await make_rig(send_poll_ms=50)
    link = await rig.connect()
    await eventually(lambda: rig.gateway.sender.draining() == ["s1"])
    queued = await _queued_by_another_process(rig, "from afar")
    await eventually(lambda: len(link.sent) == 1)
    await rig.wait_status(queued.id, "sent")


async def _queued_by_another_process(rig: Rig, text: str) -> Message:
    """Queue a message as another process would: into the database, no doorbell rung here."""
    g = rig.gateway
    fetcher = MediaFetcher(max_bytes=1024, timeout_s=1)
    elsewhere = SendService(g.outbound, g.messages, g.sessions, g.spool, fetcher)
    message, created = await elsewhere.send("s1", SendRequest(to=ALICE, type="text", text=text))
    assert created and message.status == "queued"
    return message


async def test_a_sent_status_is_never_kept_without_its_event(rig: Rig) -> None:
    rig.outbox.fail(Event.MESSAGE_SENT)
    link = await rig.connect()
    queued = (await rig.send(text="once")).json()
    await rig.wait_status(queued["id"], "sent")
    # the first "sent" write failed with its event: the message stayed queued and went
    # out again under the same WhatsApp id (which WhatsApp drops as a duplicate)
    assert [m.id for m in link.sent] == [queued["messageId"]] * 2
    assert [e["id"] for e in rig.outbox.of(Event.MESSAGE_SENT)] == [queued["id"]]


async def test_a_failed_status_is_never_kept_without_its_event(rig: Rig) -> None:
    rig.outbox.fail(Event.MESSAGE_FAILED)
    link = await rig.connect()
    link.send_error = InvalidInput("to", "not on WhatsApp")
    queued = (await rig.send(text="nobody")).json()
    await rig.wait_status(queued["id"], "failed")
    (event,) = rig.outbox.of(Event.MESSAGE_FAILED)
    assert (event["id"], event["error"], event["attempts"]) == (queued["id"], "not on WhatsApp", 2)


async def test_a_receipt_is_never_applied_without_its_event(rig: Rig) -> None:
    rig.outbox.fail(Event.MESSAGE_ACK)
    link = await rig.connect()
    sent = (await rig.send(text="hello")).json()
    await rig.wait_status(sent["id"], "sent")
    link.push(receipt(sent["messageId"], ReceiptStatus.DELIVERED))

    async def audited() -> bool:
        return bool(await rig.gateway.audit.recent("s1", event="error"))

    await until(audited, limit_s=5)  # the failed receipt is audited, not only logged
    (entry,) = await rig.gateway.audit.recent("s1", event="error")
    assert entry.data["code"] == "EVENT_FAILED"
    assert entry.data["ctx"] == {"wa_msg_id": sent["messageId"]}
    assert (await rig.get(sent["id"]))["status"] == "sent"  # neither the status nor the ack
    assert rig.outbox.of(Event.MESSAGE_ACK) == []
    link.push(receipt(sent["messageId"], ReceiptStatus.DELIVERED))  # WhatsApp sends it again
    await rig.wait_status(sent["id"], "delivered")
    assert [a["status"] for a in rig.outbox.of(Event.MESSAGE_ACK)] == ["delivered"]


class ReceiptsDown(OutboundRepo):
    async def apply_receipt(self, *args: Any, **kw: Any) -> list[Message]:
        raise ConnectionError("database went away")


async def test_a_failing_receipt_is_audited_never_raised(
    db: Database, clock: ManualClock, tmp_path: Path
) -> None:
    audit = AuditRepo(db, clock)
    spool = MediaSpool(tmp_path / "outbox", inline_max_bytes=1024)
    sender = Sender(ReceiptsDown(db, clock), spool, clock=clock, audit=audit)
    read = ReceiptEvent("1@s.whatsapp.net", ("3EB0AA",), ReceiptStatus.READ, datetime.now(UTC))
    await sender.receipt("s1", read)  # does not raise into the session's loop
    (entry,) = await audit.recent("s1", event="error")
    assert entry.data["code"] == "EVENT_FAILED"
    assert entry.data["ctx"]["wa_msg_id"] == "3EB0AA"
    assert "ConnectionError: database went away" in entry.data["msg"]
