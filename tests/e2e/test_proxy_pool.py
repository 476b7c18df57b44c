"""Seed 004's proxy pool through real SOCKS5 servers (``microsocks``), each leaving from its own
loopback address, so the standalone sandbox sees which proxy every session came through."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DatabaseFactory
from tests.e2e.conftest import Proc, clean_env, free_port, poll

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("microsocks") is None,
        reason="needs microsocks (apt install microsocks; .ci/run installs it)",
    ),
]

API_KEY = "pool-api-key"
USER, PASSWORD = "wa", "s3cret-pass"
BINDS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")  # each proxy's outgoing address


class Socks:
    """One microsocks, with credentials, leaving from ``bind``."""

    def __init__(self, bind: str, log: Path) -> None:
        self.bind = bind
        self.port = free_port()
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: Any = None

    @property
    def url(self) -> str:
        return f"socks5h://{USER}:{PASSWORD}@127.0.0.1:{self.port}"

    def start(self) -> None:
        self._out = out = self.log.open("ab")
        args = ["microsocks", "-i", "127.0.0.1", "-p", str(self.port), "-b", self.bind]
        self.proc = subprocess.Popen([*args, "-u", USER, "-P", PASSWORD], stdout=out, stderr=out)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError(f"microsocks on {self.port} did not listen")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self._out is not None:
            self._out.close()


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[list[Socks]]:
    started = [Socks(bind, tmp_path / f"socks-{bind}.log") for bind in BINDS]
    for proxy in started:
        proxy.start()
    yield started
    for proxy in started:
        proxy.kill()


def _gateway(
    procs: Any, tmp: Path, sandbox: str, database_url: str, proxies: list[Socks], name: str
) -> tuple[Proc, httpx.Client]:
    port = free_port()
    env = clean_env(
        DATABASE_URL=database_url,
        WAGATE_DATA_DIR=tmp / "gateway",
        PORT=port,
        API_KEY=API_KEY,
        WAGATE_ENGINE="sandbox",
        SANDBOX_URL=sandbox,
        WAGATE_PROXY_CHECK_INTERVAL_MS=500,
        WAGATE_PROXY_CHECK_TIMEOUT_MS=2000,
        WAGATE_PROXY_RECHECK_BASE_MS=300,
        WAGATE_PROXY_RECHECK_MAX_MS=1000,
        WAGATE_BACKOFF_BASE_MS=200,
        WAGATE_BACKOFF_MAX_MS=1000,
        **{f"PROXY_URL_{i + 1}": p.url for i, p in enumerate(proxies)},
    )
    proc = procs(["serve"], env, name)
    proc.wait_http(f"http://127.0.0.1:{port}/healthz")
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-Api-Key": API_KEY})
    return proc, api


def _remotes(sandbox: str) -> dict[str, str]:
    """Session → the address its live, logged-in connection came from."""
    with httpx.Client(timeout=10) as client:
        live = client.get(f"{sandbox}/control/connections").json()["connections"]
    return {c["session"]: c["remote"] for c in live if c.get("state") == "connected"}


def _all_eight(sandbox: str) -> dict[str, str] | None:
    found = _remotes(sandbox)
    return found if len(found) == 8 else None


def _scan(sandbox: str, api: httpx.Client, sid: str, phone: str) -> None:
    qr = poll(lambda: _qr(api, sid), limit_s=20)
    with httpx.Client(timeout=10) as client:
        scanned = client.post(f"{sandbox}/control/scan", json={"qr": qr, "phone": phone})
    assert scanned.is_success, scanned.text


def _qr(api: httpx.Client, sid: str) -> str | None:
    answer = api.get(f"/api/sessions/{sid}/qr")
    return answer.json()["qr"] if answer.status_code == 200 else None


def test_eight_sessions_over_three_proxies_sticky_and_failover(
    databases: DatabaseFactory,
    tmp_path: Path,
    procs: Any,
    sandbox_url: str,
    proxies: list[Socks],
) -> None:
    db = databases.new()
    gateway, api = _gateway(procs, tmp_path, sandbox_url, db, proxies, "gw-1")
    listed = api.get("/api/v1/proxies").json()["proxies"]
    assert len(listed) == 3 and all(PASSWORD not in p["url"] for p in listed)
    poll(lambda: {p["status"] for p in api.get("/api/v1/proxies").json()["proxies"]}
         == {"active"})  # fmt: skip

    phones = {f"s{i}": f"62813555100{i:02d}" for i in range(8)}
    for sid, phone in phones.items():
        made = api.post("/api/sessions/provision", json={"id": sid, "phone": phone})
        assert made.status_code == 201, made.text
        _scan(sandbox_url, api, sid, phone)
    remotes = poll(lambda: _all_eight(sandbox_url), limit_s=30)
    assert set(remotes.values()) <= set(BINDS)
    assert max(Counter(remotes.values()).values()) <= 4  # MAX_SESSIONS_PER_PROXY
    loads = [p["sessions"] for p in api.get("/api/v1/proxies").json()["proxies"]]
    assert sum(loads) == 8 and max(loads) <= 4

    # sticky: after a kill -9 of the gateway every phone comes back through the same proxy
    gateway.kill()
    api.close()
    gateway, api = _gateway(procs, tmp_path, sandbox_url, db, proxies, "gw-2")
    again = poll(lambda: _all_eight(sandbox_url), limit_s=30)
    assert again == remotes

    # a proxy dies: its sessions move to the others, never over capacity
    victim = next(p for p in proxies if p.bind == Counter(remotes.values()).most_common(1)[0][0])
    moved = [sid for sid, remote in remotes.items() if remote == victim.bind]
    victim.kill()

    def settled() -> dict[str, str] | None:
        now = _remotes(sandbox_url)
        if len(now) == 8 and victim.bind not in now.values():
            return now
        return None

    after = poll(settled, limit_s=30)
    assert max(Counter(after.values()).values()) <= 4
    for sid in moved:
        audit = api.get(f"/api/sessions/{sid}/audit", params={"event": "proxy_changed"}).json()
        assert audit["entries"] and PASSWORD not in str(audit["entries"])
    pool = api.get("/api/v1/proxies").json()["proxies"]
    assert {p["url"].rsplit(":", 1)[1]: p["status"] for p in pool}[str(victim.port)] == "bad"

    # the moved phones stick to their new proxies: another restart keeps them there
    gateway.kill()
    api.close()
    gateway, api = _gateway(procs, tmp_path, sandbox_url, db, proxies, "gw-3")
    assert poll(lambda: _all_eight(sandbox_url), limit_s=30) == after

    # the dead proxy comes back: it is active again at its next check
    victim.start()
    poll(
        lambda: any(
            p["url"].endswith(f":{victim.port}") and p["status"] == "active"
            for p in api.get("/api/v1/proxies").json()["proxies"]
        ),
        limit_s=20,
    )
    api.close()
