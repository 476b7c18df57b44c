"""The sandbox network's long-lived state: accounts, their linked devices, bans.

An :class:`AccountBook` is what a phone number knows about itself on the
simulated WhatsApp: its push name, its stable ``@lid`` identity and the
companion devices linked to it. It is the ``accounts`` section of the
network's :class:`~wagate.sandbox.state.StateFile`, saved at once on
every link change, so a restarted network still recognises linked devices (a
gateway restart must reconnect without a new QR). An account with no linked
device is a simulated phone: it sends and receives through the control API.

Device secrets are stored only as SHA-256 digests: the state file alone cannot
be used to impersonate a device.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from typing import Any

from wagate.clock import Clock
from wagate.errors import InvalidInput, NotFound
from wagate.sandbox.state import StateFile

_PHONE_RE = re.compile(r"[0-9]{6,15}")


def normalize_phone(raw: str, *, field_name: str = "phone") -> str:
    """Digits only, no ``+``; spaces, dashes, dots and parentheses are forgiven."""
    digits = re.sub(r"[\s+\-().]", "", raw)
    if not _PHONE_RE.fullmatch(digits):
        raise InvalidInput(field_name, f"{field_name} must be 6 to 15 digits, got {raw!r}")
    return digits


def phone_of(raw: str, *, field_name: str = "phone") -> str:
    """Digits of a phone given as digits, ``+…``, or a phone JID (``…:7@s.whatsapp.net`` too)."""
    user, at, server = raw.strip().partition("@")
    if at and server != "s.whatsapp.net":
        raise InvalidInput(field_name, f"{field_name} must be a phone number, got {raw!r}")
    return normalize_phone(user.split(":", 1)[0] if at else raw, field_name=field_name)


def phone_jid(phone: str) -> str:
    return f"{phone}@s.whatsapp.net"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _new_lid() -> str:
    first = str(secrets.randbelow(9) + 1)  # no leading zero: LIDs read as numbers
    return first + "".join(str(secrets.randbelow(10)) for _ in range(13)) + "@lid"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A linked device as listed by the control API (never its secret)."""

    device_id: str
    number: int
    name: str
    linked_at: str
    online: bool


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """An account as listed by the control API."""

    phone: str
    push_name: str
    lid: str
    banned: bool
    devices: tuple[DeviceInfo, ...]


@dataclass(slots=True)
class Device:
    """A companion device linked to an account (what a linked gateway session is)."""

    device_id: str
    secret_sha256: str
    number: int
    name: str
    linked_at: str


@dataclass(slots=True)
class Account:
    """One phone number on the sandbox network."""

    phone: str
    push_name: str
    lid: str
    banned: bool = False
    next_device: int = 1  # 0 is the phone itself
    devices: dict[str, Device] = field(default_factory=dict)

    def jid(self, device: Device) -> str:
        return f"{self.phone}:{device.number}@s.whatsapp.net"

    def info(self, online: Collection[str]) -> AccountInfo:
        """What the control API shows; ``online`` holds the ids of connected devices."""
        devices = tuple(
            DeviceInfo(d.device_id, d.number, d.name, d.linked_at, d.device_id in online)
            for d in self.devices.values()
        )
        return AccountInfo(self.phone, self.push_name, self.lid, self.banned, devices)


@dataclass(frozen=True, slots=True)
class Creds:
    """What a linked client keeps and presents to reconnect."""

    phone: str
    device_id: str
    secret: str

    def to_json(self, account: Account, device: Device) -> dict[str, Any]:
        return {
            "engine": "sandbox",
            "phone": self.phone,
            "device_id": self.device_id,
            "secret": self.secret,
            "device": device.number,
            "lid": account.lid,
        }

    @classmethod
    def from_json(cls, data: object) -> Creds:
        if not isinstance(data, dict):
            raise InvalidInput("creds", "creds must be an object")
        values = [data.get(key) for key in ("phone", "device_id", "secret")]
        if not all(isinstance(value, str) and value for value in values):
            raise InvalidInput("creds", "creds need phone, device_id and secret strings")
        phone, device_id, secret = (str(value) for value in values)
        return cls(phone, device_id, secret)


