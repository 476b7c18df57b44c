"""Seed 004's proxy pool under ``/api/v1/proxies``: list, add, remove, check now.

A proxy's URL is shown redacted (``socks5h://user:***@host:port``): its
password never leaves the server, in answers as in logs.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from wagate.api.deps import services
from wagate.api.params import RowId
from wagate.api.schemas import Strict
from wagate.control.proxy_pool import ProxyPool
from wagate.domain.proxy import Proxy, redact
from wagate.errors import NotConfigured

router = APIRouter(prefix="/api/v1/proxies", tags=["proxies (seed 004)"])


def _pool(request: Request) -> ProxyPool:
    found = services(request).proxies
    if found is None:
        raise NotConfigured("this process runs no proxy pool")
    return found


Pool = Annotated[ProxyPool, Depends(_pool)]


class ProxyIn(Strict):
    url: str = Field(max_length=2048, description="socks5h://[user:pass@]host:port")
    label: str | None = Field(None, max_length=128)


def proxy_out(proxy: Proxy, capacity: int) -> dict[str, Any]:
    return {
        "id": proxy.id,
        "url": redact(proxy.url),
        "label": proxy.label,
        "source": proxy.source,
        "status": proxy.status.value,
        "sessions": proxy.load,
        "capacity": capacity,
        "lastCheckedAt": proxy.last_checked_at,
        "lastOkAt": proxy.last_ok_at,
        "lastError": proxy.last_error,
        "failures": proxy.failures,
        "nextCheckAt": proxy.next_check_at,
        "createdAt": proxy.created_at,
    }


@router.get("", summary="The proxy pool: each proxy, its health and its sessions")
async def list_proxies(pool: Pool) -> dict[str, Any]:
    found = await pool.list()
    cap = pool.settings.max_per_proxy
    return {"proxies": [proxy_out(p, cap) for p in found], "total": len(found)}


@router.post("", status_code=201, summary="Add a proxy to the pool (checked at once)")
async def add_proxy(body: ProxyIn, pool: Pool) -> dict[str, Any]:
    added = await pool.add(body.url, label=body.label)
    checked = await pool.check_now(added.id)
    return proxy_out(checked, pool.settings.max_per_proxy)


@router.get("/{proxy_id}", summary="One proxy")
async def get_proxy(proxy_id: RowId, pool: Pool) -> dict[str, Any]:
    return proxy_out(await pool.get(proxy_id), pool.settings.max_per_proxy)


@router.delete("/{proxy_id}", summary="Remove a proxy (409 while sessions use it, unless force)")
async def remove_proxy(
    proxy_id: RowId,
    pool: Pool,
    force: Annotated[bool, Query(description="Remove it even while sessions use it")] = False,
) -> dict[str, Any]:
    await pool.remove(proxy_id, force=force)
    return {"id": proxy_id, "removed": True}


@router.post("/{proxy_id}/check", summary="Check a proxy now: handshake, then a CONNECT")
async def check_proxy(proxy_id: RowId, pool: Pool) -> dict[str, Any]:
    return proxy_out(await pool.check_now(proxy_id), pool.settings.max_per_proxy)
