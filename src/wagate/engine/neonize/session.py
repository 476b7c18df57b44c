"""One session's life through neonize: which client connects, how links open and close.

A :class:`SessionClient` lives as long as the process (one per session id,
made by the engine). Each link the runtime opens connects the session's
current :class:`~.client.ClientSlot`; closing the link lets go of it in the
one way that is safe for where its goroutine is (see :mod:`.client`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from collections.abc import Coroutine
from typing import Any, Protocol

from wagate.backoff import Backoff
from wagate.clock import Clock
from wagate.engine.base import AuthStore, LinkOptions
from wagate.engine.neonize import failures, outbound
from wagate.engine.neonize.calls import Runtime
from wagate.engine.neonize.client import ClientSlot, Sink
from wagate.engine.neonize.intake import Intake
from wagate.errors import ConfigError, EngineError

log = logging.getLogger(__name__)

STORE_FILE = "whatsmeow.db"
AUTH_RECORD = "neonize"  # the AuthStore record holding the device JID (PostgreSQL stores)
# A set-aside client that logged in this recently may be why the live one was replaced.
LATE_LOGIN_WINDOW_S = 120.0


class Host(Protocol):
    """What a session needs from its engine."""

    device_name: str
    database_url: str | None
    stop_timeout_s: float
    connect_backoff: Backoff
    inbound_bound: int
    clock: Clock
    rng: random.Random

    @property
    def runtime(self) -> Runtime: ...

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None: ...


class DialBackoff:
    """Spacing between dials that fail at once.

    Every ``connect`` leaks a connection pool in Go (an open descriptor and
    about 0.2 MB that ``Stop`` never closes), so a session that cannot reach
    WhatsApp must not dial at the runtime's reconnect pace; this adds to the
    runtime's own delay, doubling up to minutes.
    """

    def __init__(self, policy: Backoff, rng: random.Random) -> None:
        self.policy = policy
        self.failures = 0
        self._rng = rng
        self._not_before = 0.0

    def delay(self, now: float) -> float:
        return max(0.0, self._not_before - now)

    def failed(self, now: float) -> None:
        self.failures += 1
        self._not_before = now + self.policy.delay(self.failures - 1, self._rng)

    def succeeded(self) -> None:
        self.failures = 0
        self._not_before = 0.0


class SessionClient:
    """One session's neonize clients over the life of the process."""

    def __init__(self, session_id: str, host: Host) -> None:
        self.session_id = session_id
        self._host = host
        self._generation = 0
        self.current: ClientSlot | None = None
        self.abandoned: list[ClientSlot] = []
        self._sink: Sink | None = None
        self._late_logins: collections.deque[tuple[float, ClientSlot]] = collections.deque(maxlen=8)
        self.dial = DialBackoff(host.connect_backoff, host.rng)
        self._clock = host.clock
        self.log = log.getChild(session_id)

    # --- links ------------------------------------------------------------------------

    async def open(self, sink: Sink, options: LinkOptions, auth: AuthStore) -> ClientSlot:
        """Connect the session's client for a new link; raises what the runtime retries."""
        if self._sink is not None:
            raise EngineError(f"session {self.session_id} already has an open link")
        db_name, jid, new_device = await self._store(auth)
        proxy = failures.proxy_settings(options.proxy)
        await self._space_dials()
        slot = self._slot_for_open()
        sink.attach(slot)
        self._sink = sink
        slot.dialed_at = self._clock.monotonic()
        try:
            await slot.connect(db_name, proxy, jid, new_device, resuming=await _linked(auth))
            await self._wait_alive(slot)
        except BaseException:
            self._sink = None
            await self._let_go(slot)
            raise
        if slot.task is not None and slot.task.done():
            self._sink = None
            error = _task_error(slot.task)
            await self._let_go(slot)
            raise failures.connect_error(error, options.proxy)
        return slot

    async def close(self) -> None:
        self._sink = None
        if self.current is not None:
            await self._let_go(self.current)

    @property
    def sink(self) -> Sink | None:
        """The open link, if any."""
        return self._sink

    async def stop_intake(self, slot: ClientSlot) -> None:
        """The open link drains: ``slot`` takes nothing more from WhatsApp (see ``drain``)."""
        if slot is self.current and not slot.abandoned:
            await slot.stop_intake()

    async def _wait_alive(self, slot: ClientSlot) -> None:
        assert slot.task is not None
        alive = asyncio.ensure_future(slot.alive.wait())
        try:
            await asyncio.wait(
                {alive, slot.task},
                timeout=self._host.runtime.start_window_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            alive.cancel()

    async def _space_dials(self) -> None:
        delay = self.dial.delay(self._clock.monotonic())
        if delay > 0:
            level = logging.INFO if delay >= 1 else logging.DEBUG
            failed = self.dial.failures
            self.log.log(level, "waiting %.1fs more before dialing (%d failed)", delay, failed)
            await self._clock.sleep(delay)

    async def _store(self, auth: AuthStore) -> tuple[str, Any, bool]:
        """Where whatsmeow keeps this session's keys, and which device to load."""
        url = self._host.database_url
        if url:
            saved = await auth.load(AUTH_RECORD) or {}
            jid = saved.get("jid")
            if isinstance(jid, str) and jid:
                return url, outbound.parse_jid(jid, "jid"), False
            return url, None, True  # a shared database: never "the first device" in it
        folder = await auth.folder()
        if folder is None:
            raise ConfigError(
                "the neonize engine keeps each session's keys in AUTH_DIR/<session>/"
                f"{STORE_FILE}; this auth store has no folder (or set NEONIZE_DATABASE_URL)"
            )
        return str(folder / STORE_FILE), None, False

    def _slot_for_open(self) -> ClientSlot:
        slot = self.current
        if slot is not None and not slot.stuck and (slot.task is None or slot.task.done()):
            return slot
        if slot is not None:
            self._abandon(slot)
        uuid = self.session_id if self._generation == 0 else f"{self.session_id}~{self._generation}"
        self._generation += 1
        host = self._host
        self.current = ClientSlot(self, uuid, host.runtime, host.device_name, host.inbound_bound)
        return self.current

    async def _let_go(self, slot: ClientSlot) -> None:
        released = await slot.shut(self._host.stop_timeout_s)
        if not released and slot is self.current:
            self._abandon(slot)

    def _abandon(self, slot: ClientSlot) -> None:
        if slot.abandoned:
            return
        slot.abandoned = True
        self.abandoned.append(slot)
        if slot is self.current:
            self.current = None
        self.log.warning(
            "set client %s aside: its Go goroutine is still %s; the next connect uses a new one",
            slot.uuid,
            "stopping" if slot.pipeline_up else "dialing or waiting for a QR scan",
        )

    # --- what Go says ------------------------------------------------------------------

    def deliver(self, slot: ClientSlot, kind: str, *payload: Any) -> None:
        """A signal from ``slot``'s Go side, on the loop; routed to the open link if it is ours."""
        if slot is self.current:
            self._account_dial(slot, kind)
        sink = self._sink if slot is self.current and not slot.abandoned else None
        if sink is None:
            if kind == "event":
                _release(payload[2])  # nobody consumes it
            if slot.abandoned and kind in ("pipeline", "event", "ended"):
                if kind != "ended":
                    self._late_logins.append((self._clock.monotonic(), slot))
                self._reap(slot)
            return
        if kind == "qr":
            sink.on_qr(payload[0])
        elif kind == "status":
            sink.on_login_status(payload[0])
        elif kind == "event":
            sink.on_event(payload[0], payload[1], payload[2])
        elif kind == "ended":
            sink.on_ended(payload[0])

    def _account_dial(self, slot: ClientSlot, kind: str) -> None:
        if kind in ("qr", "pipeline"):
            self.dial.succeeded()
        elif kind == "ended" and not (slot.qr_seen or slot.pipeline_up):
            self.dial.failed(self._clock.monotonic())

    def dial_timed_out(self, slot: ClientSlot) -> None:
        """``slot`` dialed past the deadline with no sign of life: space the next dial."""
        if slot is self.current:
            self.dial.failed(self._clock.monotonic())

    def excuse_replaced(self) -> bool:
        """Whether a "stream replaced" on the live client is this session's own doing.

        A client set aside while it dialed with the session's device cannot be
        stopped, and its dial may still complete: whatsmeow then logs in with the
        very keys the live client uses, and WhatsApp ends the older stream,
        the live one's, as replaced. That is no other device taking over: the
        link reconnects (and the late client is stopped as soon as it shows
        life). Each such client excuses one "replaced", so a real takeover
        still fails the session.
        """
        now = self._clock.monotonic()
        late = [s for at, s in self._late_logins if now - at <= LATE_LOGIN_WINDOW_S]
        for slot in [*late, *(s for s in self.abandoned if s.may_log_in())]:
            if not slot.excused:
                slot.excused = True
                return True
        return False

    def stuck(self) -> bool:
        """A stop of this session's never returned, or a client had to be set aside."""
        return bool(self.abandoned) or any(s.stuck for s in (self.current, *self.abandoned) if s)

    def _reap(self, slot: ClientSlot) -> None:
        """An abandoned client showed life: its goroutine is past its map reads; stop it."""
        if slot.reaping:
            return
        slot.reaping = True
        self._host.spawn(self._finish(slot), f"neonize-reap:{slot.uuid}")

    async def _finish(self, slot: ClientSlot) -> None:
        try:
            if await slot.shut(self._host.stop_timeout_s) and slot in self.abandoned:
                self.abandoned.remove(slot)
                self.log.info("client %s set aside earlier has now stopped", slot.uuid)
        finally:
            slot.reaping = False

    async def aclose(self) -> None:
        """The engine is closing: stop what can be stopped safely."""
        await self.close()
        for slot in list(self.abandoned):
            if slot.reaping:
                continue  # being stopped already (the engine waits for that task)
            if slot.task is not None and (slot.task.done() or slot.pipeline_up):
                slot.reaping = True
                await self._finish(slot)

    def running(self) -> int:
        slots = [self.current, *self.abandoned]
        return sum(1 for s in slots if s is not None and s.task is not None and not s.task.done())

    def unstored(self) -> int:
        """Events Go handed to Python that no consumer has handled yet."""
        return sum(s.intake.held for s in (self.current, *self.abandoned) if s is not None)


def _release(held: Intake | None) -> None:
    if held is not None:
        held.release()


async def _linked(auth: AuthStore) -> bool:
    """The session has a linked device (its JID is recorded at every login, removed at logout)."""
    try:
        saved = await auth.load(AUTH_RECORD) or {}
    except OSError:
        return False
    return bool(saved.get("jid"))


def _task_error(task: asyncio.Task[Any]) -> str:
    if task.cancelled():
        return "the connect task was cancelled"
    exc = task.exception()
    return (str(exc) or type(exc).__name__) if exc is not None else "the connect task ended"
