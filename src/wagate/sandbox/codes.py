"""QR and pairing codes in WhatsApp's shapes.

A WhatsApp multi-device QR is ``<ref>,<noise key>,<identity key>,<adv secret>``
where the server's ``ref`` itself starts with ``2@`` and the three keys are the
client's, base64: the keys stay the same for a connection while each rotation
brings a new ref. A pairing code is eight characters from an alphabet without
look-alikes, shown as ``ABCD-EFGH``.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass

# WhatsApp's pairing alphabet: no 0/O, 1/I confusion.
_PAIR_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"


def _b64(size: int) -> str:
    return base64.b64encode(os.urandom(size)).decode("ascii")


@dataclass(frozen=True, slots=True)
class QRKeys:
    """The client half of a QR: fixed for one connection."""

    noise: str
    identity: str
    adv_secret: str

    @classmethod
    def generate(cls) -> QRKeys:
        return cls(_b64(32), _b64(32), _b64(32))

    def code(self, ref: str) -> str:
        return ",".join((ref, self.noise, self.identity, self.adv_secret))


def new_ref() -> str:
    return "2@" + _b64(48)


def ref_of(qr: str) -> str:
    """The ref a QR or a bare ref names: everything before the first comma."""
    return qr.strip().split(",", 1)[0]


def new_pair_code() -> str:
    chars = "".join(secrets.choice(_PAIR_ALPHABET) for _ in range(8))
    return f"{chars[:4]}-{chars[4:]}"


def normalize_pair_code(raw: str) -> str:
    """Accept ``abcd-efgh``, ``ABCDEFGH`` and spaces; return ``ABCD-EFGH``."""
    chars = "".join(ch for ch in raw.upper() if ch.isalnum())
    return f"{chars[:4]}-{chars[4:]}" if len(chars) == 8 else raw.strip().upper()
