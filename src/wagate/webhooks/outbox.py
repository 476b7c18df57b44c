"""Webhooks that lose nothing: a durable outbox and the dispatcher that empties it.

:class:`Outbox` is the :class:`~wagate.webhooks.events.EventSink`: an event becomes one
``webhook_deliveries`` row per matching subscription, in one transaction
(``emit_in`` joins the producer's own transaction, so a message and its event
commit together). :class:`WebhookDispatcher` leases due rows, POSTs them
signed (:mod:`wagate.webhooks`), and records the outcome: delivered, retry
later with backoff, or dead. Rows outlive processes; a lease that was never
settled (the process died mid-flight) runs out and the row is due again, so
delivery is at least once: receivers dedupe on ``X-Wagate-Delivery``.
:class:`Webhooks` wires the pieces for ``lifecycle``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import httpx

from wagate import __version__
from wagate.clock import Clock
from wagate.errors import InvalidInput
from wagate.ingest.sanitize import clean
from wagate.netguard import check_url, connect_guard
from wagate.settings import Settings
from wagate.storage.db import Database
from wagate.storage.repos.webhooks import Claim, DeliveryRepo, SubscriptionRepo, on_commit
from wagate.webhooks.admin import WebhookAdmin
from wagate.webhooks.events import Event
from wagate.webhooks.policy import (
    RETRY_AFTER_STATUSES,
    Outcome,
    RetryPolicy,
    Verdict,
    encode,
    envelope,
    log_host,
    parse_retry_after,
    short_reason,
    verdict,
)
from wagate.webhooks.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature_header,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger(__name__)

_SNIPPET = 300  # bytes of a failed response kept in ``last_error``
_LEASE_MARGIN_S = 60.0  # a lease outlives the attempt's own deadline by this much


class Outbox:
    """The durable :class:`~wagate.webhooks.events.EventSink`: events become pending deliveries."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        # set when rows were committed (or replayed): the dispatcher wakes without polling
        self.wakeup = asyncio.Event()

    def wake(self) -> None:
        self.wakeup.set()

    async def emit(self, event: Event, session_id: str | None, data: dict[str, Any]) -> None:
        """Record an event in a transaction of its own (tools, tests, replays of history).

        Producers of state changes use :meth:`emit_in` instead, inside the
        transaction that writes the state, so neither can commit alone.
        """
        async with self._db.begin() as conn:
            count = await self._record(conn, event, session_id, data)
        if count:
            self.wake()

    async def emit_in(
        self, conn: AsyncConnection, event: Event, session_id: str | None, data: dict[str, Any]
    ) -> int:
        """Record the event inside the caller's open transaction; how many deliveries.

        The dispatcher is woken when that transaction commits (not before:
        it would find nothing yet).
        """
        count = await self._record(conn, event, session_id, data)
        if count:
            on_commit(conn, self.wake)
        return count

    async def _record(
        self, conn: AsyncConnection, event: Event, session_id: str | None, data: dict[str, Any]
    ) -> int:
        subs = await SubscriptionRepo.matching_in(conn, event.value, session_id)
        if not subs:
            return 0
        now = self._clock.now()
        return await DeliveryRepo.insert_in(
            conn,
            [s.id for s in subs],
            event=event.value,
            session_id=session_id,
            payload=envelope(event.value, session_id, clean(data), now),
            now=now,
        )


