"""Run the all-in-one gateway under uvicorn (``wagate serve``)."""

from __future__ import annotations

import logging
import socket

import uvicorn

from wagate.api.app import create_app
from wagate.errors import ConfigError
from wagate.logs import configure
from wagate.roles.serve import Gateway
from wagate.settings import Settings

log = logging.getLogger(__name__)


async def run_gateway(settings: Settings) -> None:
    configure(settings.log_level)
    # bound before anything starts: a port in use stops start-up with one line
    with bind(settings.host, settings.port, f"{settings.port_variable}, HOST") as sock:
        async with Gateway(settings) as gateway:
            if gateway.api_key_created:
                # printed once, at the start that created it; it stays in the data dir
                print(
                    f"wagate: generated an API key (stored in {settings.api_key_file}):\n"
                    f"  {gateway.api_key}",
                    flush=True,
                )
            config = uvicorn.Config(
                create_app(gateway),
                host=settings.host,
                port=settings.port,
                log_config=None,
                lifespan="off",
                access_log=settings.log_level == "debug",
            )
            log.info(
                "wagate serving on http://%s:%d (engine %s, worker %s)",
                settings.host,
                settings.port,
                gateway.engine.name,
                settings.worker_id,
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
