"""Unlinking a device from WhatsApp when no runner holds a live link for it.

A session that is stopped (or reconnecting) still has its credentials, and
the phone still lists the device as linked. Deleting such a session must not
leave that ghost behind, so :func:`unlink` opens a link with the stored
credentials, logs out once it is connected, and reports what happened. It
uses only the :class:`~wagate.engine.base.Engine` protocol, so it works for
every engine, and gives up after a bound measured on the injected clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from wagate.clock import Clock
from wagate.domain.session import DisconnectKind, Unlink
from wagate.engine.base import (
    AuthStore,
    Connected,
    Disconnected,
    Engine,
    LinkOptions,
    PairCode,
    QRCode,
)

log = logging.getLogger(__name__)


async def unlink(
    engine: Engine, auth: AuthStore, options: LinkOptions, clock: Clock, within_s: float
) -> Unlink:
    """Log the device behind ``auth`` out, if it is linked; never raises an engine error."""
    if not await auth.exists():
        return Unlink.NOT_LINKED
    try:
        outcome = await _bounded(clock, within_s, _logout_over_new_link(engine, auth, options))
    except Exception as exc:  # an engine or network failure: the device may still be linked
        log.warning("session %s: could not log out: %s", auth.session_id, exc)
        return Unlink.FAILED
    if outcome is None:
        log.warning("session %s: no logout within %.1fs", auth.session_id, within_s)
        return Unlink.FAILED
    return outcome


async def _logout_over_new_link(engine: Engine, auth: AuthStore, options: LinkOptions) -> Unlink:
    asked = False
    async with engine.link(auth, options) as link:
        async for event in link.events():
            if isinstance(event, Connected) and not asked:
                asked = True
                await link.logout()
            elif isinstance(event, QRCode | PairCode):
                return Unlink.NOT_LINKED  # the credentials were not taken: no device to unlink
            elif isinstance(event, Disconnected):
                return _after(event, asked)
    return Unlink.FAILED


def _after(event: Disconnected, asked: bool) -> Unlink:
    if event.kind is not DisconnectKind.LOGGED_OUT:
        return Unlink.FAILED
    return Unlink.RELINKED if asked else Unlink.NOT_LINKED


async def _bounded(
    clock: Clock, within_s: float, work: Coroutine[Any, Any, Unlink]
) -> Unlink | None:
    """``work``'s result (or its error), or None when ``within_s`` passes on ``clock`` first."""
    task = asyncio.create_task(work, name="unlink")
    done = asyncio.Event()
    task.add_done_callback(lambda _t: done.set())
    try:
        await clock.wait(done, within_s)
    finally:
        task.cancel()
        await asyncio.wait({task})  # it ends here, whatever it ended with
    if task.cancelled():
        return None
    return task.result()
