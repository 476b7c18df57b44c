"""A fleet worker's :class:`~wagate.control.runtime.SessionRuntime`, served to its control plane.

The control plane's :class:`~wagate.control.remote.RemoteRuntime` calls these
to reach the process that owns a session (request proxying). Each verb of
the protocol is one route, speaking plain JSON; errors travel as the app's
error bodies (a ``409 session_owned_elsewhere`` when the session is another
worker's) and become the same errors again on the caller's side.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, Field

from wagate.api.deps import Runtime
from wagate.ids import check_session_id


def _checked(session_id: str) -> str:
    return check_session_id(session_id, "session_id")


router = APIRouter(prefix="/internal", tags=["fleet: a worker's runtime"])


class StartIn(BaseModel):
    pairPhone: str | None = Field(None, max_length=32)


class StopIn(BaseModel):
    reason: str = Field("stopped by operator", max_length=300)


@router.get("/running", summary="Sessions running here, and their states")
async def running(runtime: Runtime) -> dict[str, Any]:
    return {"running": {sid: state.value for sid, state in (await runtime.running()).items()}}


@router.get("/sessions/{session_id}/state", summary="The state of the session's runner here")
async def state(session_id: str, runtime: Runtime) -> dict[str, Any]:
    found = await runtime.state(_checked(session_id))
    return {"state": found.value if found is not None else None}


@router.post("/sessions/{session_id}/start", summary="Take the session's lease and start it")
async def start(
    session_id: str, runtime: Runtime, body: Annotated[StartIn | None, Body()] = None
) -> dict[str, Any]:
    pair = body.pairPhone if body else None
    return {"started": await runtime.start(_checked(session_id), pair_phone=pair)}


@router.post("/sessions/{session_id}/stop", summary="Stop it and give its lease back")
async def stop(
    session_id: str, runtime: Runtime, body: Annotated[StopIn | None, Body()] = None
) -> dict[str, Any]:
    await runtime.stop(_checked(session_id), reason=(body or StopIn()).reason)
    return {"stopped": True}


@router.post("/sessions/{session_id}/restart", summary="Stop and start again")
async def restart(session_id: str, runtime: Runtime) -> dict[str, Any]:
    await runtime.restart(_checked(session_id))
    return {"restarted": True}


@router.post("/sessions/{session_id}/refresh-qr", summary="A new link for a session shown a QR")
async def refresh_qr(session_id: str, runtime: Runtime) -> dict[str, Any]:
    return {"refreshed": await runtime.refresh_qr(_checked(session_id))}


@router.post("/sessions/{session_id}/logout", summary="Unlink the device and delete credentials")
async def logout(session_id: str, runtime: Runtime) -> dict[str, Any]:
    return {"unlink": (await runtime.logout(_checked(session_id))).value}


@router.post("/sessions/{session_id}/await-answer", summary="Wait (bounded) for a QR or the end")
async def await_answer(
    session_id: str,
    runtime: Runtime,
    within: Annotated[float, Query(ge=0, le=120, description="seconds")] = 10,
) -> dict[str, Any]:
    await runtime.await_answer(_checked(session_id), within)
    return {"answered": True}
