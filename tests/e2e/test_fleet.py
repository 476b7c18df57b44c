"""A fleet of real processes: ``wagate control``, ``wagate worker`` ×N and ``wagate sandbox``.

Each session is owned by exactly one process, whatever dies: the sandbox
counts *replaced streams* (a device logged in while another connection of it
was live), and that count stays 0 through every test here.
"""

from __future__ import annotations

import base64
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import PG_URL, DatabaseFactory
from tests.e2e.conftest import poll
from tests.e2e.fleet import TOKEN, WORKER_TIMEOUT_S, Fleet, RecordingProxy, until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not PG_URL, reason="a fleet shares PostgreSQL (set WAGATE_TEST_DATABASE_URL)"
    ),
]

RECIPIENT = "6289999999999"  # a phone on the network with no gateway: its inbox is the truth
REPLACED_WITHIN_S = 6 * WORKER_TIMEOUT_S  # a dead worker's sessions are placed again by then


@pytest.fixture
def fleet(procs: Any, tmp_path: Path, databases: DatabaseFactory) -> Iterator[Fleet]:
    made = Fleet(procs, tmp_path, databases.new())
    made.start_sandbox()
    made.net("POST", "/control/phones", {"phone": RECIPIENT, "pushName": "Recipient"})
    yield made
    made.stop_all()


def _send(api: httpx.Client, session_id: str, text: str) -> None:
    body = {"to": RECIPIENT, "type": "text", "text": text}
    answer = api.post(f"/api/sessions/{session_id}/messages", json=body)
    assert answer.status_code == 201, answer.text


def _seed_002_on_the_wire(wire: RecordingProxy, its_sessions: list[str]) -> None:
    """What w3 said to its backend, as seed 002 spells it."""
    assert all(auth == f"Bearer {TOKEN}" for *_, auth in wire.seen), "the token on every call"
    (register,) = wire.bodies("POST", "/api/v1/workers/register")
    assert register.keys() == {"workerId", "endpoint", "maxSessions", "description", "instance"}
    assert register["workerId"] == "w3" and register["maxSessions"] == 20
    beats = poll(lambda: wire.bodies("PUT", "/api/v1/workers/w3/heartbeat"), limit_s=10)
    seed = {"status", "sessionCount", "cpuUsage", "memoryUsage", "uptime", "messageCount"}
    assert all(b.keys() == seed and b["status"] == "online" for b in beats), beats[-1]
    reports = wire.bodies("POST", "/api/webhooks/session-status")
    assert {r["sessionId"] for r in reports} == set(its_sessions)
    assert all({"sessionId", "status", "phoneNumber", "timestamp"} <= r.keys() for r in reports)
    words = {r["status"] for r in reports}
    assert "connected" in words and words <= {
        "disconnected",
        "connecting",
        "qr_required",
        "connected",
    }
    assert all(r["phoneNumber"].startswith("+") for r in reports if r["status"] == "connected")


def _received(api: httpx.Client, session_id: str) -> Counter[str]:
    found = api.get(f"/api/sessions/{session_id}/messages", params={"limit": 100}).json()
    return Counter(m["text"] for m in found["messages"] if m["direction"] == "in")


def _phone(i: int) -> str:
    return f"62812{i:08d}"


