"""Request and response bodies; field names follow the seeds (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from wagate.domain import session as d
from wagate.domain.proxy import redact
from wagate.ids import SESSION_ID_PATTERN


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ProvisionIn(Strict):
    """Seed 004's provision body, plus an optional id of your choosing."""

    phone: str | None = Field(None, description="International number, e.g. +6281234567890")
    proxy: str | None = Field(None, description="socks5h://[user:pass@]host:port")
    id: str | None = Field(None, pattern=SESSION_ID_PATTERN, description="Session id")
    pairing_code: bool = Field(
        False, alias="pairingCode", description="Also ask for a pairing code for `phone`"
    )
    uplink: d.Uplink = Field(
        d.Uplink.FLEET, description="Who hosts it: fleet (wagate's workers) or edge (seed 001)"
    )


class SessionOut(BaseModel):
    id: str
    status: str = Field(
        description="Seed 004's word: pending|qr_ready|connected|disconnected|failed"
    )
    state: str = Field(description="wagate's state (see docs/architecture.md)")
    engine: str
    workerId: str | None
    phone: str | None = Field(description="The number given at provisioning, if any")
    phoneNumber: str | None = Field(description="The linked account's number")
    jid: str | None
    lid: str | None
    waName: str | None
    deviceName: str | None
    proxy: str | None = Field(description="Redacted: the password never leaves the server")
    isReady: bool
    isConnected: bool
    hasQr: bool
    qrExpiresAt: datetime | None
    pairCode: str | None
    disconnectKind: str | None
    disconnectReason: str | None
    lastConnectedAt: datetime | None
    lastDisconnectedAt: datetime | None
    createdAt: datetime | None
    updatedAt: datetime | None
    lastPing: datetime | None = Field(None, description="The session process's last PING")
    uplink: str = Field("fleet", description="Who hosts it: fleet | edge (seed 001's workers)")

    @classmethod
    def of(cls, s: d.Session) -> SessionOut:
        return cls(
            id=s.id,
            status=d.SEED_004[s.status],
            state=s.status.value,
            engine=s.engine,
            workerId=s.worker_id,
            phone=s.phone,
            phoneNumber=s.phone_number,
            jid=s.jid,
            lid=s.lid,
            waName=s.wa_name,
            deviceName=s.device_name,
            proxy=redact(s.proxy),
            isReady=s.is_ready,
            isConnected=s.is_connected,
            hasQr=s.qr is not None,
            qrExpiresAt=s.qr_expires_at,
            pairCode=s.pair_code,
            disconnectKind=s.disconnect_kind.value if s.disconnect_kind else None,
            disconnectReason=s.disconnect_reason,
            lastConnectedAt=s.last_connected_at,
            lastDisconnectedAt=s.last_disconnected_at,
            createdAt=s.created_at,
            updatedAt=s.updated_at,
            lastPing=s.last_ping_at,
            uplink=s.uplink.value,
        )


class QROut(BaseModel):
    sessionId: str
    status: str
    qr: str = Field(description="WhatsApp's raw QR string (2@…)")
    qrDataUrl: str = Field(description="The QR as a PNG data URL")
    generatedAt: datetime | None
    expiresAt: datetime | None


# --- seed 002 -------------------------------------------------------------------------


class Seed002CreateIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sessionId: str | None = Field(None, pattern=SESSION_ID_PATTERN)
    userId: str | None = Field(None, max_length=128)
    sessionName: str | None = Field(None, max_length=256)
    uplink: d.Uplink = Field(d.Uplink.FLEET, description="fleet | edge (seed 001's workers)")


def ok(data: Any) -> dict[str, Any]:
    return {"success": True, "data": data}


def phone_plus(digits: str | None) -> str | None:
    return f"+{digits}" if digits else None
