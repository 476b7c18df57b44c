"""The sandbox engine as the gateway holds it: one target, its links' streams, foreign creds."""

from __future__ import annotations

import asyncio

import pytest

from wagate.engine.base import LinkOptions, QRCode
from wagate.engine.sandbox import SandboxEngine
from wagate.errors import ConfigError, TransientError
from wagate.storage.auth_state import MemoryAuthStore

NO_OPTIONS = LinkOptions()


async def test_events_end_quietly_when_the_link_is_closed_under_them(engine, watch) -> None:
    link = engine.link(MemoryAuthStore("s1"), NO_OPTIONS)
    async with link:
        events = watch(link)
        await events.expect(QRCode)
        waiting = asyncio.create_task(events.rest())
        await asyncio.sleep(0)  # let it start waiting for the next event
    assert await waiting == []


async def test_creds_of_another_engine_are_not_sent(engine, watch) -> None:
    auth = MemoryAuthStore("s1")
    await auth.save("creds", {"noise_key": "..."})
    async with engine.link(auth, NO_OPTIONS) as link:
        await watch(link).expect(QRCode)


def test_the_engine_needs_exactly_one_target(network) -> None:
    with pytest.raises(ConfigError):
        SandboxEngine()
    with pytest.raises(ConfigError):
        SandboxEngine(network=network, url="ws://127.0.0.1:1/ws")


async def test_a_server_that_is_not_there_is_a_transient_error(closed_port: int) -> None:
    engine = SandboxEngine(url=f"ws://127.0.0.1:{closed_port}/ws")
    with pytest.raises(TransientError, match="cannot reach"):
        async with engine.link(MemoryAuthStore("s1"), NO_OPTIONS):
            pass
