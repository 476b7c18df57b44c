"""Seed 004's proxy pool: which proxy each session leaves through, and what happens when one dies.

- **Choice** (Flow 1): the proxy given at provision; else the phone's sticky
  proxy, while it is usable and has room; else the usable proxy with the
  fewest sessions under ``MAX_SESSIONS_PER_PROXY`` (``domain.proxy.pick_proxy``).
  An empty pool chooses nothing: the session connects directly.
- **Sticky IP**: a session that connects records ``phone → proxy``
  (``phone_proxies``), so the phone comes back through the same IP after a
  restart, a re-link, or a new session of the same number.
- **Health**: each proxy due is checked (a SOCKS5 handshake with its
  credentials, then a CONNECT to the probe target): ``active``, or ``bad``
  with the reason and a recheck after a growing delay; a bad proxy that
  answers again is ``active`` again.
- **Failover** (Flow 4): a session's ``proxy_error`` marks its proxy bad and
  moves it to another with room (never one over capacity): the runner
  reconnects through it, the sticky mapping follows, with an audit line and
  a ``session.proxy_changed`` webhook. None available: the runner says
  ``no_proxy_available`` and tries again after its backoff.

Credentials never leave: every URL is redacted in logs, audit, events and
the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

from wagate.clock import Clock
from wagate.domain.audit import AuditEvent
from wagate.domain.proxy import Proxy, ProxyStatus, parse_proxy, pick_proxy, redact, scrub
from wagate.domain.session import ChangeKind, SessionChange
from wagate.errors import Conflict, NotFound
from wagate.settings import ProxyPoolSettings
from wagate.storage.outbox import Outbox
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.proxies import ProxyRepo
from wagate.storage.repos.sessions import SessionRepo
from wagate.webhooks.events import Event, outbox_event

log = logging.getLogger(__name__)

ProxyCheck = Callable[[str], Awaitable[str | None]]
"""Check one proxy URL: None when healthy, else why not."""


class ProxyPool:
    def __init__(
        self,
        proxies: ProxyRepo,
        sessions: SessionRepo,
        audit: AuditRepo,
        outbox: Outbox,
        clock: Clock,
        *,
        check: ProxyCheck,
        settings: ProxyPoolSettings,
        rng: random.Random | None = None,
    ) -> None:
        self.proxies = proxies
        self.sessions = sessions
        self.audit = audit
        self.outbox = outbox
        self.clock = clock
        self._check = check
        self.settings = settings
        self._rng = rng or random.Random()
        self._moving = asyncio.Lock()  # one choice at a time: two never take the last place

    # --- the pool ------------------------------------------------------------------------

    async def add(self, url: str, *, label: str | None = None, source: str = "api") -> Proxy:
        parsed = parse_proxy(url, "url")
        if parsed.scheme == "socks5":
            log.warning(
                "proxy %s is socks5://: DNS is resolved here, not at the proxy; prefer socks5h://",
                parsed.redacted(),
            )
        return await self.proxies.add(url.strip(), label=label, source=source)

    async def load(self, urls: list[str]) -> None:
        """``PROXY_URL_1..n`` at start: added if new (a known one keeps its status)."""
        for url in urls:
            await self.add(url, source="env")
        if urls:
            log.info("proxy pool: %d proxy URL(s) from the environment", len(urls))

    async def list(self) -> list[Proxy]:
        return await self.proxies.all()

    async def get(self, proxy_id: int) -> Proxy:
        found = await self.proxies.get(proxy_id)
        if found is None:
            raise NotFound(f"proxy {proxy_id} not found")
        return found

    async def remove(self, proxy_id: int, *, force: bool = False) -> None:
        proxy = await self.get(proxy_id)
        if proxy.load and not force:
            raise Conflict(
                f"proxy {proxy_id} carries {proxy.load} session(s): move them first, "
                "or remove it with force (they keep it until their next failover)",
                code="proxy_in_use",
            )
        await self.proxies.delete(proxy_id)

    # --- health --------------------------------------------------------------------------

    async def check_now(self, proxy_id: int) -> Proxy:
        return await self._check_one(await self.get(proxy_id))

    async def check_due(self) -> int:
        """Check every proxy whose check is due; how many were checked."""
        due = await self.proxies.due(self.clock.now())
        gate = asyncio.Semaphore(self.settings.concurrency)

        async def one(proxy: Proxy) -> None:
            async with gate:
                with contextlib.suppress(NotFound):  # removed meanwhile: nothing to check
                    await self._check_one(proxy)

        await asyncio.gather(*(one(p) for p in due))
        return len(due)

    async def _check_one(self, proxy: Proxy) -> Proxy:
        try:
            error = await self._check(proxy.url)
        except Exception as exc:  # a check must never take the loop down
            error = f"{type(exc).__name__}: {exc}"
        now = self.clock.now()
        if error is None:
            later = now + self.settings.check_every
        else:
            wait = self.settings.recheck.delay(proxy.failures, self._rng)
            later = now + timedelta(seconds=wait)
        checked = await self.proxies.checked(proxy.id, ok=error is None, error=error,
                                             next_check_at=later)  # fmt: skip
        if checked is None:
            raise NotFound(f"proxy {proxy.id} was removed while it was being checked")
        if error is not None and proxy.status is not ProxyStatus.BAD:
            log.warning("proxy %s is bad: %s", redact(proxy.url), error)
        elif error is None and proxy.status is ProxyStatus.BAD:
            log.info("proxy %s is healthy again", redact(proxy.url))
        return checked

    # --- choosing ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def placing(self) -> AsyncIterator[None]:
        """Hold the pool while a choice becomes a session row: two provisions of this
        process never take one last place (the rows are what the load is counted from)."""
        async with self._moving:
            yield

    async def choose(self, phone: str | None, given: str | None) -> str | None:
        """The proxy a new session of ``phone`` leaves through (Flow 1); None: directly.

        Call it inside :meth:`placing`, and write the session's row there too.
        """
        if given is not None:
            return (await self.add(given, source="provision")).url
        pool = await self.proxies.all()
        if not pool:
            return None
        if phone is not None:
            stuck = await self.proxies.sticky(phone)
            for proxy in pool:
                fits = proxy.load < self.settings.max_per_proxy
                if proxy.url == stuck and proxy.usable and fits:
                    return proxy.url
        picked = pick_proxy(pool, self.settings.max_per_proxy)
        if picked is None:
            raise Conflict(
                f"no proxy has room: every usable proxy carries "
                f"{self.settings.max_per_proxy} sessions (MAX_SESSIONS_PER_PROXY); "
                "add a proxy, or give one",
                code="no_proxy_available",
            )
        return picked.url

    async def failover(self, session_id: str, current: str | None, reason: str) -> str | None:
        """Flow 4, for the runner: ``current`` failed; the proxy to reconnect through, or None."""
        reason = scrub(reason)
        later = self.clock.now() + timedelta(seconds=self.settings.recheck.core(0))
        if current is not None:
            await self.proxies.mark_bad(current, reason, later)
        async with self._moving:
            pool = await self.proxies.all()
            exclude = [current] if current else []
            picked = pick_proxy(pool, self.settings.max_per_proxy, exclude=exclude)
            if picked is None:
                log.error("session %s: no proxy available to replace %s", session_id,
                          redact(current))  # fmt: skip
                data = {"code": "NO_PROXY_AVAILABLE", "from": redact(current), "msg": reason}
                await self.audit.add(session_id, AuditEvent.ERROR, data)
                return None
            await self.sessions.update(session_id, proxy=picked.url)
        session = await self.sessions.get(session_id)
        phone = (session.phone or session.phone_number) if session else None
        if phone:
            await self.proxies.stick(phone, picked.url, session_id)
        moved = {"from": redact(current), "to": redact(picked.url), "reason": reason[:300]}
        await self.audit.add(session_id, AuditEvent.PROXY_CHANGED, moved)
        event = outbox_event(Event.SESSION_PROXY_CHANGED, session_id, moved, self.clock.now())
        await self.outbox.emit([event])
        log.warning("session %s: proxy %s failed; moved to %s", session_id, moved["from"],
                    moved["to"])  # fmt: skip
        return picked.url

    async def on_change(self, change: SessionChange) -> None:
        """A session that connects sticks its phone to the proxy it came through."""
        if change.kind is not ChangeKind.CONNECTED:
            return
        session = await self.sessions.get(change.session_id)
        phone = change.data.get("phone") or (session.phone_number if session else None)
        if session is None or session.proxy is None or not phone:
            return
        await self.proxies.stick(str(phone), session.proxy, session.id)
