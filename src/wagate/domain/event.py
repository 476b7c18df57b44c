"""An event bound for the webhook outbox, as a producer hands it to storage.

Producers (the session runner, ingest, the sender) get their events built by
:mod:`wagate.webhooks.events` and give them to the repository method that
writes the state they report; the repository records both in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """``name`` (``message.received``, …) for ``session_id``; ``payload`` is the envelope sent."""

    name: str
    session_id: str | None
    payload: dict[str, Any]


# builds the events of a write from what it wrote (pure: it runs inside the transaction)
Announce = Callable[[T], Sequence[OutboxEvent]]
