"""Engine memory benchmark: resident memory per session, neonize against the sandbox engine.

Each figure comes from a fresh child process (this file, run with ``--child``):

- ``baseline``: Python with wagate's engine boundary imported, no engine;
- ``sandbox N``: an in-process sandbox network and N sessions showing QR codes;
- ``neonize N``: the neonize engine (its Go library loaded) and N clients
  *connecting*: their dials go to a local proxy that accepts and never
  answers, so each client holds its goroutine, its thread and its SQLite store
  the way a session does while it waits on a slow network;
- ``leak M``: one neonize session dialing M times into a refused proxy: what
  every ``connect`` leaves behind in Go (descriptors, memory).

Per-session figures are ``(RSS(N) - RSS(0)) / N`` within one engine; the
headline ratio is neonize's per-session RSS over the sandbox's, measured in
the same run. Run: ``python bench/engine_memory.py [--sessions 50] [--dials 100]``.
Prints a table and writes ``bench/results/engine-memory-<time>.json``. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from report import report

SETTLE_S = 1.5


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def _fds() -> int:
    import psutil

    return int(psutil.Process().num_fds())


def _black_hole() -> int:
    """A local proxy that accepts connections and never answers (dials hang, connecting)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1024)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            conn, _ = server.accept()
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return int(server.getsockname()[1])


# --- children ------------------------------------------------------------------------------


async def child_baseline() -> dict[str, Any]:
    import wagate.engine.base  # noqa: F401

    return {"rss_mb": _rss_mb()}


async def child_sandbox(count: int) -> dict[str, Any]:
    from wagate.engine.base import LinkOptions, QRCode
    from wagate.engine.sandbox import SandboxEngine
    from wagate.sandbox import SandboxNetwork, SandboxTimings
    from wagate.storage.auth_state import MemoryAuthStore

    network = SandboxNetwork(timings=SandboxTimings(qr_first_s=600, qr_next_s=600))
    engine = SandboxEngine(network=network)
    async with contextlib.AsyncExitStack() as stack:
        for i in range(count):
            link = await stack.enter_async_context(
                engine.link(MemoryAuthStore(f"s{i}"), LinkOptions())
            )
            first = await anext(link.events())
            assert isinstance(first, QRCode)
        await asyncio.sleep(SETTLE_S)
        return {"rss_mb": _rss_mb(), "sessions": count}


async def child_neonize(count: int) -> dict[str, Any]:
    from wagate.engine.base import LinkOptions
    from wagate.engine.neonize import NeonizeConfig, NeonizeEngine
    from wagate.storage.auth_state import FileAuthStore

    engine = NeonizeEngine(NeonizeConfig(start_window_s=0.05, max_sessions=max(count, 1)))
    root = Path(tempfile.mkdtemp())
    stack = contextlib.AsyncExitStack()
    loaded = _rss_mb()
    for i in range(count):
        await stack.enter_async_context(engine.link(FileAuthStore(root, f"s{i}"), LinkOptions()))
    await asyncio.sleep(SETTLE_S)
    running = sum(s.running() for s in engine.sessions.values())
    return {"rss_mb": _rss_mb(), "loaded_mb": loaded, "sessions": count, "running": running}


async def child_leak(dials: int) -> dict[str, Any]:
    from wagate.engine.base import LinkOptions
    from wagate.engine.neonize import NeonizeConfig, NeonizeEngine
    from wagate.errors import TransientError
    from wagate.storage.auth_state import FileAuthStore

    engine = NeonizeEngine(NeonizeConfig(connect_backoff_base_s=0.001, connect_backoff_max_s=0.001))
    auth = FileAuthStore(Path(tempfile.mkdtemp()), "s1")

    async def dial() -> None:
        with contextlib.suppress(TransientError):
            async with engine.link(auth, LinkOptions()):
                pass

    await dial()
    rss, fds = _rss_mb(), _fds()
    for _ in range(dials):
        await dial()
    await asyncio.sleep(0.3)
    return {"rss_growth_mb": _rss_mb() - rss, "fd_growth": _fds() - fds, "dials": dials}


def _child(mode: str, count: int) -> None:
    runner: Any = {
        "baseline": lambda: child_baseline(),
        "sandbox": lambda: child_sandbox(count),
        "neonize": lambda: child_neonize(count),
        "leak": lambda: child_leak(count),
    }[mode]
    print(json.dumps(asyncio.run(runner())), flush=True)
    os._exit(0)  # connecting Go clients never stop on their own: do not wait for them


# --- the parent ----------------------------------------------------------------------------


def measure(mode: str, count: int = 0) -> dict[str, Any]:
    # Go reads the environment of the process's start: the proxy is set for the child.
    env = dict(os.environ)
    if mode == "neonize":
        env["HTTPS_PROXY"] = f"http://127.0.0.1:{_black_hole()}"
    if mode == "leak":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            env["HTTPS_PROXY"] = f"http://127.0.0.1:{sock.getsockname()[1]}"  # refused
    child = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(count)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    figures: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return figures


def run(sessions: int, dials: int) -> dict[str, Any]:
    baseline = measure("baseline")["rss_mb"]
    sandbox0, sandbox_n = measure("sandbox", 0)["rss_mb"], measure("sandbox", sessions)["rss_mb"]
    neonize0_report, neonize_n_report = measure("neonize", 0), measure("neonize", sessions)
    neonize0, neonize_n = neonize0_report["rss_mb"], neonize_n_report["rss_mb"]
    leak = measure("leak", dials)
    per_sandbox = (sandbox_n - sandbox0) / sessions
    per_neonize = (neonize_n - neonize0) / sessions
    return {
        "sessions": sessions,
        "baseline_rss_mb": round(baseline, 1),
        "sandbox_engine_rss_mb": round(sandbox0, 1),
        "neonize_engine_rss_mb": round(neonize0, 1),
        "neonize_library_cost_mb": round(neonize0 - baseline, 1),
        "sandbox_per_session_mb": round(per_sandbox, 3),
        "neonize_per_session_mb": round(per_neonize, 3),
        "neonize_clients_running": neonize_n_report["running"],
        "per_session_ratio_neonize_to_sandbox": round(per_neonize / max(per_sandbox, 1e-6), 1),
        "leak_per_dial_kb": round(leak["rss_growth_mb"] * 1024 / dials, 1),
        "leak_fds_per_dial": round(leak["fd_growth"] / dials, 2),
        "dials": dials,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--dials", type=int, default=100)
    args = parser.parse_args()
    result = run(args.sessions, args.dials)
    report("engine-memory", result)


if __name__ == "__main__":
    main()
