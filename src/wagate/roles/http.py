"""The HTTP side of a role: bind its port first (one clear line when it is taken), then serve."""

from __future__ import annotations

import socket
from typing import Any

import uvicorn

from wagate.errors import ConfigError


async def serve_http(
    app: Any, sock: socket.socket, *, host: str, port: int, log_level: str
) -> None:
    """Serve ``app`` on the bound ``sock`` until SIGINT/SIGTERM (uvicorn handles both)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        lifespan="off",
        access_log=log_level == "debug",
    )
    await uvicorn.Server(config).serve(sockets=[sock])


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
