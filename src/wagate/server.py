"""Run the all-in-one gateway under uvicorn (``wagate serve``)."""

from __future__ import annotations

import logging

import uvicorn

from wagate.api.app import create_app
from wagate.lifecycle import Gateway
from wagate.logs import configure
from wagate.settings import Settings

log = logging.getLogger(__name__)


async def run_gateway(settings: Settings) -> None:
    configure(settings.log_level)
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
            "wagate %s on http://%s:%d (engine %s, worker %s)",
            "serving",
            settings.host,
            settings.port,
            gateway.engine.name,
            settings.worker_id,
        )
        await uvicorn.Server(config).serve()