@pytest.mark.timeout(300)
def test_sessions_spread_over_workers_and_survive_a_killed_and_a_paused_worker(
    fleet: Fleet,
) -> None:
    port = fleet.start_control()
    wire = fleet.stack.enter_context(RecordingProxy(f"http://127.0.0.1:{port}"))
    for name in ("w1", "w2", "w3"):  # two of them can carry all 30; w3 talks through `wire`
        fleet.start_worker(name, max_sessions=20, backend=wire.url if name == "w3" else None)
    api = fleet.api()
    sessions = [f"s{i:02d}" for i in range(30)]
    for i, sid in enumerate(sessions):
        fleet.link(api, sid, _phone(i))
    poll(lambda: set(fleet.states(api).values()) == {"connected"}, limit_s=60)
    placed = fleet.owners()
    assert sorted(placed) == sessions
    load = Counter(placed.values())
    assert set(load) == {"w1", "w2", "w3"} and max(load.values()) <= 20, load

    _seed_002_on_the_wire(wire, [s for s, w in placed.items() if w == "w3"])
    health = api.get("/health").json()["fleet"]
    assert health["workers"] == {"live": 3, "draining": 0, "dead": 0}, health
    assert health["leases"] == 30 and health["sessions"] == {"connected": 30}, health
    with fleet.admin() as admin:  # seed 002's admin API, with a JWT from the login
        workers = admin.get("/api/v1/workers").json()["data"]
        assert {w["workerId"]: w["status"] for w in workers} == dict.fromkeys(
            ("w1", "w2", "w3"), "live"
        )
        stats = admin.get("/api/v1/workers/statistics")
        assert stats.status_code == 200, stats.text

    # kill -9 a worker while messages are queued to its sessions, and more during the failover
    victim = "w1"
    theirs = sorted(s for s, w in placed.items() if w == victim)
    for sid in theirs:
        _send(api, sid, f"before {sid}")
    fleet.workers[victim][0].kill(signal.SIGKILL)
    for sid in theirs:
        _send(api, sid, f"during {sid}")
        # and someone writes to it while no process holds it: the network keeps it
        to = _phone(sessions.index(sid))
        fleet.net("POST", "/control/send", {"from": RECIPIENT, "to": to, "text": f"to {sid}"})
    # they move once the victim is found dead (WORKER_TIMEOUT_MS) and its leases lapsed: about
    # 2× the worker timeout; the bound is generous, a loaded machine must not fail it
    until(
        lambda: (
            set(theirs) <= set(fleet.owners()) and all(fleet.owners()[s] != victim for s in theirs)
        ),
        limit_s=REPLACED_WITHIN_S,
    )
    expected = Counter(f"{when} {sid}" for sid in theirs for when in ("before", "during"))
    poll(lambda: Counter(fleet.inbox_texts(RECIPIENT)) == expected, limit_s=30)
    for sid in theirs:  # received by the new owner, stored once
        poll(lambda sid=sid: _received(api, sid).get(f"to {sid}") == 1, limit_s=30)
    assert fleet.replaced_streams() == 0

    # SIGSTOP a worker past its lease, then SIGCONT: it holds nothing and sends nothing
    fleet.start_worker("w4", max_sessions=20)  # room for what the paused one holds
    paused = "w2"
    proc, port = fleet.workers[paused]
    held = sorted(s for s, w in fleet.owners().items() if w == paused)
    proc.popen.send_signal(signal.SIGSTOP)
    try:
        poll(lambda: all(fleet.owners().get(s, paused) != paused for s in held), limit_s=30)
        for sid in held:
            _send(api, sid, f"paused {sid}")
    finally:
        proc.popen.send_signal(signal.SIGCONT)
    with httpx.Client(headers={"X-Api-Key": "fleet-api-key"}, timeout=10) as client:
        running = poll(
            lambda: client.get(f"http://127.0.0.1:{port}/internal/running").json()["running"] == {},
            limit_s=20,
        )
    assert running
    expected += Counter(f"paused {sid}" for sid in held)
    poll(lambda: Counter(fleet.inbox_texts(RECIPIENT)) == expected, limit_s=30)
    assert Counter(fleet.inbox_texts(RECIPIENT)) == expected, "each message exactly once"
    assert fleet.replaced_streams() == 0
    assert set(fleet.states(api).values()) == {"connected"}

    # Redis is a cache: flushed, seed 004's keys come back and nothing stops working
    keys = list(fleet.redis.scan_iter(match=f"{fleet.prefix}*"))
    fleet.redis.delete(*keys)
    poll(lambda: fleet.redis.get(f"{fleet.prefix}session:s00:status") == b"connected", limit_s=20)
    _send(api, "s00", "after the flush")
    poll(lambda: "after the flush" in fleet.inbox_texts(RECIPIENT), limit_s=20)


def test_bad_input_from_workers_and_a_reused_worker_id_are_refused(fleet: Fleet) -> None:
    port = fleet.start_control()
    fleet.start_worker("w1", max_sessions=5)
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    beat = {"status": "online", "sessionCount": 0, "cpuUsage": 1.0, "memoryUsage": 1.0,
            "uptime": 1, "messageCount": 0}  # fmt: skip
    with httpx.Client(base_url=base, timeout=10) as http:
        unknown = http.put("/api/v1/workers/nobody/heartbeat", json=beat, headers=auth)
        assert unknown.status_code == 404, unknown.text
        wrong = http.put(
            "/api/v1/workers/w1/heartbeat", json=beat, headers={"Authorization": "Bearer x"}
        )
        assert wrong.status_code == 401, wrong.text
        body = {"workerId": "w9", "endpoint": "not a url", "maxSessions": 5}
        malformed = http.post("/api/v1/workers/register", json=body, headers=auth)
        assert malformed.status_code == 422 and "endpoint" in malformed.text
    second = fleet.start_worker("w1", max_sessions=5, wait=False)
    assert second.popen.wait(timeout=60) == 1
    assert "worker_id_in_use" in second.output() and "w1" in second.output()
    assert fleet.worker_row("w1", "live"), "the first one is untouched"


