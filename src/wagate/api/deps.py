"""Request dependencies: the API key check and the services routes use."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from wagate.control.sessions import SessionService
from wagate.errors import Unauthorized
from wagate.roles.serve import Gateway

_api_key_header = APIKeyHeader(name="X-Api-Key", auto_error=False)
_bearer = HTTPBearer(auto_error=False)


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def require_key(
    request: Request,
    header_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Accept the key as ``X-Api-Key: <key>`` or ``Authorization: Bearer <key>``."""
    given = header_key or (bearer.credentials if bearer else None)
    if not given:
        raise Unauthorized("missing API key: send X-Api-Key or Authorization: Bearer")
    expected: str = request.app.state.gateway.api_key
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("wrong API key")


def sessions(request: Request) -> SessionService:
    return gateway(request).service


Sessions = Annotated[SessionService, Depends(sessions)]
