"""The process runner keeps one child per session that should run, and replaces the ones that fail.

The children here are small Python processes standing in for ``wagate worker
--session``: what is tested is the supervision (start, reap, back off, stop),
on a manual clock.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from wagate.backoff import Backoff
from wagate.clock import ManualClock
from wagate.control.process_runner import Launch, ProcessRunner
from wagate.domain.session import SessionState
from wagate.storage.repos.sessions import SessionRepo
from wagate.testing import eventually

BACKOFF = Backoff(base_s=1.0, max_s=8.0, jitter_ratio=0.0)
LIVES = "import time; time.sleep(120)"
DIES = "import sys; sys.exit(3)"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Plans:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.code = LIVES
        self.launched: list[str] = []

    def __call__(self, session_id: str, proxy: str | None) -> Launch:
        self.launched.append(session_id)
        argv = [sys.executable, "-c", self.code]
        return Launch(argv, {}, _closed_port(), self.tmp / session_id / "process.log")


@pytest.fixture
def plans(tmp_path: Path) -> Plans:
    return Plans(tmp_path)


@pytest.fixture
async def runner(
    session_repo: SessionRepo, clock: ManualClock, plans: Plans
) -> AsyncIterator[tuple[ProcessRunner, list[bool]]]:
    leading = [True]
    async with httpx.AsyncClient() as http:
        made = ProcessRunner(
            sessions=session_repo,
            plan=plans,
            leading=lambda: leading[0],
            clock=clock,
            backoff=BACKOFF,
            reset_after_s=30,
            ping_timeout_s=60,
            interval_s=3600,  # rounds are run by the tests
            http=http,
            stop_timeout_s=5,
        )
        yield made, leading
        await made.drain()


async def _should_run(repo: SessionRepo, *ids: str, state: SessionState = SessionState.QR) -> None:
    for sid in ids:
        await repo.create(sid, engine="sandbox")
        await repo.update(sid, status=state)


async def test_one_child_per_session_that_should_run(
    runner: tuple[ProcessRunner, list[bool]], session_repo: SessionRepo, plans: Plans
) -> None:
    run, _ = runner
    await _should_run(session_repo, "a", "b")
    await _should_run(session_repo, "stopped", state=SessionState.STOPPED)
    await run.run_once()
    await run.run_once()  # a second round starts nothing more
    assert sorted(run.children) == ["a", "b"] and sorted(plans.launched) == ["a", "b"]
    pids = {c.process.pid for c in run.children.values()}
    assert len(pids) == 2


async def test_a_child_that_exits_comes_back_after_a_growing_backoff(
    runner: tuple[ProcessRunner, list[bool]],
    session_repo: SessionRepo,
    plans: Plans,
    clock: ManualClock,
) -> None:
    run, _ = runner
    plans.code = DIES
    await _should_run(session_repo, "a")
    await run.run_once()
    for delay in (2.0, 4.0):  # BACKOFF.delay(1), BACKOFF.delay(2): exits in a row
        child = run.children["a"]
        await eventually(lambda child=child: child.process.returncode is not None)
        await run.run_once()  # reaped: paused
        assert "a" not in run.children
        await clock.advance(delay - 0.1)
        await run.run_once()
        assert "a" not in run.children, f"still inside the {delay}s backoff"
        await clock.advance(0.2)
        await run.run_once()
        assert "a" in run.children
    assert plans.launched == ["a", "a", "a"] and run.restarts == 2


async def test_a_session_that_should_not_run_loses_its_child(
    runner: tuple[ProcessRunner, list[bool]], session_repo: SessionRepo
) -> None:
    run, _ = runner
    await _should_run(session_repo, "a", "b")
    await run.run_once()
    child = run.children["a"]
    await session_repo.update("a", status=SessionState.STOPPED)
    await session_repo.delete("b")
    await run.run_once()
    assert run.children == {} and child.process.returncode is not None


async def test_a_child_that_stopped_pinging_is_replaced(
    runner: tuple[ProcessRunner, list[bool]],
    session_repo: SessionRepo,
    clock: ManualClock,
    plans: Plans,
) -> None:
    run, _ = runner
    await _should_run(session_repo, "quiet", "talks")
    await run.run_once()
    first = {sid: c.process for sid, c in run.children.items()}
    await clock.advance(61)  # past PING_TIMEOUT_MS
    await session_repo.set_last_ping("talks", clock.now() - timedelta(seconds=5))
    await run.run_once()
    assert first["quiet"].returncode is not None and "quiet" not in run.children
    assert run.children["talks"].process is first["talks"], "it pings: left alone"
    await clock.advance(BACKOFF.core(1))  # no jitter here
    await run.run_once()
    assert run.children["quiet"].process is not first["quiet"]


async def test_a_replica_that_stops_leading_stops_its_children(
    runner: tuple[ProcessRunner, list[bool]], session_repo: SessionRepo
) -> None:
    run, leading = runner
    await _should_run(session_repo, "a")
    await run.run_once()
    child = run.children["a"]
    leading[0] = False
    await run.run_once()
    assert run.children == {} and child.process.returncode is not None
