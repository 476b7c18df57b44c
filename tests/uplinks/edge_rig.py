"""A worker-proxy behind ``httpx.MockTransport`` for the edge worker's parts, and its fakes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from wagate.domain.message import Outgoing, SendResult
from wagate.domain.session import SessionState
from wagate.errors import Conflict
from wagate.uplinks.edge import EdgeRefused

SECRET = "s3cret"
BASE_URL = "http://proxy.test/functions/v1/worker-proxy"

Reply = Callable[[httpx.Request], httpx.Response]


class Proxy:
    """Keeps every request; answers each path with ``routes[path]`` (default: 204, or ``[]``)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.routes: dict[str, Reply] = {}
        self.headers: dict[str, str] = {}  # sent with every answer (a claim TTL, say)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix(httpx.URL(BASE_URL).path)
        reply = self.routes.get(path)
        if reply is not None:
            answer = reply(request)
        elif request.method == "GET":
            answer = httpx.Response(200, json=[])
        else:
            answer = httpx.Response(204)
        answer.headers.update(self.headers)
        return answer

    def answer(self, path: str, status: int = 200, **kwargs: Any) -> None:
        self.routes[path] = lambda _request: httpx.Response(status, **kwargs)

    def to(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith(path)]

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.to(path)]


class Refusals:
    """An ``on_refused``: keeps each ``(instance, exc)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, EdgeRefused]] = []
        self.heard = asyncio.Event()

    async def __call__(self, instance: str, exc: EdgeRefused) -> None:
        self.calls.append((instance, exc))
        self.heard.set()


class Wakes:
    """A courier that only keeps each ``wake(instance, path)`` (posts stay in the spool)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.delivered = 0
        self.dropped = 0

    def wake(self, instance: str, path: str) -> None:
        self.calls.append((instance, path))


class FakeLink:
    """A link whose ``send`` answers ``results`` in turn: an id, or an exception to raise."""

    def __init__(self, *results: str | BaseException) -> None:
        self.results = list(results)
        self.sent: list[Outgoing] = []

    async def send(self, message: Outgoing) -> SendResult:
        self.sent.append(message)
        result = self.results.pop(0) if self.results else f"3EB0{len(self.sent):04d}"
        if isinstance(result, BaseException):
            raise result
        return SendResult(result, datetime(2026, 1, 1, tzinfo=UTC))


class FakeWorker:
    """The few verbs of a Worker an EdgeHost uses; ``start`` may be told to refuse an id."""

    def __init__(self, *running: str) -> None:
        self.states: dict[str, SessionState] = dict.fromkeys(running, SessionState.CONNECTED)
        self.started: list[str] = []
        self.handed_over: list[str] = []
        self.conflicts: set[str] = set()

    def running(self) -> dict[str, SessionState]:
        return dict(self.states)

    def is_running(self, session_id: str) -> bool:
        return session_id in self.states

    async def start(self, session_id: str, *, pair_phone: str | None = None) -> bool:
        if session_id in self.conflicts:
            raise Conflict(f"{session_id} is held elsewhere")
        if session_id in self.states:
            return False
        self.started.append(session_id)
        self.states[session_id] = SessionState.CONNECTING
        return True

    async def hand_over(self, session_id: str) -> None:
        self.handed_over.append(session_id)
        self.states.pop(session_id, None)