class WebhookDispatcher:
    """Delivers due outbox rows, at most ``webhook_concurrency`` at a time, as a service.

    ``async with WebhookDispatcher(...)`` starts the loop; leaving stops
    claiming, lets attempts in flight finish within ``stop_timeout_ms``, then
    cancels the rest (their leases run out and they are tried again later).
    The loop wakes on :attr:`Outbox.wakeup` and otherwise polls every
    ``webhook_poll_ms``; backoff is computed from the injected clock.
    """

    def __init__(
        self,
        settings: Settings,
        deliveries: DeliveryRepo,
        clock: Clock,
        *,
        wakeup: asyncio.Event | None = None,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._deliveries = deliveries
        self._clock = clock
        self._wakeup = wakeup or asyncio.Event()
        self._rng = rng or random.Random()
        self._transport = transport
        self._policy = RetryPolicy(
            base_s=settings.webhook_backoff_base_ms / 1000,
            max_s=settings.webhook_backoff_max_ms / 1000,
            max_attempts=settings.webhook_max_attempts,
            jitter_ratio=settings.webhook_jitter_ratio,
        )
        self._limit = settings.webhook_concurrency
        self._poll_s = settings.webhook_poll_ms / 1000
        self._timeout_s = settings.webhook_timeout_ms / 1000
        self._lease = timedelta(seconds=self._timeout_s + _LEASE_MARGIN_S)
        self._stop_s = settings.stop_timeout_ms / 1000
        self._allow_private = settings.allow_private_urls
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._main: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    # --- service lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._client = httpx.AsyncClient(
            timeout=self._timeout_s,
            follow_redirects=False,  # a redirect could lead past the URL guard
            # an environment proxy would hide the real target from the guard
            trust_env=self._allow_private,
            limits=httpx.Limits(max_connections=self._limit),
            headers={"User-Agent": f"wagate/{__version__}"},
            transport=self._transport,
        )
        self._main = asyncio.create_task(self._run(), name="webhook-dispatcher")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping = True
        self._wakeup.set()
        try:
            if self._main is not None:
                await self._drain(self._main)
        finally:
            if self._client is not None:
                await self._client.aclose()

    async def _drain(self, main: asyncio.Task[None]) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(main), self._stop_s)
        except TimeoutError:
            log.warning("webhook deliveries still in flight at shutdown; they will be retried")
        finally:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await main

    def wake(self) -> None:
        self._wakeup.set()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    # --- the loop --------------------------------------------------------------------

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            while not self._stopping:
                self._wakeup.clear()
                free = self._limit - len(self._inflight)
                claims = await self._claim(free) if free > 0 else []
                for claim in claims:
                    task = tasks.create_task(
                        self._deliver(claim), name=f"webhook-delivery-{claim.delivery.id}"
                    )
                    self._inflight.add(task)
                    task.add_done_callback(self._finished)
                if claims and len(claims) == free:
                    continue  # a full batch: more may be due once a slot frees
                await self._idle()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wakeup.set()  # a slot is free

    async def _claim(self, free: int) -> list[Claim]:
        try:
            return await self._deliveries.claim_due(free, self._lease)
        except Exception as exc:  # the database is away: keep the loop, try at the next poll
            log.warning("cannot claim webhook deliveries: %s", type(exc).__name__)
            return []

    async def _idle(self) -> None:
        """Wait for a wake-up or the poll interval (on the injected clock), whichever is first."""
        await self._clock.wait(self._wakeup, self._poll_s)

    # --- one delivery ------------------------------------------------------------------

    async def _deliver(self, claim: Claim) -> None:
        delivery = claim.delivery
        try:
            outcome = await self._attempt(claim)
        except Exception as exc:  # a bug must cost this attempt, not the dispatcher
            log.exception("webhook delivery %d: unexpected error", delivery.id)
            outcome = Outcome(None, f"internal error: {type(exc).__name__}")
        try:
            await self._settle(claim, outcome)
        except Exception as exc:  # the lease runs out and the row is tried again
            log.warning(
                "webhook delivery %d: outcome not recorded (%s)", delivery.id, type(exc).__name__
            )

    async def _attempt(self, claim: Claim) -> Outcome:
        url = claim.subscription.url
        body = encode(claim.delivery.payload)
        try:
            # checked again at every attempt: DNS may point somewhere else by now,
            # and again on the connection itself (the client resolves the name anew)
            await check_url(url, "url", allow_private=self._allow_private)
            async with asyncio.timeout(self._timeout_s):
                return await self._post(url, body, self._headers(claim, body))
        except InvalidInput as exc:
            return Outcome(None, f"refused by the URL guard: {exc.message}")
        except TimeoutError:
            return Outcome(None, f"timed out after {self._timeout_s:g} s")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:_SNIPPET])

    async def _post(self, url: str, body: bytes, headers: httpx.Headers) -> Outcome:
        assert self._client is not None
        extensions = {} if self._allow_private else {"trace": connect_guard("url")}
        async with self._client.stream(
            "POST", url, content=body, headers=headers, extensions=extensions
        ) as response:
            status = response.status_code
            if verdict(status) is Verdict.DELIVERED:
                return Outcome(status)
            text = await _snippet(response)
            retry_after = None
            if status in RETRY_AFTER_STATUSES:
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), self._clock.now()
                )
            return Outcome(status, f"HTTP {status}: {text}".strip(), retry_after)

    def _headers(self, claim: Claim, body: bytes) -> httpx.Headers:
        delivery = claim.delivery
        timestamp = int(self._clock.now().timestamp())
        headers = httpx.Headers(claim.subscription.headers)
        # set after the custom ones, so none of them can replace these
        headers["Content-Type"] = "application/json"
        headers[EVENT_HEADER] = delivery.event
        headers[DELIVERY_HEADER] = str(delivery.id)
        headers[TIMESTAMP_HEADER] = str(timestamp)
        headers[SIGNATURE_HEADER] = signature_header(timestamp, body, claim.subscription.secret)
        return headers

    async def _settle(self, claim: Claim, outcome: Outcome) -> None:
        delivery, host = claim.delivery, log_host(claim.subscription.url)
        status, error = outcome.http_status, outcome.error or ""
        if status is not None and verdict(status) is Verdict.DELIVERED:
            await self._deliveries.delivered(delivery, status)
            log.debug("webhook delivery %d delivered to %s (HTTP %d)", delivery.id, host, status)
            return
        if status is not None and verdict(status) is Verdict.DEAD:
            await self._deliveries.dead(delivery, status, error)
            log.warning(
                "webhook delivery %d to %s: HTTP %d, not retried", delivery.id, host, status
            )
            return
        retry_after = outcome.retry_after_s if status in RETRY_AFTER_STATUSES else None
        delay = self._policy.next_delay(delivery.attempts, self._rng, retry_after)
        if delay is None:
            await self._deliveries.dead(delivery, status, error)
            log.warning(
                "webhook delivery %d to %s: dead after %d attempts (%s)",
                delivery.id,
                host,
                delivery.attempts,
                short_reason(status, error),
            )
            return
        at = self._clock.now() + timedelta(seconds=delay)
        await self._deliveries.retry(delivery, at, status, error)
        log.info(
            "webhook delivery %d to %s: attempt %d failed (%s); next in %.0f s",
            delivery.id,
            host,
            delivery.attempts,
            short_reason(status, error),
            delay,
        )


