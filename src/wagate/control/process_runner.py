"""``SESSION_RUNNER=process``: one ``wagate worker --session ID`` process per session (seed 004).

Seed 004's isolation, ``one process = one session = one phone number``: a
fault in one session's process (neonize's Go library included) reaches no
other session. The leading control replica keeps one child process for every
session whose state says it should run, and:

- restarts a child that exits, after a backoff that grows with each exit in
  a row (``WAGATE_BACKOFF_*``, reset once a child ran for a while);
- restarts a child whose last ``PING`` is older than ``PING_TIMEOUT_MS``, or
  whose ``/healthz`` says it needs a restart;
- stops the child of a session that should not run any more (stopped,
  logged out, deleted), and every child when it stops leading or shuts down.

A child takes its session's lease like any worker (its worker id is
``session-<ID>``), so two children of one session never both connect: the
second is refused its registration while the first lives. Commands reach a
child over its ``/internal`` routes, as they reach any worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import random
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from wagate.backoff import Backoff
from wagate.clock import Clock
from wagate.domain.session import SessionState, Uplink
from wagate.lifecycle import Service
from wagate.storage.repos.sessions import SessionRepo

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # <sys/prctl.h>


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start one session's process: its command, environment, port and log file."""

    argv: list[str]
    env: dict[str, str]
    port: int
    log_file: Path


Plan = Callable[[str, str | None], Launch]  # (session id, its proxy) → how to start it


@dataclass
class _Child:
    session_id: str
    process: asyncio.subprocess.Process
    port: int
    started: float  # monotonic
    attempt: int


@dataclass
class _Pause:
    attempt: int = 0  # exits in a row
    until: float = 0.0  # monotonic: no new process before then
    reasons: list[str] = field(default_factory=list)


class ProcessRunner(Service):
    """Keeps one child process per session that should run, while ``leading()`` says so."""

    def __init__(
        self,
        *,
        sessions: SessionRepo,
        plan: Plan,
        leading: Callable[[], bool],
        clock: Clock,
        backoff: Backoff,
        reset_after_s: float,
        ping_timeout_s: float,
        interval_s: float,
        http: httpx.AsyncClient,
        stop_timeout_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__("process-runner", stop_timeout_s=3 * stop_timeout_s)
        self._sessions = sessions
        self._plan = plan
        self._leading = leading
        self._clock = clock
        self._backoff = backoff
        self._reset_after_s = reset_after_s
        self._ping_timeout = timedelta(seconds=ping_timeout_s)
        self._interval_s = interval_s
        self._http = http
        self._child_stop_s = stop_timeout_s
        self._rng = rng or random.Random()
        self.children: dict[str, _Child] = {}
        self._pauses: dict[str, _Pause] = {}
        self._stopping = asyncio.Event()
        self.restarts = 0

    async def open(self) -> None:
        self.tasks.spawn(self._loop(), "loop")

    async def stop_intake(self) -> None:
        self._stopping.set()

    async def drain(self) -> None:
        await self._stop_all("the control plane stops")

    # --- the loop --------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("process runner round failed")
            await self._clock.wait(self._stopping, self._interval_s)

    async def run_once(self) -> None:
        """One round: reap, stop what should not run, restart the deaf, start what is missing."""
        self._reap()
        if not self._leading():
            await self._stop_all("this replica does not lead any more")
            return
        wanted = {
            s.id: s
            for s in await self._sessions.find(
                states=[s for s in SessionState if s.is_running], uplink=Uplink.FLEET
            )
        }
        for session_id in set(self.children) - set(wanted):
            await self._stop(session_id, "the session should not run")
        for session_id, child in list(self.children.items()):
            why = await self._unhealthy(child, wanted[session_id].last_ping_at)
            if why is not None:
                await self._restart(child, why)
        now = self._clock.monotonic()
        for session_id, session in wanted.items():
            pause = self._pauses.get(session_id)
            if session_id not in self.children and (pause is None or now >= pause.until):
                await self._spawn(session_id, session.proxy)

    # --- children --------------------------------------------------------------------

    async def _spawn(self, session_id: str, proxy: str | None) -> None:
        launch = self._plan(session_id, proxy)
        launch.log_file.parent.mkdir(parents=True, exist_ok=True)
        with launch.log_file.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                *launch.argv,
                env=launch.env,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        attempt = self._pauses.get(session_id, _Pause()).attempt
        self.children[session_id] = _Child(
            session_id, process, launch.port, self._clock.monotonic(), attempt
        )
        log.info(
            "session %s: process %d started (log %s)", session_id, process.pid, launch.log_file
        )

    def _reap(self) -> None:
        now = self._clock.monotonic()
        for session_id, child in list(self.children.items()):
            code = child.process.returncode
            if code is None:
                continue
            del self.children[session_id]
            ran = now - child.started
            attempt = 0 if ran >= self._reset_after_s else child.attempt + 1
            delay = self._backoff.delay(attempt, self._rng)
            self._pauses[session_id] = _Pause(attempt, now + delay)
            self.restarts += 1
            log.warning(
                "session %s: process %d exited (%s) after %.1fs; a new one in %.2fs",
                session_id,
                child.process.pid,
                code,
                ran,
                delay,
            )

    async def _unhealthy(self, child: _Child, last_ping: datetime | None) -> str | None:
        """Why the child must be replaced, or None: a missed PING, or its own request."""
        up = self._clock.monotonic() - child.started
        if up >= self._ping_timeout.total_seconds():
            if last_ping is None:
                return "no PING since it started"
            if self._clock.now() - last_ping > self._ping_timeout:
                return f"no PING for more than {self._ping_timeout.total_seconds():.0f}s"
        try:
            answer = await self._http.get(f"http://127.0.0.1:{child.port}/healthz", timeout=2)
        except httpx.HTTPError:
            return None  # starting, or busy: an exit or a missed PING says more
        return "it asks for a restart (needsRestart)" if answer.status_code == 503 else None

    async def _restart(self, child: _Child, why: str) -> None:
        log.warning("session %s: restarting its process: %s", child.session_id, why)
        await self._end(child, graceful=False)
        self._reap()

    async def _stop(self, session_id: str, why: str) -> None:
        child = self.children.pop(session_id, None)
        self._pauses.pop(session_id, None)
        if child is not None:
            log.info("session %s: stopping its process: %s", session_id, why)
            await self._end(child, graceful=True)

    async def _stop_all(self, why: str) -> None:
        await asyncio.gather(*(self._stop(sid, why) for sid in list(self.children)))

    async def _end(self, child: _Child, *, graceful: bool) -> None:
        """SIGTERM (the child drains and releases its lease), then SIGKILL past the deadline."""
        process = child.process
        if process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        try:
            await asyncio.wait_for(process.wait(), self._child_stop_s * 2)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it when the control plane dies, even by SIGKILL.

    Linux's ``PR_SET_PDEATHSIG``; elsewhere a child outlives a killed control
    plane, keeps its session, and the next leader's child for it is refused
    until it exits.
    """
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
