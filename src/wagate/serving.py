"""Serving HTTP: bind the port first (one clear line when it is taken), then serve with uvicorn.

Used by every process that listens (``wagate serve``, ``wagate sandbox``).
A signal (SIGINT, SIGTERM) only ends serving: the caller then leaves its
services in order (links drained, the last events written, state saved).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from wagate.errors import ConfigError


async def serve_http(
    app: Any, sock: socket.socket, *, host: str, port: int, log_level: str
) -> None:
    """Serve ``app`` on the bound ``sock`` until SIGINT/SIGTERM; then return, to stop in order."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        lifespan="off",
        access_log=log_level == "debug",
    )
    await Server(config).serve(sockets=[sock])


class Http:
    """An HTTP server started in the background: for roles that act once it listens.

    A fleet worker must answer on its port before it registers (seed 002's
    order); :meth:`start` returns once uvicorn serves. A signal, or
    :meth:`stop`, ends serving; :meth:`wait` returns then.
    """

    def __init__(self, app: Any, sock: socket.socket, *, host: str, port: int, log_level: str):
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            lifespan="off",
            access_log=log_level == "debug",
        )
        self._server = Server(config)
        self._sock = sock
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]), name="http")
        while not self._server.started:
            if self._task.done():
                await self._task  # it failed to start: its error, here
                return
            await asyncio.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True

    async def wait(self) -> None:
        if self._task is not None:
            await self._task


class Server(uvicorn.Server):
    """uvicorn's server, except that the signal that stopped it is not raised again.

    uvicorn restores the previous handlers and raises the signal once it has
    stopped serving; for SIGTERM that is the default handler, which ends the
    process there and then, before the role's services leave in order (links
    drained, the last events written). Here a signal only ends :meth:`serve`.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)


def bind(host: str, port: int, variables: str) -> socket.socket:
    """A socket bound to host:port (as uvicorn binds it); a ConfigError naming ``variables``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"cannot listen on {host}:{port} ({variables}): {reason.lower()}"
        ) from None
    sock.set_inheritable(True)
    return sock


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (for a child process to bind; it retries if it lost a race)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host if host not in ("", "0.0.0.0") else "127.0.0.1", 0))
        return int(sock.getsockname()[1])
