"""Groups and seed 003's runtime flags, per session."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from wagate.api import deps
from wagate.api.deps import Sessions
from wagate.domain.flag import Flag
from wagate.domain.group import Group
from wagate.errors import InvalidInput, NotFound
from wagate.roles.serve import Gateway

router = APIRouter(prefix="/api/sessions", tags=["groups"])
GatewayDep = Annotated[Gateway, Depends(deps.gateway)]


class MonitorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    monitor: bool


def group_out(g: Group) -> dict[str, Any]:
    return {
        "id": g.id,
        "waGroupId": g.wa_group_id,
        "name": g.name,
        "monitor": g.monitor,
        "participants": g.participants,
        "createdAt": g.created_at,
        "updatedAt": g.updated_at,
    }


@router.get("/{session_id}/groups", summary="The session's discovered groups")
async def list_groups(
    session_id: str, service: Sessions, gw: GatewayDep, monitored: bool | None = None
) -> dict[str, Any]:
    await service.get(session_id)
    groups = await gw.ingest.groups.find(session_id, monitored=monitored)
    return {"groups": [group_out(g) for g in groups], "total": len(groups)}


@router.patch(
    "/{session_id}/groups/{group_id}",
    summary="Turn ingest of a group on or off (the only thing discovery never changes)",
)
async def set_monitor(
    session_id: str, group_id: str, body: MonitorIn, service: Sessions, gw: GatewayDep
) -> dict[str, Any]:
    await service.get(session_id)
    jid = group_id if "@" in group_id else f"{group_id}@g.us"
    group = await gw.ingest.groups.set_monitor(session_id, jid, body.monitor)
    if group is None:
        raise NotFound(f"group {jid!r} not found in session {session_id!r}")
    return group_out(group)


@router.post(
    "/{session_id}/fetch-groups-now",
    status_code=202,
    summary="Ask for group discovery (sets fetch_groups_requested, as seed 003's UI does)",
)
async def fetch_groups_now(session_id: str, service: Sessions, gw: GatewayDep) -> dict[str, Any]:
    return await _set_flag(session_id, Flag.FETCH_GROUPS, service, gw)


@router.post(
    "/{session_id}/flags/{name}",
    status_code=202,
    summary="Set one of seed 003's runtime flags to now",
)
async def set_flag(session_id: str, name: str, service: Sessions, gw: GatewayDep) -> dict[str, Any]:
    try:
        flag = Flag(name)
    except ValueError:
        names = ", ".join(f.value for f in Flag)
        raise InvalidInput("name", f"unknown flag {name!r}; one of: {names}") from None
    return await _set_flag(session_id, flag, service, gw)


async def _set_flag(session_id: str, flag: Flag, service: Sessions, gw: Gateway) -> dict[str, Any]:
    await service.get(session_id)
    at: datetime = await gw.ingest.flags.set(session_id, flag)
    return {"sessionId": session_id, "flag": flag.value, "value": {"at": at.isoformat()}}


@router.get("/{session_id}/ingest", summary="Ingest counters since this process started")
async def ingest_stats(session_id: str, service: Sessions, gw: GatewayDep) -> dict[str, Any]:
    await service.get(session_id)
    return {"sessionId": session_id, "counts": dict(gw.ingest.pipeline.stats.get(session_id, {}))}
