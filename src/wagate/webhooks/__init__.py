"""Webhooks: the event vocabulary, the durable outbox, delivery, and how receivers verify it.

``from wagate.webhooks import verify_signature`` is public and stays dependency-free
(see :mod:`wagate.webhooks.signing`).
"""

from wagate.webhooks.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    signature_header,
    verify_signature,
)

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "sign",
    "signature_header",
    "verify_signature",
]
