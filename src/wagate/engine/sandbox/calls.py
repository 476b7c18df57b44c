"""Requests a sandbox link has in flight, matched to their answers by request id.

Each request gets a fresh ``rid``; the network echoes it in its ``ack`` or
``error`` answer, so several requests (sends, uploads, downloads) can be in
flight at once. A refusal becomes :class:`Refused`, which the link translates
into wagate's error tree for the verb at hand.
"""

from __future__ import annotations

import asyncio
import itertools

from wagate.errors import EngineError, TransientError
from wagate.sandbox.transport import Channel, ChannelClosed, Frame


class Refused(EngineError):
    """The network answered a request with an ``error`` frame (translated by the link)."""

    def __init__(self, code: str, message: str, field: str | None) -> None:
        super().__init__(message, code=code)
        self.field = field


class Calls:
    """Pending requests of one link, by request id."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[Frame]] = {}
        self._down: str | None = None

    async def call(self, channel: Channel, frame: Frame) -> Frame:
        """Send ``frame`` and wait for its answer; :class:`TransientError` if none comes."""
        if self._down is not None:
            raise TransientError(self._down)
        rid = str(next(self._ids))
        answer: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[rid] = answer
        try:
            await channel.send({**frame, "rid": rid})
            async with asyncio.timeout(self._timeout_s):
                reply = await answer
        except ChannelClosed as exc:
            raise TransientError("the sandbox link is down") from exc
        except TimeoutError as exc:
            raise TransientError(f"no answer from the sandbox in {self._timeout_s}s") from exc
        finally:
            self._pending.pop(rid, None)
        if reply.get("ev") == "error":
            field = reply.get("field")
            code, message = str(reply.get("code")), str(reply.get("message"))
            raise Refused(code, message, field if isinstance(field, str) else None)
        return reply

    def answer(self, frame: Frame) -> None:
        """Hand an answer to its request; an answer nobody waits for any more is dropped."""
        waiting = self._pending.get(str(frame.get("rid")))
        if waiting is not None and not waiting.done():
            waiting.set_result(frame)

    def fail_all(self, reason: str) -> None:
        """The link is down: every pending and later request fails as transient."""
        self._down = reason
        for waiting in self._pending.values():
            if not waiting.done():
                waiting.set_exception(TransientError(reason))
