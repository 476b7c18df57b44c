"""The sandbox network's live connections: who is connected, and as which device.

:class:`Connections` is the one registry of them. The switchboard adds each
connection once its ``hello`` is read and forgets it when it closes; linking
claims a device for the connection that logged in as it (the connection it
replaces is handed back, to be ended); faults and listings look connections up
by session and phone. Whoever waits for a change (tests, demos, load runs)
uses :meth:`Connections.wait`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection

from wagate.sandbox.connection import Connection, ConnectionInfo


class Connections:
    """Live connections by id and by the device each logged in as. Used on one event loop."""

    def __init__(self) -> None:
        self._by_id: dict[int, Connection] = {}
        self._by_device: dict[str, Connection] = {}
        # Replaced on every change; waiters hold the old one.
        self._changed = asyncio.Event()

    def add(self, conn: Connection) -> None:
        self._by_id[conn.id] = conn
        self._touch()

    def claim(self, device_id: str, conn: Connection) -> Connection | None:
        """Make ``conn`` the live connection of ``device_id``; return the other one it replaces."""
        older = self._by_device.get(device_id)
        self._by_device[device_id] = conn
        self._touch()
        return older if older is not conn else None

    def forget(self, conn: Connection) -> None:
        self._by_id.pop(conn.id, None)
        if conn.device_id is not None and self._by_device.get(conn.device_id) is conn:
            del self._by_device[conn.device_id]
        self._touch()

    def live(self, session: str | None = None, phone: str | None = None) -> list[Connection]:
        """The connections that have not ended (of ``session`` and of ``phone``, when given)."""
        return [
            conn
            for conn in self._by_id.values()
            if not conn.ended
            and (session is None or conn.session == session)
            and (phone is None or conn.phone == phone)
        ]

    def infos(self) -> list[ConnectionInfo]:
        return [conn.info() for conn in self.live()]

    def online_devices(self) -> Collection[str]:
        """The ids of the devices that have a live connection."""
        return self._by_device.keys()

    async def wait(self, ready: Callable[[list[ConnectionInfo]], bool]) -> list[ConnectionInfo]:
        """Wait until the live connections satisfy ``ready``; return them."""
        while not ready(found := self.infos()):
            await self._changed.wait()
        return found

    def _touch(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
