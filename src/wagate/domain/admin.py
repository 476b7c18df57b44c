"""The admin API's users (seed 002: JWT): a name and an argon2 hash, never a password."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class AdminUser:
    id: int
    username: str
    password_hash: str
    created_at: datetime
    updated_at: datetime
