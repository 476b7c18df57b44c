"""Identifiers: session ids, phone numbers and JIDs, validated in one place.

A session id names a folder under ``AUTH_DIR``, so its alphabet is narrow
enough that no id can escape that folder: no ``/``, and a letter or digit
first, so neither ``.`` nor ``..`` is an id (``a..b`` is, and stays one
path component).
"""

from __future__ import annotations

import re
import secrets

from wagate.errors import InvalidInput

SESSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_SESSION_ID = re.compile(SESSION_ID_PATTERN)
_PHONE = re.compile(r"^\+?[1-9][0-9]{6,14}$")
_PHONE_SEPARATORS = re.compile(r"[\s().-]")

USER_SERVER = "s.whatsapp.net"
LID_SERVER = "lid"
GROUP_SERVER = "g.us"


def is_session_id(value: str) -> bool:
    return _SESSION_ID.fullmatch(value) is not None  # ``$`` alone would let "abc\n" through


SESSION_ID_RULE = "use 1-64 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit"


def check_session_id(value: str, field: str = "id") -> str:
    if not is_session_id(value):
        raise InvalidInput(field, f"invalid session id {value[:80]!r}: {SESSION_ID_RULE}")
    return value


def new_session_id() -> str:
    return "s-" + secrets.token_hex(6)


def normalize_phone(value: str, field: str = "phone") -> str:
    """Return the phone number as international digits only (no ``+``).

    Accepts ``+972 50-123-4567``, ``972501234567`` or a user JID.
    """
    raw = value.split("@", 1)[0].split(":", 1)[0] if "@" in value else value
    compact = _PHONE_SEPARATORS.sub("", raw.strip())
    if not _PHONE.fullmatch(compact):
        raise InvalidInput(
            field,
            f"invalid phone number {value[:40]!r}: give it in international format, "
            "country code first, 7-15 digits (e.g. +6281234567890)",
        )
    return compact.lstrip("+")


def user_jid(phone: str) -> str:
    return f"{phone}@{USER_SERVER}"


def phone_of_jid(jid: str) -> str | None:
    """The phone part of a user JID (``6281…:12@s.whatsapp.net`` → ``6281…``), else None."""
    user, _, server = jid.partition("@")
    if server != USER_SERVER:
        return None
    return user.split(":", 1)[0].split(".", 1)[0] or None
