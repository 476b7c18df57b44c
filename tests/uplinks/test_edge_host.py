"""An edge worker's host: its status and inbound bodies, its instance poll and its claim guard."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from wagate.clock import ManualClock
from wagate.domain.lease import CLAIM_TTL_HEADER
from wagate.domain.message import ContactCard, Location, MediaRef, MessageKind
from wagate.domain.session import ChangeKind, DisconnectKind, SessionChange, SessionState
from wagate.engine.base import Link, MessageEvent
from wagate.storage.edge_spool import EdgeSpool
from wagate.testing import eventually
from wagate.uplinks.edge import EdgeClient
from wagate.uplinks.edge_bodies import inbound_body, status_body
from wagate.uplinks.edge_host import INBOUND, EdgeHost
from wagate.uplinks.edge_reports import Courier, StatusReports
from wagate.uplinks.edge_sends import Sends
from wagate.worker.host import Worker
from wagate.worker.record import MemoryRecord

from .edge_rig import BASE_URL, SECRET, FakeWorker, Proxy, Wakes

PHONE = "6281234567890"
JID = f"{PHONE}@s.whatsapp.net"
LID = "123456789012345@lid"
AT = datetime(2026, 1, 1, tzinfo=UTC)
INSTANCES = "/disconnected-instances"


# --- status_body ---------------------------------------------------------------------------


def change(state: SessionState, kind: ChangeKind, /, **data: Any) -> SessionChange:
    return SessionChange("i1", state, kind, AT, data)


def test_a_qr_is_connecting_with_a_png_data_url_and_the_raw_code() -> None:
    body = status_body(change(SessionState.QR, ChangeKind.QR, qr="2@abc,def", expires_at="x"))
    assert body is not None
    assert (body["status"], body["qr"]) == ("CONNECTING", "2@abc,def")
    prefix = "data:image/png;base64,"
    assert body["qr_code"].startswith(prefix)
    assert base64.b64decode(body["qr_code"].removeprefix(prefix)).startswith(b"\x89PNG\r\n\x1a\n")
    assert set(body) == {"status", "qr_code", "qr"}


@pytest.mark.parametrize(
    ("the_change", "expected"),
    [
        (
            change(
                SessionState.CONNECTED, ChangeKind.CONNECTED, phone=PHONE, jid=JID, push_name="Ana"
            ),
            {"status": "CONNECTED", "qr_code": None, "phone": PHONE, "jid": JID, "pushName": "Ana"},
        ),
        (
            change(SessionState.CONNECTING, ChangeKind.PAIR_CODE, code="ABCD-1234"),
            {"status": "CONNECTING", "pairingCode": "ABCD-1234"},
        ),
        (
            change(SessionState.LOGGED_OUT, ChangeKind.DISCONNECTED, kind="logged_out", reason="x"),
            {"status": "DISCONNECTED", "qr_code": None, "reason": "logged_out"},
        ),
        (
            change(SessionState.FAILED, ChangeKind.DISCONNECTED, kind=DisconnectKind.BANNED.value),
            {"status": "DISCONNECTED", "qr_code": None, "reason": "banned"},
        ),
        (
            change(SessionState.RECONNECTING, ChangeKind.DISCONNECTED, kind="connection_lost"),
            {"status": "DISCONNECTED", "qr_code": None, "reason": "connection_lost"},
        ),
        (
            change(SessionState.FAILED, ChangeKind.DISCONNECTED),
            {"status": "DISCONNECTED", "qr_code": None, "reason": "failed"},
        ),
        (change(SessionState.CONNECTING, ChangeKind.STATE), {"status": "CONNECTING"}),
        (
            change(SessionState.STOPPED, ChangeKind.STATE),
            {"status": "DISCONNECTED", "qr_code": None, "reason": "stopped"},
        ),
        (change(SessionState.CONNECTED, ChangeKind.STATE), None),  # CONNECTED said it already
    ],
    ids=[
        "connected",
        "pair-code",
        "logged-out",
        "banned",
        "connection-lost",
        "failed-without-kind",
        "state-connecting",
        "state-stopped",
        "state-connected",
    ],
)
def test_status_body_of_each_change(the_change: SessionChange, expected: Any) -> None:
    assert status_body(the_change) == expected


# --- inbound_body --------------------------------------------------------------------------


def event(**fields: Any) -> MessageEvent:
    values: dict[str, Any] = {
        "id": "3EB0IN1",
        "chat": JID,
        "sender": LID,
        "timestamp": datetime(2026, 1, 2, 10, 0, 5, tzinfo=timezone(timedelta(hours=7))),
        "kind": MessageKind.TEXT,
        "text": "hello",
    }
    return MessageEvent(**{**values, **fields})


def test_an_inbound_body_names_the_sender_by_phone_when_known() -> None:
    body = inbound_body("i1", event(sender_pn=f"{PHONE}:12@s.whatsapp.net", sender_lid=LID,
                                    push_name="Ana"))  # fmt: skip
    assert body == {
        "instanceId": "i1",
        "messageId": "3EB0IN1",
        "from": f"{PHONE}:12@s.whatsapp.net",
        "phone": PHONE,  # the digits, without the device
        "chat": JID,
        "pushName": "Ana",
        "type": "text",
        "text": "hello",
        "timestamp": int(datetime(2026, 1, 2, 3, 0, 5, tzinfo=UTC).timestamp()),
        "fromMe": False,
        "isGroup": False,
        "senderLid": LID,
    }


def test_an_inbound_body_of_a_group_reply_from_a_lid_only_sender() -> None:
    body = inbound_body(
        "i1",
        event(chat="120363000000000001@g.us", quoted_id="3EB0Q", from_me=True, text="yes"),
    )
    assert (body["from"], body["phone"]) == (LID, None)
    assert (body["chat"], body["isGroup"], body["fromMe"]) == (
        "120363000000000001@g.us",
        True,
        True,
    )
    assert body["quotedId"] == "3EB0Q"
    assert not {"reactTo", "senderLid", "location", "contact", "media", "mediaError"} & set(body)


def test_an_inbound_body_carries_a_reaction_a_location_and_a_contact() -> None:
    reaction = inbound_body("i1", event(kind=MessageKind.REACTION, text="👍", react_to="3EB0X"))
    assert (reaction["type"], reaction["text"], reaction["reactTo"]) == ("reaction", "👍", "3EB0X")

    place = Location(-6.2, 106.8, "Monas", "Jakarta")
    located = inbound_body("i1", event(kind=MessageKind.LOCATION, text=None, location=place))
    assert located["location"] == {
        "latitude": -6.2, "longitude": 106.8, "name": "Monas", "address": "Jakarta"
    }  # fmt: skip

    card = ContactCard("Budi", PHONE, "BEGIN:VCARD")
    shared = inbound_body("i1", event(kind=MessageKind.CONTACT, contact=card))
    assert shared["contact"] == {"name": "Budi", "phone": PHONE, "vcard": "BEGIN:VCARD"}


def test_an_inbound_body_carries_its_media_or_why_it_has_none() -> None:
    media = {"base64": "AAEC", "mimetype": "image/jpeg", "filename": None, "size": 3}
    image = event(kind=MessageKind.IMAGE, media=MediaRef(MessageKind.IMAGE, "image/jpeg"))
    with_media = inbound_body("i1", image, media=media)
    assert with_media["media"] == media and "mediaError" not in with_media
    without = inbound_body("i1", image, media_error="could not be downloaded: gone")
    assert without["mediaError"] == "could not be downloaded: gone" and "media" not in without


# --- the host ------------------------------------------------------------------------------


@dataclass
class Reports:
    """StatusReports as the host sees it: each report kept."""

    made: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def report(self, instance: str, body: dict[str, Any]) -> None:
        self.made.append((instance, body))

    def waiting(self) -> int:
        return 0


@dataclass
class Polls:
    """Sends as the host sees it: which instances are linked."""

    linked_to: dict[str, Link] = field(default_factory=dict)
    unlinked_from: list[str] = field(default_factory=list)
    sent: int = 0
    failed: int = 0

    def linked(self, instance: str, link: Link) -> None:
        self.linked_to[instance] = link

    def unlinked(self, instance: str) -> None:
        self.linked_to.pop(instance, None)
        self.unlinked_from.append(instance)


@dataclass
class HostRig:
    host: EdgeHost
    proxy: Proxy
    worker: FakeWorker
    spool: EdgeSpool
    wakes: Wakes
    status: Reports
    sends: Polls
    clock: ManualClock


@pytest.fixture
async def rig(tmp_path: Path, clock: ManualClock) -> AsyncIterator[HostRig]:
    proxy, worker, wakes, status, sends = Proxy(), FakeWorker(), Wakes(), Reports(), Polls()
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(proxy.handle)) as http,
        EdgeSpool(tmp_path / "edge-spool.sqlite3") as spool,
    ):
        host = EdgeHost(
            client=EdgeClient(BASE_URL, SECRET, "w1", client=http),
            record=MemoryRecord(clock),
            spool=spool,
            courier=cast(Courier, wakes),
            clock=clock,
            engine_name="sandbox",
            max_sessions=2,
            instance_poll_s=5.0,
            max_media_bytes=16,
        )
        host.worker = cast(Worker, worker)
        host.status = cast(StatusReports, status)
        host.sends = cast(Sends, sends)
        try:
            yield HostRig(host, proxy, worker, spool, wakes, status, sends, clock)
        finally:
            await host.tasks.aclose()


def offers(rig: HostRig, *instances: str) -> None:
    rig.proxy.answer(INSTANCES, json=[{"id": instance} for instance in instances])


async def test_a_poll_asks_for_the_free_slots_and_starts_up_to_the_maximum(rig: HostRig) -> None:
    rig.worker.states["a"] = SessionState.CONNECTED
    offers(rig, "a", "b", "c")  # a foreign worker-proxy may offer more than asked
    assert await rig.host.poll_once() == ["b"]
    assert rig.proxy.to(INSTANCES)[-1].url.params["limit"] == "1"
    assert rig.worker.started == ["b"]  # c waits: WORKER_MAX_SESSIONS is 2
    known = await rig.host.record.get("b")
    assert known is not None and (known.status, known.engine) == (SessionState.CREATED, "sandbox")
    assert await rig.host.record.get("c") is None

    assert await rig.host.poll_once() == []
    assert rig.proxy.to(INSTANCES)[-1].url.params["limit"] == "0"
    assert rig.worker.started == ["b"]


async def test_an_instance_the_worker_will_not_start_is_skipped(rig: HostRig) -> None:
    rig.worker.conflicts.add("a")
    offers(rig, "a", "b")
    assert await rig.host.poll_once() == ["b"]
    assert rig.worker.started == ["b"]


async def test_a_failed_poll_is_remembered_for_health(rig: HostRig) -> None:
    rig.proxy.answer(INSTANCES, 503, json={"error": "down"})
    assert await rig.host.poll_once() == []
    health = await rig.host.health()
    assert health["edge"]["reachable"] is False
    assert "down" in health["edge"]["lastError"]
    offers(rig, "a")
    await rig.host.poll_once()
    health = await rig.host.health()
    assert (health["edge"]["reachable"], health["edge"]["lastError"]) == (True, None)
    assert health["instances"] == {"connected": 0, "connecting": 1, "reconnecting": 0}


async def test_a_claim_not_renewed_for_two_thirds_of_its_ttl_is_let_go(rig: HostRig) -> None:
    rig.proxy.headers[CLAIM_TTL_HEADER] = "30000"
    offers(rig, "i1", "i2")
    assert await rig.host.poll_once() == ["i1", "i2"]  # at 0 s: both claims renewed
    assert rig.host.client.claim_ttl_s == 30.0
    await rig.clock.advance(15.0)
    rig.host.renewed("i2")  # a call about i2 was taken at 15 s

    await rig.clock.advance(5.0)  # 20 s: exactly 2/3 of the TTL, not more
    rig.host._let_go_of_lapsed()
    await rig.clock.advance(0.5)  # lets a spawned let-go run
    assert rig.worker.handed_over == []
    rig.host._let_go_of_lapsed()
    await eventually(lambda: rig.worker.handed_over == ["i1"])
    assert rig.worker.running() == {"i2": SessionState.CONNECTING}
    assert rig.sends.unlinked_from == ["i1"]
    assert await rig.host.record.get("i1") is None  # forgotten: not this worker's now
    assert rig.status.made == []  # saying nothing: another worker may run it

    rig.host._let_go_of_lapsed()  # i2 was renewed 5.5 s ago
    assert rig.worker.handed_over == ["i1"]


async def test_the_guard_lets_go_on_its_own_when_the_worker_proxy_is_unreachable(
    rig: HostRig,
) -> None:
    rig.proxy.headers[CLAIM_TTL_HEADER] = "3000"
    offers(rig, "i1")
    async with rig.host:
        await eventually(lambda: rig.worker.started == ["i1"])
        rig.proxy.answer(INSTANCES, 503)  # from now on: no renewal
        for _ in range(6):  # to 1.8 s: still within 2/3 of the TTL
            await rig.clock.advance(0.3)
        assert rig.worker.handed_over == []
        for _ in range(3):
            await rig.clock.advance(0.3)
        await eventually(lambda: rig.worker.handed_over == ["i1"])
    assert rig.status.made == []  # nothing was running when it stopped


async def test_with_no_claim_ttl_nothing_is_ever_let_go(rig: HostRig) -> None:
    offers(rig, "i1")  # a foreign worker-proxy: no X-Wagate-Claim-Ttl-Ms
    async with rig.host:
        await eventually(lambda: rig.worker.started == ["i1"])
        rig.proxy.answer(INSTANCES, 503)
        for _ in range(20):
            await rig.clock.advance(60.0)
        rig.host._let_go_of_lapsed()
        assert rig.host.client.claim_ttl_s is None
        assert rig.worker.handed_over == []
    # stopping hands it back, and says so
    assert rig.worker.handed_over == ["i1"]
    assert rig.status.made == [
        ("i1", {"instanceId": "i1", "status": "DISCONNECTED", "reason": "worker_stopped"})
    ]


async def test_a_change_is_reported_with_its_instance(rig: HostRig) -> None:
    await rig.host.on_change(change(SessionState.CONNECTING, ChangeKind.STATE))
    await rig.host.on_change(change(SessionState.CONNECTED, ChangeKind.STATE))  # nothing new
    assert rig.status.made == [("i1", {"instanceId": "i1", "status": "CONNECTING"})]


class MediaLink:
    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def download(self, media: MediaRef) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


async def test_a_received_message_is_spooled_with_its_media_before_the_courier_wakes(
    rig: HostRig,
) -> None:
    image = MediaRef(MessageKind.IMAGE, "image/jpeg", filename="a.jpg")
    link = cast(Link, MediaLink(b"\x00\x01", b"\x02"))
    await rig.host.message("i1", link, event(id="m1", kind=MessageKind.IMAGE, media=image))
    big = cast(Link, MediaLink(b"x" * 10, b"x" * 10))  # past max_media_bytes (16)
    await rig.host.message("i1", big, event(id="m2", kind=MessageKind.IMAGE, media=image))

    assert rig.wakes.calls == [("i1", INBOUND), ("i1", INBOUND)]
    first = await rig.spool.oldest("i1", INBOUND)
    assert first is not None and first.key == "m1"
    assert first.body["media"] == {
        "base64": base64.b64encode(b"\x00\x01\x02").decode(),
        "mimetype": "image/jpeg",
        "filename": "a.jpg",
        "size": 3,
    }
    await rig.spool.done(first.seq)
    second = await rig.spool.oldest("i1", INBOUND)
    assert second is not None and second.key == "m2"
    assert "media" not in second.body
    assert second.body["mediaError"] == "larger than 16 bytes (WAGATE_MAX_MEDIA_MB)"
