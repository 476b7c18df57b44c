"""Send-path benchmark: ``POST /api/sessions/{id}/messages`` against a no-op of the same stack.

Both endpoints live in one FastAPI app built by ``Gateway.app()``
(same middleware, error handlers and API-key check) and are called in-process
through ``httpx.ASGITransport``, so the ratio isolates what the send path adds:
validation, the session lookup and the durable ``queued`` row. The baseline is
``POST /bench/noop``: the same key check, a JSON body of the same size parsed
by FastAPI, a 201 answer. The session is not connected, so the sender stays
idle and only the enqueue path is timed.

- latency: one request at a time (p50, p95, p99);
- throughput: ``--concurrency`` clients at once.

Rounds alternate baseline and send and the best round of each counts (these
machines are shared and noisy). Run: ``python bench/send.py [--requests 500]
[--database-url postgresql://…]``. Prints a table and writes
``bench/results/send-<time>.json``. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import Depends, FastAPI
from report import report

from wagate.api.deps import require_key
from wagate.roles.serve import Gateway
from wagate.settings import load_settings
from wagate.testing import ScriptedEngine

KEY = "bench-key"
Call = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


def add_baseline(app: FastAPI) -> None:
    @app.post("/bench/noop", status_code=201, dependencies=[Depends(require_key)])
    async def noop(body: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "to": body.get("to")}


def _body(i: int) -> dict[str, Any]:
    return {"to": f"+62811{i % 50:08d}", "type": "text", "text": f"message number {i} " + "x" * 80}


def send_to(session_id: str) -> Call:
    async def send(client: httpx.AsyncClient, i: int) -> httpx.Response:
        return await client.post(f"/api/sessions/{session_id}/messages", json=_body(i))

    return send


async def _noop(client: httpx.AsyncClient, i: int) -> httpx.Response:
    return await client.post("/bench/noop", json=_body(i))


async def latency(client: httpx.AsyncClient, call: Call, n: int, offset: int) -> list[float]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        r = await call(client, offset + i)
        times.append(time.perf_counter() - t0)
        assert r.status_code == 201, r.text
    return times


async def throughput(
    client: httpx.AsyncClient, call: Call, n: int, concurrency: int, offset: int
) -> float:
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            r = await call(client, offset + i)
            assert r.status_code == 201, r.text

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - t0)


def _pct(values: list[float], q: float) -> float:
    ms = sorted(v * 1000 for v in values)
    return ms[min(len(ms) - 1, int(len(ms) * q))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="wagate-bench-send-"))
    url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    settings = load_settings(data_dir=tmp, database_url=url, api_key=KEY)
    async with Gateway(settings, engine=ScriptedEngine()) as gateway:  # type: ignore[arg-type]
        # a fresh id: the database may be reused
        session = await gateway.services.sessions.create()
        app = gateway.app()
        add_baseline(app)
        transport = httpx.ASGITransport(app=app)
        headers = {"X-Api-Key": KEY}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=headers
        ) as client:
            return await _measure(client, args, gateway.db.dialect, session.id)


async def _measure(
    client: httpx.AsyncClient, args: argparse.Namespace, dialect: str, session_id: str
) -> dict[str, Any]:
    send = send_to(session_id)
    await latency(client, send, 20, 10_000_000)  # warm up both paths
    await latency(client, _noop, 20, 10_000_000)
    lat: dict[str, list[list[float]]] = {"noop": [], "send": []}
    rps: dict[str, list[float]] = {"noop": [], "send": []}
    offset = 0
    for _ in range(args.rounds):
        for name, call in (("noop", _noop), ("send", send)):
            lat[name].append(await latency(client, call, args.requests, offset))
            rps[name].append(
                await throughput(client, call, args.requests, args.concurrency, offset + 1_000_000)
            )
            offset += args.requests
    best = {name: min(rounds, key=statistics.median) for name, rounds in lat.items()}
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(),
        "database": dialect,
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
    }
    for name in ("noop", "send"):
        result[f"{name}_latency_ms_p50"] = _pct(best[name], 0.50)
        result[f"{name}_latency_ms_p95"] = _pct(best[name], 0.95)
        result[f"{name}_latency_ms_p99"] = _pct(best[name], 0.99)
        result[f"{name}_requests_per_s"] = max(rps[name])
    result["send_to_noop_latency_p50_ratio"] = (
        result["send_latency_ms_p50"] / result["noop_latency_ms_p50"]
    )
    result["send_to_noop_throughput_ratio"] = (
        result["send_requests_per_s"] / result["noop_requests_per_s"]
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500, help="per round and path")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--database-url", default=os.environ.get("WAGATE_BENCH_DATABASE_URL"))
    args = parser.parse_args()
    result = asyncio.run(run(args))
    report("send", result)


if __name__ == "__main__":
    main()
