"""Groups of a session, as operators see them: list, monitor, ask for discovery (seed 003)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from wagate.domain.flag import Flag
from wagate.domain.group import Group
from wagate.errors import InvalidInput, NotFound
from wagate.storage.repos.flags import FlagRepo
from wagate.storage.repos.groups import GroupRepo

# the ingest counters of a session since its process started
Counters = Callable[[str], Mapping[str, int]]


class GroupService:
    """Groups and seed 003's runtime flags; the caller checked that the session exists."""

    def __init__(self, groups: GroupRepo, flags: FlagRepo, *, counters: Counters) -> None:
        self.groups = groups
        self.flags = flags
        self._counters = counters

    async def list(self, session_id: str, *, monitored: bool | None = None) -> list[Group]:
        return await self.groups.find(session_id, monitored=monitored)

    async def set_monitor(self, session_id: str, group_id: str, monitor: bool) -> Group:
        """Turn ingest of a group on or off (the one thing discovery never changes)."""
        jid = group_id if "@" in group_id else f"{group_id}@g.us"
        group = await self.groups.set_monitor(session_id, jid, monitor)
        if group is None:
            raise NotFound(f"group {jid!r} not found in session {session_id!r}")
        return group

    async def raise_flag(self, session_id: str, name: str) -> tuple[Flag, datetime]:
        """Set one of seed 003's runtime flags to now (its worker acts on it at its next poll)."""
        try:
            flag = Flag(name)
        except ValueError:
            names = ", ".join(f.value for f in Flag)
            raise InvalidInput("name", f"unknown flag {name!r}; one of: {names}") from None
        return flag, await self.flags.set(session_id, flag)

    def counters(self, session_id: str) -> dict[str, int]:
        return dict(self._counters(session_id))