class AccountBook:
    """Accounts keyed by phone: the ``accounts`` section of the state file.

    ``on_unlink`` is called with each device id that stops being linked (so its
    queued mail can go too); devices are stamped ``linked_at`` by ``clock``.
    """

    def __init__(
        self,
        state: StateFile,
        clock: Clock,
        *,
        on_unlink: Callable[[str], None] = lambda device_id: None,
    ) -> None:
        self._state = state
        self._clock = clock
        self._on_unlink = on_unlink
        self._accounts: dict[str, Account] = state.load("accounts", _accounts, {})
        self._by_lid = {account.lid: account for account in self._accounts.values()}
        state.register("accounts", self._dump)

    def get(self, phone: str) -> Account | None:
        return self._accounts.get(phone)

    def require(self, phone: str) -> Account:
        account = self._accounts.get(phone)
        if account is None:
            raise NotFound(f"no account with phone {phone}")
        return account

    def by_lid(self, lid: str) -> Account | None:
        """The account whose LID JID is ``lid`` (``<digits>@lid``)."""
        return self._by_lid.get(lid)

    def all(self) -> list[Account]:
        return list(self._accounts.values())

    def ensure(self, phone: str, push_name: str | None = None) -> Account:
        """The account of ``phone``, created (with no linked device) if new."""
        account = self._accounts.get(phone)
        if account is None:
            account = Account(phone, push_name or f"Sandbox {phone[-4:]}", _new_lid())
            self._accounts[phone] = account
            self._by_lid[account.lid] = account
            self._state.save_soon()
        elif push_name:
            account.push_name = push_name
        return account

    def link(self, phone: str, device_name: str, push_name: str | None) -> tuple[Account, Creds]:
        """Create a device on the account (creating the account if new); return its creds."""
        account = self.ensure(phone, push_name)
        secret = secrets.token_urlsafe(32)
        device = Device(
            device_id=secrets.token_hex(8),
            secret_sha256=_digest(secret),
            number=account.next_device,
            name=device_name,
            linked_at=self._clock.now().isoformat(),
        )
        account.next_device += 1
        account.devices[device.device_id] = device
        self.save()
        return account, Creds(phone, device.device_id, secret)

    def find(self, creds: Creds) -> tuple[Account, Device | None] | None:
        """The account and device the creds name; device None if unlinked or wrong secret."""
        account = self._accounts.get(creds.phone)
        if account is None:
            return None
        device = account.devices.get(creds.device_id)
        if device is None or not hmac.compare_digest(device.secret_sha256, _digest(creds.secret)):
            return account, None
        return account, device

    def unlink(self, phone: str, device_id: str | None = None) -> None:
        """Remove one device, or every device of the account when ``device_id`` is None."""
        account = self.require(phone)
        gone = list(account.devices) if device_id is None else [device_id]
        for each in gone:
            if account.devices.pop(each, None) is not None:
                self._on_unlink(each)
        self.save()

    def set_banned(self, phone: str, banned: bool) -> Account:
        account = self.require(phone)
        account.banned = banned
        self.save()
        return account

    def save(self) -> None:
        """Write the state file now (a link change must survive a crash)."""
        self._state.save_now()

    def _dump(self) -> dict[str, Any]:
        return {phone: asdict(account) for phone, account in self._accounts.items()}


def _accounts(raw: dict[str, Any]) -> dict[str, Account]:
    return {phone: _account(dict(value)) for phone, value in raw.items()}


def _account(raw: dict[str, Any]) -> Account:
    devices = {key: Device(**value) for key, value in raw.pop("devices").items()}
    return Account(**raw, devices=devices)
