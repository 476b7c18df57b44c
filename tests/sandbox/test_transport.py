"""The channels frames travel on: the in-memory pair carries JSON objects only."""

from __future__ import annotations

import pytest

from wagate.sandbox import memory_pair
from wagate.sandbox.transport import BadFrame, ChannelClosed


async def test_memory_channels_carry_json_only() -> None:
    left, right = memory_pair()
    payload = {"ev": "x", "nested": [1, {"a": None}]}
    await left.send(payload)
    received = await right.recv()
    assert received == payload and received is not payload
    with pytest.raises(TypeError):
        await left.send({"bad": object()})
    await right._outbox.put("[1, 2]")  # what a misbehaving peer could send
    with pytest.raises(BadFrame):
        await left.recv()
    await left.close()
    with pytest.raises(ChannelClosed):
        await right.recv()
    with pytest.raises(ChannelClosed):
        await left.send({"ev": "late"})
