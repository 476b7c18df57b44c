"""The ingest service's event routing: a failure anywhere is audited, never only logged."""

from __future__ import annotations

from datetime import UTC, datetime

from wagate.domain.message import ReceiptStatus
from wagate.engine.base import ReceiptEvent
from wagate.roles.serve import Gateway


async def test_a_failing_receipt_handler_is_audited(gateway: Gateway) -> None:
    async def down(_session_id: str, _event: ReceiptEvent) -> None:
        raise ConnectionError("database went away")

    gateway.ingest.on_receipt = down
    receipt = ReceiptEvent("1@s.whatsapp.net", ("3EB0AA",), ReceiptStatus.READ, datetime.now(UTC))
    await gateway.ingest.on_event("s1", receipt)  # does not raise into the session's loop
    (entry,) = await gateway.audit.recent("s1", event="error")
    assert entry.data["code"] == "EVENT_FAILED"
    assert entry.data["ctx"]["wa_msg_id"] == "3EB0AA"
    assert "ConnectionError: database went away" in entry.data["msg"]
