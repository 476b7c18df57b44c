"""A real HTTP server on a loopback port that answers ``GET /health`` as a worker does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from types import TracebackType
from typing import Any, Self


def seed002_health(instance: str | None = None) -> dict[str, Any]:
    """Seed 002's health body; wagate's workers add their ``instance``."""
    data: dict[str, Any] = {
        "status": "online",
        "sessionCount": 2,
        "cpuUsage": 4.5,
        "memoryUsage": 12.0,
        "uptime": 60,
        "maxSessions": 50,
    }
    if instance is not None:
        data["instance"] = instance
    return {"success": True, "data": data}


class HealthServer:
    """``async with HealthServer(body) as server``: ``server.url`` answers ``body`` on ``/health``.

    ``status`` and ``body`` may be changed while it runs; ``paths`` records each request.
    """

    def __init__(self, body: Any = None, status: int = 200) -> None:
        self.body = body if body is not None else seed002_health()
        self.status = status
        self.paths: list[str] = []
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.paths.append(head.split(b" ", 2)[1].decode())
            payload = json.dumps(self.body).encode()
            writer.write(
                b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (self.status, len(payload), payload)
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def closed_port_url() -> str:
    """A loopback URL where nothing listens: a worker that is gone."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
