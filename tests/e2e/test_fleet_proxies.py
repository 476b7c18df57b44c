"""The proxy pool in a fleet: the control plane chooses at provision and its leader checks the
proxies; the worker that owns a session moves it when its proxy dies."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PG_URL, DatabaseFactory
from tests.e2e.conftest import poll
from tests.e2e.fleet import Fleet
from tests.e2e.test_proxy_pool import Socks

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not PG_URL, reason="a fleet shares PostgreSQL (set WAGATE_TEST_DATABASE_URL)"
    ),
    pytest.mark.skipif(
        shutil.which("microsocks") is None,
        reason="needs microsocks (apt install microsocks; .ci/run installs it)",
    ),
]

BINDS = ("127.0.0.5", "127.0.0.6")


@pytest.fixture
def fleet(procs: Any, tmp_path: Path, databases: DatabaseFactory) -> Iterator[Fleet]:
    made = Fleet(procs, tmp_path, databases.new())
    made.start_sandbox()
    yield made
    made.stop_all()


@pytest.fixture
def socks(tmp_path: Path) -> Iterator[list[Socks]]:
    started = [Socks(bind, tmp_path / f"socks-{bind}.log") for bind in BINDS]
    for proxy in started:
        proxy.start()
    yield started
    for proxy in started:
        proxy.kill()


def _remotes(fleet: Fleet) -> dict[str, str]:
    live = fleet.net("GET", "/control/connections")["connections"]
    return {c["session"]: c["remote"] for c in live if c.get("state") == "connected"}


def test_a_fleet_spreads_sessions_over_proxies_and_moves_them_off_a_dead_one(
    fleet: Fleet, socks: list[Socks]
) -> None:
    fleet.start_control(
        PROXY_URL_1=socks[0].url,
        PROXY_URL_2=socks[1].url,
        WAGATE_PROXY_CHECK_INTERVAL_MS=500,
        WAGATE_PROXY_RECHECK_BASE_MS=300,
        WAGATE_PROXY_RECHECK_MAX_MS=1000,
    )
    fleet.start_worker("worker-1", 10)
    api = fleet.api()
    for i in range(4):
        fleet.link(api, f"f{i}", f"6281355520{i:03d}")
    remotes = poll(lambda: (r := _remotes(fleet)) and len(r) == 4 and r, limit_s=30)
    assert Counter(remotes.values()) == {BINDS[0]: 2, BINDS[1]: 2}  # the least loaded each time

    socks[0].kill()
    moved = poll(
        lambda: (r := _remotes(fleet)) and len(r) == 4 and set(r.values()) == {BINDS[1]} and r,
        limit_s=30,
    )
    assert len(moved) == 4
    for sid, remote in remotes.items():
        if remote == BINDS[0]:
            entries = api.get(f"/api/sessions/{sid}/audit", params={"event": "proxy_changed"})
            assert entries.json()["entries"], sid
    # the control plane's leader checks the pool: the dead proxy is bad
    poll(
        lambda: any(
            p["url"].endswith(f":{socks[0].port}") and p["status"] == "bad"
            for p in api.get("/api/v1/proxies").json()["proxies"]
        ),
        limit_s=20,
    )
    assert fleet.replaced_streams() == 0
