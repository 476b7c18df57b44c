"""Webhooks that lose nothing: the dispatcher that empties the durable outbox.

Events become ``webhook_deliveries`` rows in the transaction of the state they
report (:mod:`wagate.storage.outbox`). :class:`WebhookDispatcher` leases due
rows, POSTs them signed (:mod:`wagate.webhooks.signing`), and records the
outcome: delivered, retry later with backoff, or dead. Rows outlive
processes; a lease that was never settled (the process died mid-flight) runs
out and the row is due again, so delivery is at least once: receivers dedupe
on ``X-Wagate-Delivery``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx

from wagate import __version__
from wagate.clock import Clock
from wagate.domain.webhook import Claim
from wagate.errors import InvalidInput
from wagate.lifecycle import Service
from wagate.netguard import check_url, connect_guard
from wagate.settings import WebhookSettings
from wagate.storage.repos.webhooks import DeliveryRepo
from wagate.webhooks.policy import (
    RETRY_AFTER_STATUSES,
    Outcome,
    RetryPolicy,
    Verdict,
    encode,
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
    pass

log = logging.getLogger(__name__)

_SNIPPET = 300  # bytes of a failed response kept in ``last_error``
_LEASE_MARGIN_S = 60.0  # a lease outlives the attempt's own deadline by this much


class WebhookDispatcher(Service):
    """Delivers due outbox rows, at most ``webhook_concurrency`` at a time, as a service.

    ``async with WebhookDispatcher(...)`` starts the loop; leaving stops
    claiming, lets attempts in flight finish within ``stop_timeout_ms``, then
    cancels the rest (their leases run out and they are tried again later).
    The loop wakes on ``wakeup`` (the outbox rings it when deliveries commit)
    and otherwise polls every ``webhook_poll_ms``; backoff is computed from the
    injected clock.
    """

    def __init__(
        self,
        settings: WebhookSettings,
        deliveries: DeliveryRepo,
        clock: Clock,
        *,
        wakeup: asyncio.Event | None = None,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__("webhook-dispatcher", stop_timeout_s=settings.stop_timeout_s)
        self._deliveries = deliveries
        self._clock = clock
        self._wakeup = wakeup or asyncio.Event()
        self._rng = rng or random.Random()
        self._transport = transport
        self._policy = RetryPolicy(
            base_s=settings.backoff_base_s,
            max_s=settings.backoff_max_s,
            max_attempts=settings.max_attempts,
            jitter_ratio=settings.jitter_ratio,
        )
        self._limit = settings.concurrency
        self._poll_s = settings.poll_s
        self._timeout_s = settings.timeout_s
        self._lease = timedelta(seconds=self._timeout_s + _LEASE_MARGIN_S)
        self._allow_private = settings.allow_private_urls
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._main: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    # --- service lifecycle (lifecycle.Service) -----------------------------------------

    async def open(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=self._timeout_s,
            follow_redirects=False,  # a redirect could lead past the URL guard
            # an environment proxy would hide the real target from the guard
            trust_env=self._allow_private,
            limits=httpx.Limits(max_connections=self._limit),
            headers={"User-Agent": f"wagate/{__version__}"},
            transport=self._transport,
        )
        self._main = self.tasks.spawn(self._run(), "loop")

    async def stop_intake(self) -> None:
        self._stopping = True  # claims nothing more
        self._wakeup.set()

    async def drain(self) -> None:
        """Let attempts in flight finish; cut off at the deadline (their leases run out)."""
        if self._main is not None:
            await asyncio.wait({self._main})

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

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
