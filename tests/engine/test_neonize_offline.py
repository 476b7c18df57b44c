"""The neonize engine on the real Go library, with no way out to WhatsApp.

Each scenario runs in its own Python process (this file doubles as the
script: ``python -m tests.engine.test_neonize_offline <scenario>``), so a Go
``fatal error`` fails the test instead of killing pytest. The child's
environment points ``HTTPS_PROXY`` at a closed local port, which whatsmeow
honours: every dial fails at once, on any machine, network or not.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.neonize_real

ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_scenario(name: str, *args: str, timeout_s: float = 50) -> dict[str, Any]:
    """Run one scenario in a child process; its last stdout line is a JSON report."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HTTPS_PROXY"] = env["https_proxy"] = f"http://127.0.0.1:{closed_port()}"
    child = subprocess.run(
        [sys.executable, "-m", "tests.engine.test_neonize_offline", name, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert "fatal error" not in child.stderr, child.stderr[-3000:]
    assert child.returncode == 0, f"{name} died ({child.returncode}):\n{child.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    report["stdout"], report["stderr"] = child.stdout, child.stderr
    return report


# --- the tests ----------------------------------------------------------------------------


def test_offline_dials_fail_transiently_with_growing_spacing_and_bounded_threads() -> None:
    report = run_scenario("retries", "12")
    assert set(report["errors"]) == {"TransientError"}, report["messages"][:3]
    assert all("cannot reach WhatsApp" in m for m in report["messages"])
    gaps = report["gaps"]
    spacing = [min(0.4, 0.05 * 2**i) for i in range(len(gaps))]  # doubling up to the bound
    assert all(gap >= want * 0.95 for gap, want in zip(gaps, spacing, strict=True)), gaps
    assert max(gaps) < 0.4 * 2, gaps
    assert report["threads_after"] <= report["threads_before"] + 4, report
    assert report["fds_after"] - report["fds_before"] <= 12 + 8, "about one leaked per dial"
    assert report["health"]["needsRestart"] is False


def test_a_proxy_on_a_closed_port_is_a_proxy_error_with_its_secret_kept() -> None:
    report = run_scenario("proxy", str(closed_port()))
    assert report["errors"] == ["ProxyFailure", "ProxyFailure", "ProxyFailure"], report
    assert "socks connect" in report["messages"][0]  # socks5h:// was given to Go as socks5://
    assert "proxyconnect" in report["messages"][1]
    assert "s3cret" not in " ".join(report["messages"]) + report["stderr"]
    assert "cannot be used" in report["messages"][2]  # a scheme whatsmeow does not take


def test_twenty_sessions_each_start_their_client() -> None:
    report = run_scenario("twenty")
    assert report["attempted"] == 20 and set(report["errors"]) == {"TransientError"}
    assert report["elapsed_s"] < 15
    assert report["threads_after"] <= report["threads_before"] + 4


@pytest.mark.timeout(90)
@pytest.mark.parametrize("run", [1, 2])
def test_churn_of_starts_stops_and_calls_leaves_the_process_alive(run: int) -> None:
    report = run_scenario("churn", "6", timeout_s=80)
    assert report["reconnects"] > 100 and report["calls"] > 1000, report
    # threads follow concurrency (a call thread per caller), not the number of reconnects
    assert report["threads_after"] <= report["threads_early"] + 4, report


def test_importing_neonize_leaves_logging_and_stdout_alone() -> None:
    report = run_scenario("hygiene")
    assert report["root_handlers_before"] == report["root_handlers_after"]
    assert report["root_level_before"] == report["root_level_after"]
    assert "hello from python" in report["stdout"]
    assert "SendMessage:" not in report["stdout"], "Go's print reached stdout"
    assert "SendMessage: Error unmarshaling JID" in report["stderr"]  # logged, at debug


# --- the scenarios (in the child process) -------------------------------------------------


def _counts() -> tuple[int, int]:
    import psutil

    proc = psutil.Process()
    return proc.num_threads(), proc.num_fds()


async def _attempt(engine: Any, auth: Any, proxy: str | None = None) -> tuple[str, str]:
    from wagate.engine.base import LinkOptions
    from wagate.errors import WagateError

    try:
        async with engine.link(auth, LinkOptions(proxy=proxy)):
            return "opened", "the link opened, though nothing can be reached"
    except WagateError as exc:
        return type(exc).__name__, exc.message


def _engine(**overrides: Any) -> Any:
    from wagate.engine.neonize import NeonizeConfig, NeonizeEngine

    config: dict[str, Any] = {"connect_backoff_base_s": 0.02, "connect_backoff_max_s": 0.16}
    config |= overrides
    return NeonizeEngine(NeonizeConfig(**config))


async def scenario_retries(count: str) -> dict[str, Any]:
    from wagate.engine.base import FileAuthStore

    engine = _engine(connect_backoff_base_s=0.05, connect_backoff_max_s=0.4)
    auth = FileAuthStore(Path(tempfile.mkdtemp()), "s1")
    await _attempt(engine, auth)  # the first load of everything: not counted
    threads_before, fds_before = _counts()
    loop = asyncio.get_running_loop()
    starts, results = [], []
    for _ in range(int(count)):
        starts.append(loop.time())  # each attempt first waits out the spacing its failures set
        results.append(await _attempt(engine, auth))
    await asyncio.sleep(0.2)  # let finished dial threads exit
    threads_after, fds_after = _counts()
    health = engine.health()
    await engine.aclose()
    return {
        "errors": [kind for kind, _ in results],
        "messages": [message for _, message in results],
        "gaps": [round(b - a, 3) for a, b in zip(starts, starts[1:], strict=False)],
        "threads_before": threads_before,
        "threads_after": threads_after,
        "fds_before": fds_before,
        "fds_after": fds_after,
        "health": health,
    }


async def scenario_proxy(port: str) -> dict[str, Any]:
    from wagate.engine.base import FileAuthStore

    engine = _engine()
    root = Path(tempfile.mkdtemp())
    proxies = [
        f"socks5h://user:s3cret@127.0.0.1:{port}",
        f"http://user:s3cret@127.0.0.1:{port}",
        f"ftp://127.0.0.1:{port}",
    ]
    results = [
        await _attempt(engine, FileAuthStore(root, f"p{i}"), proxy)
        for i, proxy in enumerate(proxies)
    ]
    await engine.aclose()
    return {"errors": [k for k, _ in results], "messages": [m for _, m in results]}


async def scenario_twenty() -> dict[str, Any]:
    from wagate.engine.base import FileAuthStore

    engine = _engine(max_sessions=20)
    root = Path(tempfile.mkdtemp())
    await _attempt(engine, FileAuthStore(root, "warmup"))
    threads_before, _ = _counts()
    starts_before = engine.runtime.stats.starts
    started = time.monotonic()
    auths = [FileAuthStore(root, f"s{i}") for i in range(20)]
    results = await asyncio.gather(*(_attempt(engine, auth) for auth in auths))
    elapsed = time.monotonic() - started
    await asyncio.sleep(0.2)
    threads_after, _ = _counts()
    report = {
        "attempted": engine.runtime.stats.starts - starts_before,
        "errors": [kind for kind, _ in results],
        "elapsed_s": elapsed,
        "threads_before": threads_before,
        "threads_after": threads_after,
    }
    await engine.aclose()
    return report


async def scenario_churn(seconds: str) -> dict[str, Any]:
    """Sessions reconnect every fraction of a second while others call into Go."""
    from wagate.engine.base import FileAuthStore

    engine = _engine(connect_backoff_base_s=0.001, connect_backoff_max_s=0.004, max_sessions=40)
    root = Path(tempfile.mkdtemp())
    await _attempt(engine, FileAuthStore(root, "warmup"))
    threads_before, _ = _counts()
    loop = asyncio.get_running_loop()
    until = loop.time() + float(seconds)
    counts = {"reconnects": 0, "calls": 0}

    async def reconnecting(name: str) -> None:
        auth = FileAuthStore(root, name)
        while loop.time() < until:
            await _attempt(engine, auth)
            counts["reconnects"] += 1

    async def calling(index: int) -> None:
        names = [f"r{i}" for i in range(16)]
        while loop.time() < until:
            session = engine.sessions.get(names[(counts["calls"] + index) % len(names)])
            slot = session.current if session is not None else None
            if slot is None:
                await asyncio.sleep(0.001)
                continue
            await slot.calls.IsConnected(slot.uuid.encode())
            counts["calls"] += 1

    async def sample() -> int:
        await asyncio.sleep(float(seconds) / 4)
        return _counts()[0]

    jobs = [reconnecting(f"r{i}") for i in range(16)] + [calling(i) for i in range(12)]
    early, *_ = await asyncio.gather(sample(), *jobs)
    await asyncio.sleep(0.3)
    threads_after, _ = _counts()
    await engine.aclose()
    return counts | {
        "threads_before": threads_before,
        "threads_early": early,
        "threads_after": threads_after,
    }


async def scenario_hygiene() -> dict[str, Any]:
    import logging

    root = logging.getLogger()
    before = ([type(h).__name__ for h in root.handlers], root.level)
    from wagate.engine.neonize import _loader as nz

    after = ([type(h).__name__ for h in root.handlers], root.level)
    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger("wagate.engine.neonize.go").addHandler(handler)
    logging.getLogger("wagate.engine.neonize.go").setLevel(logging.DEBUG)
    nz.capture_go_stdout()
    nz.aioze_client.gocode.SendMessage(b"nobody", b"\xff", 1, b"", 0)  # Go prints to fd 1
    print("hello from python", flush=True)
    await asyncio.sleep(0.3)  # the forwarder thread reads the pipe
    return {
        "root_handlers_before": before[0],
        "root_handlers_after": after[0],
        "root_level_before": before[1],
        "root_level_after": after[1],
    }


def _main(argv: list[str]) -> None:
    scenario = globals()[f"scenario_{argv[0]}"]
    report = asyncio.run(scenario(*argv[1:]))
    print(json.dumps(report), flush=True)
    threading.Event().wait(0.2)  # let the stdout forwarder flush, if one runs


if __name__ == "__main__":
    _main(sys.argv[1:])
