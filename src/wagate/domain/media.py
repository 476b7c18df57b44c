"""A stored media file: one per distinct content, keyed by its sha256 (seed 003 §7)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Media:
    id: int
    sha256: str
    mime: str
    bytes: int
    width: int | None
    height: int | None
    duration_s: float | None
    storage_path: str
    created_at: datetime