async def _snippet(response: httpx.Response) -> str:
    """The start of a response body, without reading all of a large one."""
    data = b""
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= _SNIPPET:
            break
    return data[:_SNIPPET].decode("utf-8", "replace")


class Webhooks:
    """The webhook feature as one service: repos, the outbox, the admin verbs, the dispatcher.

    ``async with Webhooks(settings, db, clock) as hooks`` starts the
    dispatcher (unless ``dispatch=False``); ``hooks.outbox`` is the event
    sink for producers and ``hooks.admin`` serves the API.
    """

    def __init__(
        self,
        settings: Settings,
        db: Database,
        clock: Clock,
        *,
        dispatch: bool = True,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.subscriptions = SubscriptionRepo(db, clock)
        self.deliveries = DeliveryRepo(db, clock)
        self.outbox = Outbox(db, clock)
        self.admin = WebhookAdmin(
            settings, self.subscriptions, self.deliveries, wake=self.outbox.wake
        )
        self.dispatcher: WebhookDispatcher | None = None
        if dispatch:
            self.dispatcher = WebhookDispatcher(
                settings,
                self.deliveries,
                clock,
                wakeup=self.outbox.wakeup,
                rng=rng,
                transport=transport,
            )
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        if self.dispatcher is not None:
            await self._stack.enter_async_context(self.dispatcher)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()