@pytest.mark.timeout(180)
def test_a_drained_worker_hands_its_sessions_over_and_exits(fleet: Fleet) -> None:
    fleet.start_control()
    fleet.start_worker("w1", max_sessions=10)
    api = fleet.api()
    sessions = [f"d{i}" for i in range(4)]
    for i, sid in enumerate(sessions):
        fleet.link(api, sid, _phone(100 + i))
    poll(lambda: set(fleet.owners()) == set(sessions), limit_s=30)
    fleet.start_worker("w2", max_sessions=10)
    for sid in sessions:
        _send(api, sid, f"queued {sid}")
    # media bigger than the default inline size: in a fleet it rides in the row, so the
    # worker that sends it need not be the process that took the request
    blob = os.urandom(400 * 1024)
    media = {"base64": base64.b64encode(blob).decode(), "filename": "report.bin"}
    doc = {"to": RECIPIENT, "type": "document", "caption": "the report", "media": media}
    assert api.post(f"/api/sessions/{sessions[0]}/messages", json=doc).status_code == 201
    with fleet.admin() as admin:
        assert admin.post("/api/v1/workers/w1/drain").status_code == 200
    poll(lambda: fleet.owners() == dict.fromkeys(sessions, "w2"), limit_s=30)
    assert fleet.workers["w1"][0].popen.wait(timeout=30) == 0, "a drained worker exits"
    for sid in sessions:
        _send(api, sid, f"moved {sid}")
    expected = Counter(f"{w} {sid}" for sid in sessions for w in ("queued", "moved"))
    expected["the report"] = 1
    poll(lambda: Counter(fleet.inbox_texts(RECIPIENT)) == expected, limit_s=30)
    assert fleet.replaced_streams() == 0


@pytest.mark.timeout(180)
def test_another_control_replica_takes_over_the_scheduling(fleet: Fleet) -> None:
    fleet.start_control("c1")
    fleet.start_control("c2")
    fleet.start_worker("w1", max_sessions=10)
    fleet.start_worker("w2", max_sessions=10)
    api = fleet.api("c2")
    for i, sid in enumerate(("l1", "l2", "l3", "l4")):
        fleet.link(api, sid, _phone(200 + i))
    poll(lambda: len(fleet.owners()) == 4, limit_s=30)
    leader = "c1" if "leading scheduler" in fleet.controls["c1"][0].output() else "c2"
    other = "c2" if leader == "c1" else "c1"
    fleet.controls[leader][0].kill(signal.SIGKILL)
    poll(lambda: "leading scheduler" in fleet.controls[other][0].output(), limit_s=10)
    # the new leader's scheduler moves the sessions of a worker that dies now
    placed = fleet.owners()
    fleet.workers["w1"][0].kill(signal.SIGKILL)
    moved = [s for s, w in placed.items() if w == "w1"]
    poll(lambda: all(fleet.owners().get(s) == "w2" for s in moved), limit_s=REPLACED_WITHIN_S)
    assert fleet.replaced_streams() == 0


@pytest.mark.timeout(180)
def test_one_process_per_session_and_a_killed_one_takes_no_other_down(fleet: Fleet) -> None:
    port = fleet.start_control(
        SESSION_RUNNER="process",
        WEBHOOK_SECRET="seed-004-shared-secret",
        WAGATE_PING_INTERVAL_MS=300,
        WAGATE_PING_TIMEOUT_MS=20000,
    )
    api = fleet.api()
    sessions = ["p1", "p2", "p3"]
    for i, sid in enumerate(sessions):
        fleet.link(api, sid, _phone(300 + i))
    poll(lambda: sorted(fleet.owners()) == sessions, limit_s=60)
    assert fleet.owners() == {sid: f"session-{sid}" for sid in sessions}, "a process each"
    control = psutil.Process(fleet.controls["control"][0].popen.pid)
    children = {sid: _session_process(control, sid) for sid in sessions}
    assert len({p.pid for p in children.values()}) == 3

    # seed 004's signed PINGs reach /webhook and move lastPing; a forged event is refused
    first = {sid: api.get(f"/api/sessions/{sid}").json()["lastPing"] for sid in sessions}
    assert all(first.values()), first
    poll(lambda: api.get("/api/sessions/p2").json()["lastPing"] != first["p2"], limit_s=10)
    forged = {"type": "CONNECTED", "sessionId": "p2", "data": {"phoneNumber": "1"}}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as anon:
        assert anon.post("/webhook", json=forged).status_code == 401
        signed_wrong = {"X-Wagate-Timestamp": "1", "X-Wagate-Signature": "v1=00"}
        assert anon.post("/webhook", json=forged, headers=signed_wrong).status_code == 401

    # kill -9 one session's process: only that session reconnects, in a new process
    before = {
        c["session"]: c["id"] for c in fleet.net("GET", "/control/connections")["connections"]
    }
    children["p1"].kill()

    def back() -> bool:
        live = {
            c["session"]: c["id"] for c in fleet.net("GET", "/control/connections")["connections"]
        }
        return "p1" in live and live["p1"] != before["p1"]

    poll(back, limit_s=30)
    after = {c["session"]: c["id"] for c in fleet.net("GET", "/control/connections")["connections"]}
    assert {s: after[s] for s in ("p2", "p3")} == {s: before[s] for s in ("p2", "p3")}
    assert _session_process(control, "p1").pid != children["p1"].pid
    assert fleet.replaced_streams() == 0
    _send(api, "p1", "from a new process")
    poll(lambda: "from a new process" in fleet.inbox_texts(RECIPIENT), limit_s=20)


def _session_process(control: psutil.Process, session_id: str) -> psutil.Process:
    """The control plane's child running ``wagate worker --session <id>``."""
    for proc in control.children():
        cmd = proc.cmdline()
        if "--session" in cmd and cmd[cmd.index("--session") + 1 :][:1] == [session_id]:
            return proc
    raise AssertionError(f"no process runs session {session_id}")
