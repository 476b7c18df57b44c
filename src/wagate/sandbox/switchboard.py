"""Serving the peers of the sandbox network, each from its ``hello`` frame to its close.

The :class:`Switchboard` takes every new channel (in-process or a websocket):
it refuses it during an outage, waits ``hello_timeout_s`` on the network's
clock for its ``hello``, registers the connection, has linking log it in,
streams its device's queue to it, and hands each later frame to the op table.
It owns the tasks that do this; closing it drops every connection.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable
from typing import TypeVar

from wagate.clock import Clock
from wagate.errors import EngineError, InvalidInput, WagateError
from wagate.sandbox.connection import Connection, Hello, OpHandler, error_frame
from wagate.sandbox.connections import Connections
from wagate.sandbox.faults import Faults
from wagate.sandbox.limits import SandboxTimings
from wagate.sandbox.linking import Linking
from wagate.sandbox.mail import Mail
from wagate.sandbox.transport import BadFrame, Channel, ChannelClosed, Frame, memory_pair

log = logging.getLogger(__name__)

T = TypeVar("T")


class Switchboard:
    """Greets peers, runs each connection's reader and queue pump, dispatches their ops."""

    def __init__(
        self,
        connections: Connections,
        linking: Linking,
        faults: Faults,
        mail: Mail,
        ops: dict[str, OpHandler],
        *,
        timings: SandboxTimings,
        clock: Clock,
    ) -> None:
        self._connections = connections
        self._linking = linking
        self._faults = faults
        self._mail = mail
        self._ops = dict(ops)
        self._timings = timings
        self._clock = clock
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    def register_op(self, op: str, handler: OpHandler) -> None:
        self._ops[op] = handler

    def open_channel(self) -> Channel:
        """Connect in-process: the client end of a fresh channel this switchboard now serves."""
        client_end, network_end = memory_pair()
        task = asyncio.create_task(self.serve(network_end), name="sandbox-serve")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return client_end

    async def serve(self, channel: Channel) -> None:
        """Handle one peer connection until it closes."""
        try:
            conn = await self._greet(channel)
            if conn is not None:
                await self._run(conn)
        except ChannelClosed:
            pass  # the peer left during the handshake
        finally:
            await channel.close()

    async def aclose(self) -> None:
        """Drop every connection and stop the in-process serving tasks."""
        for conn in self._connections.live():
            await conn.drop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sandbox connection task failed", exc_info=task.exception())

    async def _greet(self, channel: Channel) -> Connection | None:
        if self._faults.is_down:
            await _refuse(channel, "unavailable", "the sandbox network is down (simulated outage)")
            return None
        try:
            frame = await _within(self._clock, self._timings.hello_timeout_s, channel.recv())
            hello = Hello.parse(frame)
        except TimeoutError:
            await _refuse(channel, "hello_timeout", "no hello frame in time")
            return None
        except BadFrame as exc:
            await _refuse(channel, "bad_frame", str(exc))
            return None
        except WagateError as exc:
            await _refuse(channel, "bad_hello", exc.message)
            return None
        return Connection(next(self._ids), channel, hello, self._clock)

    async def _run(self, conn: Connection) -> None:
        self._connections.add(conn)
        log.debug("connection %d opened by session %s", conn.id, conn.session)
        tasks = [asyncio.create_task(self._read_loop(conn), name=f"sandbox-read-{conn.id}")]
        try:
            await self._linking.login(conn)
            if conn.device_id is not None and not conn.ended:
                pump = self._pump(conn, conn.device_id)
                tasks.append(asyncio.create_task(pump, name=f"sandbox-pump-{conn.id}"))
            await conn.done.wait()
        finally:
            await _reap(conn, tasks)
            conn.peer_gone()
            self._connections.forget(conn)
            log.debug("connection %d closed", conn.id)

    async def _pump(self, conn: Connection, device_id: str) -> None:
        """Stream the device's queue to the connection; the client confirms with ``handled``."""
        queue = self._mail.queue(device_id)
        cursor = 0
        while not conn.ended:
            seq, frame = await queue.next_after(cursor)
            if not await conn.send({**frame, "q": seq}):
                return  # unconfirmed events stay queued for the next connection
            cursor = seq

    async def _read_loop(self, conn: Connection) -> None:
        while not conn.ended:
            try:
                frame = await conn.channel.recv()
            except ChannelClosed:
                conn.peer_gone()
                return
            except BadFrame as exc:
                await conn.send(error_frame("bad_frame", str(exc)))
                continue
            await self._dispatch(conn, frame)

    async def _dispatch(self, conn: Connection, frame: Frame) -> None:
        op = frame.get("op")
        handler = self._ops.get(op) if isinstance(op, str) else None
        if handler is None:
            await conn.send(error_frame("unknown_op", f"unknown op {op!r}"))
            return
        try:
            await handler(conn, frame)
        except WagateError as exc:
            await conn.send(_refusal(frame, exc))
        except Exception:
            # A bug in one op must not kill the connection's reader (it would hang).
            log.exception("sandbox op %r failed on connection %d", op, conn.id)
            await conn.send(_refusal(frame, EngineError(f"op {op!r} failed", code="internal")))


async def _within(clock: Clock, seconds: float, work: Awaitable[T]) -> T:
    """The result of ``work``, or :class:`TimeoutError` once ``seconds`` passed on ``clock``."""
    task = asyncio.ensure_future(work)
    finished = asyncio.Event()
    task.add_done_callback(lambda _: finished.set())
    try:
        await clock.wait(finished, seconds)
        if not task.done():
            raise TimeoutError
        return task.result()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait([task])


def _refusal(frame: Frame, exc: WagateError) -> Frame:
    """The error answer to one request; ``rid`` lets the client match it."""
    refusal = error_frame(exc.code, exc.message)
    if "rid" in frame:
        refusal["rid"] = frame["rid"]
    if isinstance(exc, InvalidInput):
        refusal["field"] = exc.field
    return refusal


async def _reap(conn: Connection, tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.error("sandbox task of connection %d failed", conn.id, exc_info=task.exception())


async def _refuse(channel: Channel, code: str, message: str) -> None:
    log.info("refusing a connection: %s", message)
    try:
        await channel.send(error_frame(code, message))
    except ChannelClosed:
        pass
