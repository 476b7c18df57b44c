"""What an operator does with webhooks: subscribe, change, look at the log, replay.

Every input is checked here (so the API, the CLI and the dashboard refuse the
same things the same way): event names against :class:`wagate.webhooks.events.Event`,
URLs through the network guard, extra headers against the ones wagate sets.
Error fields use the API's names (``url``, ``events``, ``sessionId`` …).

Secrets: a subscription's secret is shown once, when wagate makes it (on
create without one, or on ``rotate_secret``); a secret the caller gave, or
the ``WEBHOOK_SECRET`` default, is never echoed.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from wagate.domain.webhook import ALL_EVENTS, Delivery, Subscription
from wagate.errors import Conflict, InvalidInput, NotFound
from wagate.ids import check_session_id
from wagate.netguard import check_url
from wagate.settings import WebhookSettings
from wagate.storage.repos.webhooks import DeliveryRepo, SubscriptionRepo
from wagate.webhooks.events import Event

KNOWN_EVENTS = frozenset(e.value for e in Event)
MAX_URL = 2048
MIN_SECRET = 8
MAX_SECRET = 512
MAX_HEADERS = 32
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
# set by wagate on every request: a subscription may not replace them
RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "transfer-encoding", "connection", "user-agent"}
)

_UPDATABLE = frozenset({"url", "events", "headers", "description", "enabled", "session_id"})


def new_subscription_id() -> str:
    return "wh_" + secrets.token_hex(8)


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def check_events(events: list[str], field: str = "events") -> list[str]:
    """Known event names (deduplicated, in order), or ``["*"]``; InvalidInput otherwise."""
    if not events:
        raise InvalidInput(field, f'{field} must name at least one event, or ["*"] for all')
    unknown = [e for e in events if e != ALL_EVENTS and e not in KNOWN_EVENTS]
    if unknown:
        known = ", ".join(sorted(KNOWN_EVENTS))
        raise InvalidInput(field, f"unknown event {unknown[0]!r}; known events: {known}, or *")
    if ALL_EVENTS in events:
        return [ALL_EVENTS]
    return list(dict.fromkeys(events))


def check_headers(headers: Mapping[str, str], field: str = "headers") -> dict[str, str]:
    """Extra request headers: valid names and values, none that wagate sets itself."""
    if len(headers) > MAX_HEADERS:
        raise InvalidInput(field, f"at most {MAX_HEADERS} headers")
    for name, value in headers.items():
        lowered = name.lower()
        if not _TOKEN.match(name):
            raise InvalidInput(field, f"{name[:40]!r} is not a valid header name")
        if lowered in RESERVED_HEADERS or lowered.startswith("x-wagate-"):
            raise InvalidInput(field, f"header {name!r} is set by wagate and cannot be replaced")
        if len(value) > 4096 or not value.isprintable() or not value.isascii():
            raise InvalidInput(field, f"header {name!r} needs a printable ASCII value")
    return dict(headers)


def check_secret(secret: str, field: str = "secret") -> str:
    if not MIN_SECRET <= len(secret) <= MAX_SECRET:
        raise InvalidInput(field, f"{field} must be {MIN_SECRET}-{MAX_SECRET} characters")
    return secret


@dataclass(frozen=True, slots=True)
class Saved:
    """A subscription after a write, with the secret when wagate just made it (else None)."""

    subscription: Subscription
    new_secret: str | None = None


class WebhookAdmin:
    """Subscriptions and the delivery log, for the API, the CLI and the dashboard."""

    def __init__(
        self,
        settings: WebhookSettings,
        subscriptions: SubscriptionRepo,
        deliveries: DeliveryRepo,
        *,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._settings = settings
        self._subscriptions = subscriptions
        self._deliveries = deliveries
        self._wake = wake

    async def create(
        self,
        *,
        url: str,
        events: list[str],
        secret: str | None = None,
        session_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        description: str | None = None,
        enabled: bool = True,
    ) -> Saved:
        values: dict[str, Any] = {
            "url": await self._check_url(url),
            "events": check_events(events),
            "session_id": check_session_id(session_id, "sessionId") if session_id else None,
            "headers": check_headers(headers or {}),
            "description": description,
            "enabled": enabled,
        }
        made = None
        if secret is not None:
            values["secret"] = check_secret(secret)
        elif self._settings.secret:
            values["secret"] = self._settings.secret
        else:
            values["secret"] = made = new_secret()
        created = await self._subscriptions.create(new_subscription_id(), **values)
        return Saved(created, made)

    async def get(self, subscription_id: str) -> Subscription:
        found = await self._subscriptions.get(subscription_id)
        if found is None:
            raise NotFound(f"webhook {subscription_id!r} not found")
        return found

    async def find(self, *, session_id: str | None = None) -> list[Subscription]:
        return await self._subscriptions.find(session_id=session_id)

    async def update(
        self,
        subscription_id: str,
        *,
        secret: str | None = None,
        rotate_secret: bool = False,
        **changes: Any,
    ) -> Saved:
        """Change the fields given (``url``, ``events``, ``headers``, ``description``,
        ``enabled``, ``session_id``) and/or the secret: set it, or rotate to a new one."""
        await self.get(subscription_id)
        values = await self._checked(changes)
        if secret is not None and rotate_secret:
            raise InvalidInput("secret", "give a secret or ask to rotate it, not both")
        made = new_secret() if rotate_secret else None
        if made is not None or secret is not None:
            values["secret"] = made or check_secret(secret or "")
        updated = await self._subscriptions.update(subscription_id, **values)
        if updated is None:  # deleted meanwhile
            raise NotFound(f"webhook {subscription_id!r} not found")
        if values.get("enabled"):
            self._wake()  # deliveries held while it was disabled are due
        return Saved(updated, made)

    async def _checked(self, changes: dict[str, Any]) -> dict[str, Any]:
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise TypeError(f"not updatable: {sorted(unknown)}")
        values = dict(changes)
        if "url" in values:
            values["url"] = await self._check_url(values["url"])
        if "events" in values:
            values["events"] = check_events(values["events"])
        if "headers" in values:
            values["headers"] = check_headers(values["headers"] or {})
        if "session_id" in values:
            sid = values["session_id"]
            values["session_id"] = check_session_id(sid, "sessionId") if sid else None
        return values

    async def delete(self, subscription_id: str) -> None:
        if not await self._subscriptions.delete(subscription_id):
            raise NotFound(f"webhook {subscription_id!r} not found")

    async def _check_url(self, url: str) -> str:
        if len(url) > MAX_URL:
            raise InvalidInput("url", f"url must be at most {MAX_URL} characters")
        await check_url(url, "url", allow_private=self._settings.allow_private_urls)
        return url

    # --- the delivery log ------------------------------------------------------------

    async def delivery(self, delivery_id: int) -> Delivery:
        found = await self._deliveries.get(delivery_id)
        if found is None:
            raise NotFound(f"delivery {delivery_id} not found")
        return found

    async def deliveries(
        self,
        *,
        status: str | None = None,
        event: str | None = None,
        session_id: str | None = None,
        subscription_id: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        if event is not None and event not in KNOWN_EVENTS:
            check_events([event], "event")
        return await self._deliveries.find(
            status=status,
            event=event,
            session_id=session_id,
            subscription_id=subscription_id,
            before_id=before_id,
            limit=limit,
        )

    async def replay(self, delivery_id: int) -> Delivery:
        """Send a delivered or dead delivery again, now, with a fresh retry budget."""
        replayed = await self._deliveries.replay(delivery_id)
        if replayed is None:
            current = await self.delivery(delivery_id)
            raise Conflict(
                f"delivery {delivery_id} is already pending "
                f"(next attempt at {current.next_attempt_at.isoformat()})"
            )
        self._wake()
        return replayed

    async def replay_dead(self, subscription_id: str | None = None) -> int:
        """Make every dead delivery (of one subscription, or all) pending again; how many."""
        if subscription_id is not None:
            await self.get(subscription_id)
        count = await self._deliveries.replay_dead(subscription_id)
        if count:
            self._wake()
        return count
