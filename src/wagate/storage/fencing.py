"""Owner-only writes carry the session's fencing token: its SQL, in one place.

A fenced write is one ``UPDATE`` whose ``WHERE`` also requires the lease this
process holds (this session, this worker, this epoch)::

    EXISTS (SELECT 1 FROM session_leases
            WHERE session_id = :s AND worker_id = :w AND epoch = :e FOR SHARE)

``FOR SHARE`` (PostgreSQL; SQLite serialises writers anyway) makes a write that
is about to commit and a change of owner wait for each other: a write either
commits while its lease still stands, or sees the new owner's epoch and writes
nothing. When such an update writes nothing, :meth:`Fencing.confirm` tells a
stale token (:class:`StaleLease`) from the ordinary "no such row" outcome.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from wagate.domain.lease import Fence, Fences
from wagate.errors import StaleLease
from wagate.storage.tables import session_leases as leases


def holds(fence: Fence) -> sa.Exists:
    """The condition a fenced write adds to its ``WHERE``: the lease is still this one."""
    lease = sa.select(sa.literal(1)).where(
        leases.c.session_id == fence.session_id,
        leases.c.worker_id == fence.worker_id,
        leases.c.epoch == fence.epoch,
    )
    return lease.with_for_update(read=True).exists()


def stale(fence: Fence) -> StaleLease:
    return StaleLease(
        f"worker {fence.worker_id!r} no longer holds session {fence.session_id!r} "
        f"at epoch {fence.epoch}"
    )


class Fencing:
    """A repository's side of fencing: off (``fences=None``, the all-in-one gateway) or on."""

    def __init__(self, fences: Fences | None) -> None:
        self._fences = fences

    @property
    def enabled(self) -> bool:
        return self._fences is not None

    def fence(self, session_id: str) -> Fence | None:
        """The fence a write on ``session_id`` carries; None when fencing is off.

        :class:`StaleLease` when fencing is on and this process holds no lease on it.
        """
        if self._fences is None:
            return None
        fence = self._fences.fence_for(session_id)
        if fence is None:
            raise StaleLease(f"this process holds no lease on session {session_id!r} (no epoch)")
        return fence

    @staticmethod
    def where(fence: Fence | None) -> list[sa.ColumnElement[bool]]:
        """The extra ``WHERE`` condition of a write carrying ``fence`` (none without one)."""
        return [] if fence is None else [holds(fence)]

    @staticmethod
    async def confirm(conn: AsyncConnection, fence: Fence | None) -> None:
        """After a fenced write changed nothing: :class:`StaleLease` when the fence failed.

        When the fence holds, nothing matched for the write's own reasons (no such row,
        a status that moved on): the caller's ordinary outcome, not an error.
        """
        if fence is not None and not await conn.scalar(sa.select(holds(fence))):
            raise stale(fence)
