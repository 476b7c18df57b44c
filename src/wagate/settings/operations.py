"""The settings of seed 004's operations: the proxy pool (and, as they come, keep-alive, the
watchdog, backups and alerts). Read with every other setting (``Settings`` inherits these)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings

from wagate.backoff import Backoff
from wagate.domain.proxy import parse_proxy
from wagate.errors import ConfigError, InvalidInput
from wagate.settings.aliases import env

if TYPE_CHECKING:
    from wagate.settings.env import Settings

_NUMBERED = re.compile(r"^(?:WAGATE_)?PROXY_URL_(\d+)$")


class OperationsFields(BaseSettings):
    # --- the proxy pool (seed 004) -------------------------------------------------------
    # PROXY_URL_1..n: read from the environment at start (see numbered_proxy_urls)
    proxy_urls: list[str] = Field(default_factory=list, validation_alias=env("PROXY_URLS"))
    # sessions of one phone number at most (WhatsApp links at most 4 companion devices)
    max_sessions_per_phone: int = Field(
        4, ge=1, le=4, validation_alias=env("MAX_SESSIONS_PER_PHONE", "MAX_SESSIONS_PER_PHONE")
    )
    max_sessions_per_proxy: int = Field(
        4, ge=1, le=1000, validation_alias=env("MAX_SESSIONS_PER_PROXY", "MAX_SESSIONS_PER_PROXY")
    )
    # a healthy proxy is checked this often; a bad one after a delay doubling from base to max
    proxy_check_interval_ms: int = Field(
        60_000, ge=100, validation_alias=env("PROXY_CHECK_INTERVAL_MS")
    )
    proxy_check_timeout_ms: int = Field(
        10_000, ge=50, validation_alias=env("PROXY_CHECK_TIMEOUT_MS")
    )
    proxy_recheck_base_ms: int = Field(30_000, ge=50, validation_alias=env("PROXY_RECHECK_BASE_MS"))
    proxy_recheck_max_ms: int = Field(600_000, ge=50, validation_alias=env("PROXY_RECHECK_MAX_MS"))
    # where a check connects through each proxy (host:port); default WhatsApp's web host, or
    # the sandbox server with the sandbox engine
    proxy_probe: str | None = Field(
        None, pattern=r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$", validation_alias=env("PROXY_PROBE")
    )

    @model_validator(mode="before")
    @classmethod
    def _numbered_proxy_urls(cls, values: Any) -> Any:
        """``PROXY_URL_1``, ``PROXY_URL_2``, … (seed 004), in their order; they win over
        ``WAGATE_PROXY_URLS``. A URL that is not a SOCKS5 one stops start-up, naming it."""
        if not isinstance(values, dict):
            return values
        numbered = numbered_proxy_urls(os.environ)
        if numbered:
            spelled = {"proxy_urls", "wagate_proxy_urls"}
            values = {k: v for k, v in values.items() if k.lower() not in spelled}
            values["proxy_urls"] = numbered
        return values


def numbered_proxy_urls(environ: Any) -> list[str]:
    """The ``PROXY_URL_n`` values in the order of n (``WAGATE_PROXY_URL_n`` wins over
    ``PROXY_URL_n``); a ConfigError names the first that is not a SOCKS5 URL."""
    found: dict[int, tuple[bool, str, str]] = {}
    for name, value in environ.items():
        match = _NUMBERED.match(name)
        if not match or not value.strip():
            continue
        n, ours = int(match.group(1)), name.startswith("WAGATE_")
        if n not in found or (ours and not found[n][0]):
            found[n] = (ours, name, value.strip())
    for _, name, url in found.values():
        try:
            parse_proxy(url, name)
        except InvalidInput as exc:
            raise ConfigError(f"invalid setting {name}: {exc.message}") from None
    return [url for _, (_, _, url) in sorted(found.items())]


@dataclass(frozen=True, slots=True)
class ProxyPoolSettings:
    """Seed 004's proxy pool (``control/proxy_pool.py``)."""

    urls: tuple[str, ...] = ()  # PROXY_URL_1..n
    max_per_proxy: int = 4  # MAX_SESSIONS_PER_PROXY
    check_every: timedelta = timedelta(seconds=60)  # a healthy proxy is checked this often
    check_timeout_s: float = 10.0
    recheck: Backoff = Backoff(30.0, 600.0, jitter_ratio=0.1)  # a bad one: after this
    probe: tuple[str, int] | None = None  # None: the engine's own target
    concurrency: int = 8  # checks at once

    @property
    def tick_s(self) -> float:
        """How often due checks are looked for: a quarter of the shortest wait between two."""
        shortest = min(self.check_every.total_seconds(), self.recheck.base_s)
        return max(0.1, shortest / 4)

    @classmethod
    def of(cls, s: Settings) -> ProxyPoolSettings:
        probe = None
        if s.proxy_probe:
            host, _, port = s.proxy_probe.rpartition(":")
            probe = (host.strip("[]"), int(port))
        return cls(
            urls=tuple(s.proxy_urls),
            max_per_proxy=s.max_sessions_per_proxy,
            check_every=timedelta(milliseconds=s.proxy_check_interval_ms),
            check_timeout_s=s.proxy_check_timeout_ms / 1000,
            recheck=Backoff(
                s.proxy_recheck_base_ms / 1000, s.proxy_recheck_max_ms / 1000, jitter_ratio=0.1
            ),
            probe=probe,
        )
