"""EdgeBackend, the service behind seed 001's worker-proxy: claims between edge workers."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from tests.ingest.conftest import ingest_settings
from wagate.clock import ManualClock
from wagate.control.edge import FOREIGN_WORKER, EdgeBackend
from wagate.control.edge_bodies import SentReport, StatusReport
from wagate.control.session_reports import SessionReports
from wagate.domain.message import MessageKind, Outgoing
from wagate.domain.session import ChangeKind, SessionChange, SessionState, Uplink
from wagate.errors import Conflict, NotConfigured, Unauthorized
from wagate.ingest.media import MediaStore
from wagate.ingest.pipeline import IngestPipeline
from wagate.outbound import queue
from wagate.storage.blobs import MemoryBlobStore
from wagate.storage.db import Database
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.groups import GroupRepo
from wagate.storage.repos.leases import SessionLeaseRepo
from wagate.storage.repos.media import MediaRepo
from wagate.storage.repos.messages import MessageRepo
from wagate.storage.repos.outbound import NewOutbound, OutboundRepo
from wagate.storage.repos.sessions import SessionRepo
from wagate.storage.repos.workers import WorkerRepo
from wagate.storage.spool import MediaSpool
from wagate.testing import RecordingOutbox

TTL = timedelta(seconds=30)
WORKER_TIMEOUT = timedelta(seconds=90)
SECRET = "s3cret"


@dataclass
class Bench:
    edge: EdgeBackend
    sessions: SessionRepo
    leases: SessionLeaseRepo
    outbound: OutboundRepo
    workers: WorkerRepo
    outbox: RecordingOutbox
    clock: ManualClock

    async def session(self, sid: str, uplink: Uplink, state: SessionState) -> None:
        await self.sessions.create(sid, engine="sandbox", uplink=uplink)
        change = SessionChange(sid, state, ChangeKind.STATE, self.clock.now())
        await self.sessions.record(change)

    async def queue(self, sid: str, wa_id: str, text: str = "hi") -> None:
        out = Outgoing(to="6281@s.whatsapp.net", kind=MessageKind.TEXT, text=text)
        payload = queue.payload(out, fingerprint="f", media=None)
        await self.outbound.enqueue(NewOutbound(sid, wa_id, out.to, "text", text, payload))


BenchFactory = Callable[..., Awaitable[Bench]]


@pytest.fixture
def make(db: Database, clock: ManualClock, tmp_path: Path) -> BenchFactory:
    async def build(*, fleet: bool = False, secret: str | None = SECRET) -> Bench:
        outbox = RecordingOutbox(db, clock)
        sessions = SessionRepo(db, clock, outbox=outbox)
        leases = SessionLeaseRepo(db, clock)
        outbound = OutboundRepo(db, clock, outbox=outbox)
        workers = WorkerRepo(db, clock)
        audit = AuditRepo(db, clock)
        settings = ingest_settings(tmp_path)
        store = MediaStore(
            MediaRepo(db, clock),
            MemoryBlobStore(),
            max_bytes=settings.max_media_bytes,
            other_max_bytes=settings.other_media_max_bytes,
            prefix=settings.media_prefix,
            spool_dir=settings.spool_dir,
        )
        pipeline = IngestPipeline(
            settings,
            messages=MessageRepo(db, clock, outbox=outbox),
            groups=GroupRepo(db, clock, outbox=outbox),
            media=store,
            audit=audit,
            clock=clock,
            rng=random.Random(1),
        )

        async def fleet_idle() -> bool:
            return not await workers.live(WORKER_TIMEOUT)

        edge = EdgeBackend(
            sessions=sessions,
            leases=leases,
            outbound=outbound,
            spool=MediaSpool(tmp_path / "outbox", inline_max_bytes=1024),
            reports=SessionReports(sessions, audit, clock),
            pipeline=pipeline,
            clock=clock,
            secret=secret,
            claim_ttl=TTL,
            max_attempts=3,
            fleet_idle=fleet_idle if fleet else None,
        )
        return Bench(edge, sessions, leases, outbound, workers, outbox, clock)

    return build


async def test_the_secret(make: BenchFactory) -> None:
    bench = await make()
    bench.edge.check_secret(SECRET)
    for wrong in (None, "", "s3cre", SECRET + "x"):
        with pytest.raises(Unauthorized):
            bench.edge.check_secret(wrong)
    unset = await make(secret=None)
    with pytest.raises(NotConfigured, match="WORKER_SECRET"):
        unset.edge.check_secret(SECRET)


async def test_an_instance_is_offered_to_one_worker_until_its_claim_lapses(
    make: BenchFactory,
) -> None:
    bench = await make()
    await bench.session("e1", Uplink.EDGE, SessionState.CONNECTING)
    assert await bench.edge.disconnected("w1") == ["e1"]
    assert await bench.edge.disconnected("w2") == []
    assert await bench.edge.disconnected("w1") == ["e1"]  # its own claim, renewed
    await bench.clock.advance(TTL.total_seconds() - 1)
    assert await bench.edge.disconnected("w2") == []  # renewed a moment ago: still w1's
    await bench.clock.advance(TTL.total_seconds() + 1)
    assert await bench.edge.disconnected("w2") == ["e1"]  # w1 went quiet: w2 takes it
    assert await bench.edge.disconnected("w1") == []


async def test_any_call_renews_the_claim(make: BenchFactory) -> None:
    bench = await make()
    await bench.session("e1", Uplink.EDGE, SessionState.CONNECTING)
    assert await bench.edge.disconnected("w1") == ["e1"]
    for _ in range(3):
        await bench.clock.advance(TTL.total_seconds() - 5)
        await bench.edge.queued("w1", "e1")
    assert await bench.edge.disconnected("w2") == []
    with pytest.raises(Conflict, match="another worker"):
        await bench.edge.update_status("w2", StatusReport("e1", "CONNECTING"))
    await bench.clock.advance(TTL.total_seconds() + 1)
    await bench.edge.update_status("w2", StatusReport("e1", "CONNECTING", qr="2@x"))
    session = await bench.sessions.get("e1")
    assert session is not None and session.status is SessionState.QR and session.qr == "2@x"


async def test_only_sessions_that_should_run_are_offered(make: BenchFactory) -> None:
    bench = await make()
    for sid, state in [
        ("a-connecting", SessionState.CONNECTING),
        ("b-qr", SessionState.QR),
        ("c-reconnecting", SessionState.RECONNECTING),
        ("d-connected", SessionState.CONNECTED),
        ("e-stopped", SessionState.STOPPED),
        ("f-logged-out", SessionState.LOGGED_OUT),
    ]:
        await bench.session(sid, Uplink.EDGE, state)
    await bench.sessions.create("g-created", engine="sandbox", uplink=Uplink.EDGE)
    assert await bench.leases.claim("d-connected", "edge:w0", TTL) is not None  # its worker's
    assert await bench.edge.disconnected("w1") == ["a-connecting", "b-qr", "c-reconnecting"]


async def test_a_connected_instance_is_offered_once_its_worker_went_away(
    make: BenchFactory,
) -> None:
    bench = await make()
    await bench.session("d1", Uplink.EDGE, SessionState.CONNECTED)
    assert await bench.edge.disconnected("w0") == ["d1"]  # the row says connected, nobody runs it
    assert await bench.edge.disconnected("w0") == ["d1"]  # listed again to its holder: renewed
    assert await bench.edge.disconnected("w1") == []  # w0 holds it
    await bench.clock.advance(TTL.total_seconds() + 1)  # w0 went silent (killed, say)
    assert await bench.edge.disconnected("w1") == ["d1"]


async def test_seed_001s_own_worker_is_offered_no_instance_it_runs_connected(
    make: BenchFactory,
) -> None:
    bench = await make()
    await bench.session("d1", Uplink.EDGE, SessionState.CONNECTED)
    assert await bench.edge.disconnected(FOREIGN_WORKER) == ["d1"]  # lapsed: offered
    # it connected it; seed 001 lists only DISCONNECTED and CONNECTING instances again
    assert await bench.edge.disconnected(FOREIGN_WORKER) == []


async def test_limit_bounds_the_new_instances_not_those_the_worker_holds(
    make: BenchFactory,
) -> None:
    bench = await make()
    for sid in ("a", "b", "c"):
        await bench.session(sid, Uplink.EDGE, SessionState.CONNECTING)
    assert await bench.edge.disconnected("w1", limit=1) == ["a"]
    assert await bench.edge.disconnected("w1", limit=0) == ["a"]  # held: listed, renewed
    assert await bench.edge.disconnected("w1", limit=1) == ["a", "b"]
    assert await bench.edge.disconnected("w2") == ["c"]


async def test_an_instance_at_rest_is_refused_to_its_worker(make: BenchFactory) -> None:
    bench = await make()
    await bench.session("e1", Uplink.EDGE, SessionState.STOPPED)  # an operator stopped it
    with pytest.raises(Conflict, match="stopped") as caught:
        await bench.edge.queued("w1", "e1")
    assert caught.value.code == "instance_at_rest"
    with pytest.raises(Conflict, match="stopped"):
        await bench.edge.update_status("w1", StatusReport("e1", "CONNECTED", phone="+15550001"))
    session = await bench.sessions.get("e1")
    assert session is not None and session.status is SessionState.STOPPED


async def test_fleet_sessions_are_offered_only_while_no_fleet_worker_lives(
    make: BenchFactory,
) -> None:
    bench = await make(fleet=True)
    await bench.session("f1", Uplink.FLEET, SessionState.CONNECTING)
    await bench.session("e1", Uplink.EDGE, SessionState.CONNECTING)
    await bench.workers.register(
        "worker-001", endpoint="http://w1", max_sessions=10, description="", instance="i1"
    )
    assert await bench.edge.disconnected("w1") == ["e1"]
    with pytest.raises(Conflict, match="fleet"):
        await bench.edge.update_status("w1", StatusReport("f1", "CONNECTING"))
    await bench.clock.advance(WORKER_TIMEOUT.total_seconds() + 1)  # the fleet worker went silent
    assert await bench.edge.disconnected("w1") == ["e1", "f1"]


async def test_a_fleet_lease_keeps_a_fleet_session_from_the_edge(make: BenchFactory) -> None:
    bench = await make(fleet=True)
    await bench.session("f1", Uplink.FLEET, SessionState.RECONNECTING)
    assert await bench.leases.assign("f1", "worker-001", TTL) is not None  # its old owner's
    assert await bench.edge.disconnected("w1") == []
    await bench.clock.advance(TTL.total_seconds() + 1)
    assert await bench.edge.disconnected("w1") == ["f1"]
    owner = await bench.leases.owner("f1")
    assert owner is not None and owner.worker_id == "edge:w1" and owner.epoch == 2


async def test_without_fleet_idle_fleet_sessions_are_never_offered(make: BenchFactory) -> None:
    bench = await make(fleet=False)  # wagate serve: its embedded worker hosts them
    await bench.session("f1", Uplink.FLEET, SessionState.CONNECTING)
    assert await bench.edge.disconnected("w1") == []


async def test_a_queued_message_is_handed_out_once_until_its_claim_lapses(
    make: BenchFactory,
) -> None:
    bench = await make()
    await bench.session("e1", Uplink.EDGE, SessionState.CONNECTED)
    await bench.queue("e1", "M1", "first")
    await bench.queue("e1", "M2", "second")
    handed = await bench.edge.queued("w1", "e1")
    assert [h.message.wa_msg_id for h in handed] == ["M1", "M2"]
    assert [h.outgoing.text for h in handed] == ["first", "second"]
    assert await bench.edge.queued("w1", "e1") == []
    await bench.edge.mark_sent("w1", SentReport("e1", "M1", sent=True))
    await bench.clock.advance(TTL.total_seconds() + 1)  # M2 was never marked: handed out again
    assert [h.message.wa_msg_id for h in await bench.edge.queued("w1", "e1")] == ["M2"]


async def test_a_message_handed_out_too_often_fails(make: BenchFactory) -> None:
    bench = await make()  # max_attempts=3
    await bench.session("e1", Uplink.EDGE, SessionState.CONNECTED)
    await bench.queue("e1", "M1")
    for _ in range(3):
        assert len(await bench.edge.queued("w1", "e1")) == 1
        await bench.clock.advance(TTL.total_seconds() + 1)
    assert await bench.edge.queued("w1", "e1") == []
    failed = await bench.outbound.outbound("e1", "M1")
    assert failed is not None and failed.status == "failed"
    assert [e["messageId"] for e in bench.outbox.of("message.failed")] == ["M1"]


async def test_claimed_messages_are_not_offered_to_the_fleets_sender(make: BenchFactory) -> None:
    bench = await make()
    await bench.session("e1", Uplink.EDGE, SessionState.CONNECTED)
    await bench.queue("e1", "M1")
    await bench.edge.queued("w1", "e1")
    assert await bench.outbound.next_queued("e1") is None
    await bench.clock.advance(TTL.total_seconds() + 1)
    next_one = await bench.outbound.next_queued("e1")
    assert next_one is not None and next_one.wa_msg_id == "M1"


async def test_mark_sent_keeps_whatsapps_id_and_a_repeat_is_harmless(make: BenchFactory) -> None:
    bench = await make()
    await bench.session("e1", Uplink.EDGE, SessionState.CONNECTED)
    await bench.queue("e1", "M1")
    await bench.edge.queued("w1", "e1")
    report = SentReport("e1", "M1", sent=True, wa_message_id="3EB0")
    await bench.edge.mark_sent("w1", report)
    await bench.edge.mark_sent("w1", report)
    sent = await bench.outbound.outbound("e1", "3EB0")
    assert sent is not None and sent.status == "sent"
    assert len(bench.outbox.of("message.sent")) == 1
    await bench.edge.mark_sent("w1", SentReport("e1", "3EB0", sent=False, error="late"))
    assert len(bench.outbox.of("message.failed")) == 0  # settled already
