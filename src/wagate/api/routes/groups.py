"""Groups and seed 003's runtime flags, per session."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from wagate.api.deps import Groups, Sessions
from wagate.control.groups import GroupService
from wagate.control.sessions import SessionService
from wagate.domain.flag import Flag
from wagate.domain.group import Group

router = APIRouter(prefix="/api/sessions", tags=["groups"])


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
    session_id: str, sessions: Sessions, groups: Groups, monitored: bool | None = None
) -> dict[str, Any]:
    await sessions.get(session_id)
    found = await groups.list(session_id, monitored=monitored)
    return {"groups": [group_out(g) for g in found], "total": len(found)}


@router.patch(
    "/{session_id}/groups/{group_id}",
    summary="Turn ingest of a group on or off (the only thing discovery never changes)",
)
async def set_monitor(
    session_id: str, group_id: str, body: MonitorIn, sessions: Sessions, groups: Groups
) -> dict[str, Any]:
    await sessions.get(session_id)
    return group_out(await groups.set_monitor(session_id, group_id, body.monitor))


@router.post(
    "/{session_id}/fetch-groups-now",
    status_code=202,
    summary="Ask for group discovery (sets fetch_groups_requested, as seed 003's UI does)",
)
async def fetch_groups_now(session_id: str, sessions: Sessions, groups: Groups) -> dict[str, Any]:
    return await _raise_flag(session_id, Flag.FETCH_GROUPS.value, sessions, groups)


@router.post(
    "/{session_id}/flags/{name}",
    status_code=202,
    summary="Set one of seed 003's runtime flags to now",
)
async def set_flag(
    session_id: str, name: str, sessions: Sessions, groups: Groups
) -> dict[str, Any]:
    return await _raise_flag(session_id, name, sessions, groups)


async def _raise_flag(
    session_id: str, name: str, sessions: SessionService, groups: GroupService
) -> dict[str, Any]:
    await sessions.get(session_id)
    flag, at = await groups.raise_flag(session_id, name)
    return {"sessionId": session_id, "flag": flag.value, "value": {"at": at.isoformat()}}


@router.get("/{session_id}/ingest", summary="Ingest counters since this process started")
async def ingest_stats(session_id: str, sessions: Sessions, groups: Groups) -> dict[str, Any]:
    await sessions.get(session_id)
    return {"sessionId": session_id, "counts": groups.counters(session_id)}
