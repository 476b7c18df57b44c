"""Logging set-up: one line per record, a logger per module, a child per session.

Secrets never reach a log line: API keys are never logged, proxy URLs are
logged redacted (:func:`wagate.domain.proxy.redact`), database URLs not at all.
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
OFF = logging.CRITICAL + 1  # LOG_LEVEL=off (pino's "silent"): not even critical records


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(OFF if level == "off" else level.upper())
    # uvicorn's access log repeats every health probe; keep it at warning unless debugging
    if level != "debug":
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request URL at info, and webhook URLs may carry tokens
    logging.getLogger("httpx").setLevel(logging.WARNING)
