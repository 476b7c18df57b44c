"""What the control plane needs from whatever runs sessions.

In ``wagate serve`` the embedded :class:`wagate.worker.host.Worker` is the
runtime; in cluster mode a client of a remote worker takes its place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from wagate.domain.session import SessionState, Unlink


class SessionRuntime(Protocol):
    """Start, stop, restart and logout of one session id are serialised by the runtime."""

    def is_running(self, session_id: str) -> bool: ...

    def running(self) -> list[str]: ...

    def runner_state(self, session_id: str) -> SessionState | None:
        """The state of the runner of the session, None when none runs it."""
        ...

    async def start(self, session_id: str, *, pair_phone: str | None = None) -> bool: ...

    async def stop(self, session_id: str, *, reason: str = ...) -> None: ...

    async def logout(self, session_id: str) -> Unlink:
        """Unlink the device (over a new link when none is up), stop, delete credentials."""
        ...

    async def restart(self, session_id: str) -> None: ...

    async def wait_for(self, check: Callable[[], Awaitable[bool]], within_s: float) -> bool:
        """Wait until ``check()`` holds, re-checked after every state report or runner end."""
        ...
