"""Shared types of path and query parameters: ids, cursors, offsets and times.

Integers are bounded to what both databases store (a signed 64-bit integer),
so an id or cursor past 2^63-1 is a 422 naming the parameter, not a driver
overflow. Times are made aware (a time without a zone is UTC) and must stay
within years 1-9999 once moved to UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field

INT64_MAX = 2**63 - 1

RowId = Annotated[int, Field(ge=1, le=INT64_MAX)]
"""A database id, or a cursor that is one (``before=``)."""

Offset = Annotated[int, Field(ge=0, le=INT64_MAX)]
"""How many rows to skip."""


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)  # a time without a zone is taken as UTC
    try:
        return at.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once moved to UTC (years 1-9999)") from None


UtcTime = Annotated[datetime, AfterValidator(_utc)]
"""An ISO 8601 time, returned as an aware UTC datetime."""
