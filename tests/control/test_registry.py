"""The worker registry: registration and its id rule, heartbeats, the admin's verbs, the monitor."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from wagate.clock import ManualClock
from wagate.control.registry import Heartbeat, NewWorker, Registration, WorkerRegistry, derived
from wagate.domain.worker import WorkerStatus
from wagate.errors import Conflict, InvalidInput, NotConfigured, NotFound, Unauthorized
from wagate.roles.registry import worker_registry
from wagate.storage.db import Database
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.tables import session_leases
from wagate.testing import settings_for_tests, until

from .health_server import HealthServer, closed_port_url, seed002_health

TOKEN = "worker-secret-token"
Factory = Callable[..., WorkerRegistry]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def registries(
    db: Database, clock: ManualClock, tmp_path: Path, database_url: str, http: httpx.AsyncClient
) -> Factory:
    def make(**overrides: Any) -> WorkerRegistry:
        on_drain = overrides.pop("on_drain", None)
        values = {"database_url": database_url, "worker_auth_token": TOKEN} | overrides
        settings = settings_for_tests(tmp_path / "data", **values)
        return worker_registry(db, clock, settings, http, on_drain=on_drain)

    return make


@pytest.fixture
def registry(registries: Factory) -> WorkerRegistry:
    return registries()


def _reg(
    worker_id: str = "worker-001", endpoint: str = "http://w1:8001", **kw: Any
) -> Registration:
    return Registration(worker_id=worker_id, endpoint=endpoint, max_sessions=50, **kw)


async def _events(db: Database, clock: ManualClock, event: str) -> list[dict[str, Any]]:
    return [e.data for e in reversed(await AuditRepo(db, clock).recent(event=event))]


# --- registration --------------------------------------------------------------------


async def test_register_makes_a_live_worker_and_audits_it(
    registry: WorkerRegistry, db: Database, clock: ManualClock
) -> None:
    worker = await registry.register(_reg(description="Primary worker instance"))
    assert (worker.id, worker.endpoint, worker.max_sessions) == ("worker-001", "http://w1:8001", 50)
    assert (worker.status, worker.description) == (WorkerStatus.LIVE, "Primary worker instance")
    assert worker.instance == derived("http://w1:8001")  # a seed-002 worker sends no instance
    assert await _events(db, clock, "worker_registered") == [
        {"workerId": "worker-001", "endpoint": "http://w1:8001"}
    ]
    again = await registry.register(_reg(endpoint="http://w1:8001/"))  # the same process
    assert again.instance == worker.instance and again.endpoint == "http://w1:8001"
    assert len(await _events(db, clock, "worker_registered")) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_reg(endpoint="ftp://w1:8001"), "endpoint"),
        (_reg(endpoint="not a url"), "endpoint"),
        (_reg(endpoint="http://"), "endpoint"),
        (_reg(endpoint="http://w1:99999"), "endpoint"),
        (_reg(endpoint="http://w1:8001/?x=1"), "endpoint"),
        (_reg(endpoint="http://user:pw@w1:8001"), "endpoint"),
        (_reg(endpoint="http://w1:8001/" + "a" * 3000), "endpoint"),
        (_reg(worker_id="bad/id"), "workerId"),
        (_reg(worker_id=""), "workerId"),
        (_reg(worker_id="x" * 65), "workerId"),
        (_reg(worker_id=".hidden"), "workerId"),
        (Registration("w", "http://w:1", 0), "maxSessions"),
        (Registration("w", "http://w:1", 10_001), "maxSessions"),
        (_reg(description="d" * 501), "description"),
        (_reg(instance="has space"), "instance"),
        (_reg(instance="ep:forged"), "instance"),
    ],
)
async def test_register_refuses_malformed_fields_naming_them(
    registry: WorkerRegistry, body: Registration, field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await registry.register(body)
    assert caught.value.field == field
    assert await registry.list() == []


async def test_an_id_held_by_a_live_process_that_still_answers_is_refused(
    registry: WorkerRegistry,
) -> None:
    async with HealthServer(seed002_health(instance="proc-a")) as old:
        first = await registry.register(_reg(endpoint=old.url, instance="proc-a"))
        with pytest.raises(Conflict) as caught:
            await registry.register(_reg(endpoint="http://w2:8001", instance="proc-b"))
    assert caught.value.code == "worker_id_in_use"
    assert "worker-001" in caught.value.message and old.url in caught.value.message
    assert old.paths == ["/health"]
    assert await registry.get("worker-001") == first


@pytest.mark.parametrize("answer", ["gone", "another instance", "an error", "not json"])
async def test_an_id_is_taken_over_when_its_holder_does_not_answer_as_itself(
    registry: WorkerRegistry, db: Database, clock: ManualClock, answer: str
) -> None:
    async with HealthServer(seed002_health(instance="proc-c")) as server:
        endpoint = closed_port_url() if answer == "gone" else server.url
        if answer == "an error":
            server.status, server.body = 503, seed002_health(instance="proc-a")
        if answer == "not json":
            server.body = "<html>"
        await registry.register(_reg(endpoint=endpoint, instance="proc-a"))
        await _lease(db, clock, "s1", "worker-001")
        taken = await registry.register(_reg(endpoint="http://w2:8001", instance="proc-b"))
    assert (taken.instance, taken.endpoint) == ("proc-b", "http://w2:8001")
    assert await _epoch(db, "s1") == 2  # the old process's fencing token is stale
    assert (await _events(db, clock, "worker_registered"))[-1]["replaced"] == endpoint


async def test_a_silent_holder_is_not_even_asked(
    registry: WorkerRegistry, db: Database, clock: ManualClock
) -> None:
    async with HealthServer(seed002_health(instance="proc-a")) as old:
        await registry.register(_reg(endpoint=old.url, instance="proc-a"))
        await clock.advance(91)  # WORKER_TIMEOUT_MS is 90 s
        taken = await registry.register(_reg(endpoint="http://w2:8001", instance="proc-b"))
    assert taken.instance == "proc-b"
    assert old.paths == []


async def test_foreign_workers_are_known_by_their_endpoint(registry: WorkerRegistry) -> None:
    async with HealthServer(seed002_health()) as old:  # a seed-002 worker: no instance
        await registry.register(_reg(endpoint=old.url))
        await registry.register(_reg(endpoint=old.url))  # it restarted: the same worker
        with pytest.raises(Conflict) as caught:
            await registry.register(_reg(endpoint="http://elsewhere:8001"))
    assert caught.value.code == "worker_id_in_use"
    taken = await registry.register(_reg(endpoint="http://elsewhere:8001"))  # the old one is gone
    assert taken.endpoint == "http://elsewhere:8001"


async def _lease(db: Database, clock: ManualClock, session_id: str, worker_id: str) -> None:
    values = {"session_id": session_id, "worker_id": worker_id, "epoch": 1}
    async with db.begin() as conn:
        await conn.execute(session_leases.insert().values(**values, updated_at=clock.now()))


async def _epoch(db: Database, session_id: str) -> int:
    query = sa.select(session_leases.c.epoch).where(session_leases.c.session_id == session_id)
    async with db.begin() as conn:
        return int(await conn.scalar(query) or 0)


# --- heartbeats ------------------------------------------------------------------------


async def test_heartbeat_records_the_seeds_figures(
    registry: WorkerRegistry, clock: ManualClock
) -> None:
    await registry.register(_reg())
    await clock.advance(30)
    beat = Heartbeat(
        status="online",
        session_count=25,
        cpu_usage=45.5,
        memory_usage=67.8,
        uptime=3600.4,
        message_count=1250,
    )
    worker = await registry.heartbeat("worker-001", beat)
    assert (worker.session_count, worker.cpu_usage, worker.memory_usage) == (25, 45.5, 67.8)
    assert (worker.uptime_s, worker.message_count) == (3600, 1250)
    assert worker.last_heartbeat_at == clock.now()
    assert (await registry.heartbeat("worker-001", Heartbeat("draining"))).status == "draining"


@pytest.mark.parametrize(
    ("beat", "field"),
    [
        (Heartbeat(status="sleeping"), "status"),
        (Heartbeat(session_count=-1), "sessionCount"),
        (Heartbeat(session_count=10**9), "sessionCount"),
        (Heartbeat(cpu_usage=math.nan), "cpuUsage"),
        (Heartbeat(cpu_usage=-3.0), "cpuUsage"),
        (Heartbeat(memory_usage=math.inf), "memoryUsage"),
        (Heartbeat(uptime=-1.0), "uptime"),
        (Heartbeat(message_count=2**63), "messageCount"),
        (Heartbeat(instance="no/slash"), "instance"),
    ],
)
async def test_heartbeat_refuses_bad_figures_naming_them(
    registry: WorkerRegistry, beat: Heartbeat, field: str
) -> None:
    await registry.register(_reg())
    with pytest.raises(InvalidInput) as caught:
        await registry.heartbeat("worker-001", beat)
    assert caught.value.field == field


async def test_heartbeat_of_an_unknown_worker_is_not_found(registry: WorkerRegistry) -> None:
    for worker_id in ("ghost", "bad/id", "x" * 500):
        with pytest.raises(NotFound):
            await registry.heartbeat(worker_id, Heartbeat())


async def test_a_replaced_process_is_told_on_its_heartbeat(
    registry: WorkerRegistry, clock: ManualClock
) -> None:
    await registry.register(_reg(endpoint=closed_port_url(), instance="proc-a"))
    await registry.register(_reg(instance="proc-b"))
    with pytest.raises(Conflict) as caught:
        await registry.heartbeat("worker-001", Heartbeat(instance="proc-a", session_count=9))
    assert caught.value.code == "worker_replaced"
    worker = await registry.heartbeat("worker-001", Heartbeat(instance="proc-b"))
    assert worker.session_count == 0


def test_the_worker_token_is_checked(registries: Factory) -> None:
    registry = registries()
    registry.authenticate(TOKEN)
    for wrong in (None, "", "nope", TOKEN + "x"):
        with pytest.raises(Unauthorized):
            registry.authenticate(wrong)
    with pytest.raises(NotConfigured) as caught:
        registries(worker_auth_token=None).authenticate(TOKEN)
    assert "WORKER_AUTH_TOKEN" in caught.value.message


# --- the admin's verbs ------------------------------------------------------------------


async def test_add_makes_an_id_and_knows_the_worker_by_its_endpoint(
    registry: WorkerRegistry,
) -> None:
    added = await registry.add(NewWorker("http://203.0.113.45:8001/", 20, "External VPS worker"))
    assert added.id.startswith("w-") and len(added.id) == 10
    assert (added.endpoint, added.max_sessions) == ("http://203.0.113.45:8001", 20)
    assert added.instance == derived(added.endpoint)
    assert [w.id for w in await registry.list()] == [added.id]
    with pytest.raises(InvalidInput) as caught:
        await registry.add(NewWorker("nope", 20))
    assert caught.value.field == "endpoint"


async def test_drain_and_remove_call_the_hook(
    registries: Factory, db: Database, clock: ManualClock
) -> None:
    drained: list[str] = []

    async def on_drain(worker_id: str) -> None:
        drained.append(worker_id)

    registry = registries(on_drain=on_drain)
    await registry.register(_reg("w1"))
    await registry.register(_reg("w2"))
    assert (await registry.drain("w1")).status is WorkerStatus.DRAINING
    await registry.remove("w2")
    assert drained == ["w1", "w2"]
    assert [w.id for w in await registry.list()] == ["w1"]
    assert [e["workerId"] for e in await _events(db, clock, "worker_removed")] == ["w2"]
    for verb in (registry.drain, registry.remove):
        with pytest.raises(NotFound):
            await verb("w2")
    assert drained == ["w1", "w2"]


async def test_drain_without_a_hook_sets_the_status(registry: WorkerRegistry) -> None:
    await registry.register(_reg("w1"))
    await registry.drain("w1")
    assert (await registry.get("w1")).status is WorkerStatus.DRAINING


async def test_statistics_add_the_fleet_up(registry: WorkerRegistry, clock: ManualClock) -> None:
    for worker_id, sessions, cpu in [("a", 10, 20.0), ("b", 30, 40.0), ("c", 5, 90.0)]:
        await registry.register(_reg(worker_id))
        beat = Heartbeat(session_count=sessions, cpu_usage=cpu, message_count=100)
        await registry.heartbeat(worker_id, beat)
    await registry.drain("c")
    stats = await registry.statistics()
    assert stats.workers == {"live": 2, "draining": 1, "dead": 0, "total": 3}
    assert (stats.capacity, stats.sessions, stats.free) == (100, 40, 60)
    assert (stats.messages, stats.cpu_usage, stats.memory_usage) == (300, 30.0, None)


async def test_test_refuses_internal_addresses_naming_the_setting(
    registry: WorkerRegistry,
) -> None:
    async with HealthServer() as server:
        for endpoint in (server.url, "http://169.254.169.254", "http://10.1.2.3:8001"):
            with pytest.raises(InvalidInput) as caught:
                await registry.test(endpoint)
            assert caught.value.field == "endpoint"
            assert "WAGATE_ALLOW_PRIVATE_URLS" in caught.value.message
    assert server.paths == []


async def test_test_reports_a_reachable_worker_and_its_health(registries: Factory) -> None:
    registry = registries(allow_private_urls=True)
    async with HealthServer(seed002_health(instance="p1")) as server:
        probe = await registry.test(server.url + "/")
    assert (probe.reachable, probe.status_code, probe.error) == (True, 200, None)
    assert probe.health == seed002_health(instance="p1")
    assert probe.latency_ms is not None and probe.latency_ms >= 0
    assert server.paths == ["/health"]
    gone = await registry.test(closed_port_url())
    assert (gone.reachable, gone.status_code, gone.health) == (False, None, None)
    assert gone.error
    with pytest.raises(InvalidInput):
        await registry.test("gopher://x")


async def test_test_reports_an_unhealthy_answer(registries: Factory) -> None:
    registry = registries(allow_private_urls=True)
    async with HealthServer({"success": False}, status=503) as server:
        probe = await registry.test(server.url)
    assert (probe.reachable, probe.status_code, probe.error) == (False, 503, "HTTP 503")
    assert probe.health == {"success": False}


# --- the health monitor --------------------------------------------------------------------


async def test_check_once_marks_silent_workers_dead_and_audits_them(
    registry: WorkerRegistry, db: Database, clock: ManualClock
) -> None:
    await registry.register(_reg("quiet"))
    await registry.register(_reg("beating"))
    await clock.advance(60)
    await registry.heartbeat("beating", Heartbeat())
    assert await registry.check_once() == []
    await clock.advance(31)
    assert await registry.check_once() == ["quiet"]
    assert (await registry.get("quiet")).status is WorkerStatus.DEAD
    assert await _events(db, clock, "worker_dead") == [{"workerId": "quiet"}]
    status = await registry.monitor_status()
    assert (status.enabled, status.checked_at, status.last_dead) == (True, clock.now(), ("quiet",))
    assert status.workers == {"live": 1, "draining": 0, "dead": 1, "total": 2}
    assert (status.interval_s, status.timeout_s) == (30.0, 90.0)


async def test_the_switch_is_shared_by_every_replica(
    registries: Factory, clock: ManualClock
) -> None:
    one, other = registries(), registries()
    await one.register(_reg("quiet"))
    assert (await other.stop_monitor()).enabled is False
    await clock.advance(100)
    assert await one.check_once() == []
    assert (await one.monitor_status()).enabled is False
    assert (await one.get("quiet")).status is WorkerStatus.LIVE
    assert (await one.start_monitor()).enabled is True
    assert await other.check_once() == ["quiet"]


async def test_the_monitor_runs_every_heartbeat_interval(
    registries: Factory, clock: ManualClock
) -> None:
    registry = registries(heartbeat_interval_ms=1_000, worker_timeout_ms=3_000)
    await registry.register(_reg("quiet"))

    async def dead() -> bool:
        return (await registry.get("quiet")).status is WorkerStatus.DEAD

    async with registry.monitor():
        for _ in range(3):
            await clock.wait_for_sleepers()  # the loop waits: the previous check is done
            await clock.advance(1)
        await clock.wait_for_sleepers()
        assert not await dead()  # 3 s silent: not past the timeout yet
        await clock.advance(1)
        await until(dead)
