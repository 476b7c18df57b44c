"""The neonize engine on the real Go library, with no way out to WhatsApp.

Each scenario runs in its own Python process (this file doubles as the
script: ``python -m tests.engine.test_neonize_offline <scenario>``), so a Go
``fatal error`` fails the test instead of killing pytest. The child's
environment points ``HTTPS_PROXY`` at a closed local port, which whatsmeow
honours: every dial fails at once, on any machine, network or not. Or at a
black hole (the local proxy ``bench/engine_memory.py`` uses: it accepts and
never answers), where every dial hangs and holds its thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.neonize_real

ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A local proxy that accepts connections and never answers: dials through it hang."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(256)
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    yield int(server.getsockname()[1])
    server.close()
    for conn in held:
        conn.close()


def start_child(name: str, *args: str, https_proxy: str | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HTTPS_PROXY"] = env["https_proxy"] = https_proxy or f"http://127.0.0.1:{closed_port()}"
    return subprocess.Popen(
        [sys.executable, "-m", "tests.engine.test_neonize_offline", name, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_scenario(
    name: str, *args: str, timeout_s: float = 50, https_proxy: str | None = None
) -> dict[str, Any]:
    """Run one scenario in a child process; its last stdout line is a JSON report."""
    started = time.monotonic()
    child = start_child(name, *args, https_proxy=https_proxy)
    try:
        stdout, stderr = child.communicate(timeout=timeout_s)
    finally:
        child.kill()
    assert "fatal error" not in stderr, stderr[-3000:]
    assert child.returncode == 0, f"{name} died ({child.returncode}):\n{stderr[-3000:]}"
    report: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    report["stdout"], report["stderr"] = stdout, stderr
    report["process_s"] = time.monotonic() - started
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


def test_twenty_sessions_each_start_their_client_and_calls_still_flow(black_hole: int) -> None:
    report = run_scenario("twenty", https_proxy=f"http://127.0.0.1:{black_hole}")
    assert report["opened"] == 20 and report["started"] == 20, report
    assert report["running"] == 20, "every client's dial hangs in Go, holding its thread"
    assert report["threads_held"] >= 20
    assert report["answers"] == 41, "ordinary calls (and the loop's executor) still answer"


def test_a_dial_stalled_in_a_proxy_ends_at_the_dial_deadline(black_hole: int) -> None:
    report = run_scenario("deadline", str(black_hole), https_proxy=f"http://127.0.0.1:{black_hole}")
    # socks5 through the session's proxy; HTTP through HTTPS_PROXY (no proxy of the session)
    assert report["kinds"] == ["proxy_error", "connection_lost"], report
    assert "did not get through" in report["reasons"][0]
    assert report["health"]["clientsSetAside"] == 2, "a stalled dial can only be set aside"


def test_a_go_call_stuck_forever_does_not_hold_the_process_exit() -> None:
    report = run_scenario("stuck_call", timeout_s=40)
    assert report == report | {"error": "TransientError", "in_go": True}
    assert report["process_s"] < 30, "exit waited on the thread stuck in Go"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("run", [1, 2])
def test_churn_of_starts_stops_and_calls_leaves_the_process_alive(run: int) -> None:
    report = run_scenario("churn", "300", "1500", timeout_s=80)
    assert report["reconnects"] >= 300 and report["calls"] >= 1500, report
    # threads follow concurrency (a call thread per caller), not the number of reconnects
    assert report["threads_after"] <= report["threads_early"] + 4, report


def test_importing_neonize_leaves_logging_and_the_output_alone() -> None:
    report = run_scenario("hygiene")
    assert report["root_handlers_before"] == report["root_handlers_after"]
    assert report["root_level_before"] == report["root_level_after"]
    printed = report["stdout"].strip().splitlines()[:-1]  # the last line is the report
    assert "hello from python" in printed
    assert not any("SendMessage:" in line for line in printed), "Go's print reached stdout"
    records = report["go_records"]  # Go's prints, as the scenario's handler logged them
    assert "go: Press Ctrl+C to exit" in records  # logged, at debug
    assert any(r.startswith("go: SendMessage: Error unmarshaling JID") for r in records)
    # Two threads write stderr (the logged records, the scenario's own print), so their
    # bytes may interleave; each record is one write, so take them out whole first.
    rest = report["stderr"]
    for record in records:
        assert record + "\n" in rest, f"{record!r} did not reach stderr whole"
        rest = rest.replace(record + "\n", "", 1)
    lines = rest.splitlines()
    assert "python on stderr" in lines
    assert "Press Ctrl+C to exit" not in lines, "Go's print reached stderr"
    assert not any(line.startswith(("go: ", "SendMessage:")) for line in lines), lines


def test_a_go_crash_report_reaches_stderr_whole_when_its_output_is_filtered() -> None:
    child = start_child("crash")
    _, stderr = child.communicate(timeout=50)
    assert child.returncode != 0
    assert "panic: runtime error: invalid memory address or nil pointer dereference" in stderr
    assert "goroutine " in stderr and "main.GetMe" in stderr, stderr


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
    from wagate.storage.auth_state import FileAuthStore

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
    from wagate.storage.auth_state import FileAuthStore

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


class _AnyCall:
    """A call owner that allows every call: for calls that need no client of ours."""

    def check(self, name: str) -> None:
        return None

    def starting(self, hold: Any) -> None:
        hold.release()

    def stop_stuck(self) -> None:
        return None


async def scenario_twenty() -> dict[str, Any]:
    """Twenty clients whose dials hang in Go, and calls beside them."""
    from wagate.engine.base import LinkOptions
    from wagate.engine.neonize.calls import GoCalls
    from wagate.storage.auth_state import FileAuthStore

    engine = _engine(max_sessions=20, start_window_s=0.1, dial_deadline_s=300, stop_timeout_s=0.5)
    root = Path(tempfile.mkdtemp())
    threads_before, _ = _counts()
    links = [engine.link(FileAuthStore(root, f"s{i}"), LinkOptions()) for i in range(20)]
    opened = await asyncio.gather(*(link.__aenter__() for link in links))
    probe = GoCalls(engine.runtime, _AnyCall(), "probe")  # Go answers without a client
    answers = await asyncio.wait_for(  # while the starts still pass the gate one by one
        asyncio.gather(
            *(probe.SendMessage(b"nobody", b"\xff", 1, b"", 0) for _ in range(40)),
            asyncio.to_thread(lambda: "the loop's executor"),
        ),
        30,
    )
    async with asyncio.timeout(30):
        while engine.runtime.stats.starts < 20:  # noqa: ASYNC110 - counted by the engine
            await asyncio.sleep(0.02)
    report = {
        "opened": len(opened),
        "started": engine.runtime.stats.starts,
        "running": sum(session.running() for session in engine.sessions.values()),
        "threads_held": _counts()[0] - threads_before,
        "answers": len(answers),
    }
    await asyncio.gather(*(link.__aexit__(None, None, None) for link in links))
    await engine.aclose()
    return report


async def scenario_deadline(port: str) -> dict[str, Any]:
    """Dials into a proxy that never answers: the link ends at the dial deadline."""
    from wagate.engine.base import Disconnected, LinkOptions
    from wagate.storage.auth_state import FileAuthStore

    engine = _engine(start_window_s=0.2, dial_deadline_s=1.0, stop_timeout_s=0.5)
    root = Path(tempfile.mkdtemp())
    ends: list[Disconnected] = []
    for name, proxy in (("via-socks", f"socks5://127.0.0.1:{port}"), ("via-env", None)):
        async with engine.link(FileAuthStore(root, name), LinkOptions(proxy=proxy)) as link:
            async with asyncio.timeout(20):
                ends += [event async for event in link.events() if isinstance(event, Disconnected)]
    health = engine.health()
    await engine.aclose()
    return {
        "kinds": [end.kind.value for end in ends],
        "reasons": [end.reason for end in ends],
        "health": health,
    }


async def scenario_stuck_call() -> dict[str, Any]:
    """A call into Go that never returns; then the engine closes and the process must exit."""
    from wagate.engine.neonize import _loader as nz
    from wagate.engine.neonize.calls import GoCalls
    from wagate.errors import TransientError

    in_go = threading.Event()

    class StuckFFI:  # neonize's FFI object, whose one call hangs the way a media transfer can
        def IsConnected(self, uuid: bytes) -> bool:
            in_go.set()
            threading.Event().wait()
            return False

    engine = _engine(call_timeout_s=0.5)
    nz.aioze_client.gocode = StuckFFI()
    error = None
    try:
        await GoCalls(engine.runtime, _AnyCall(), "probe").IsConnected(b"probe")
    except TransientError as exc:
        error = type(exc).__name__
    await engine.aclose()
    return {"error": error, "in_go": in_go.is_set()}


async def scenario_crash() -> dict[str, Any]:
    """Go dies (GetMe on a client that does not exist) while its output is filtered."""
    from wagate.engine.neonize import _loader as nz

    nz.capture_go_output()
    nz.aioze_client.gocode.GetMe(b"nobody")
    return {"survived": True}


async def scenario_churn(reconnects: str, calls: str) -> dict[str, Any]:
    """Sessions reconnect again and again while others call into Go, until both counts are met.

    The work is counted, not timed: a slow machine takes longer, it does not do less.
    """
    from wagate.storage.auth_state import FileAuthStore

    engine = _engine(connect_backoff_base_s=0.001, connect_backoff_max_s=0.004, max_sessions=40)
    root = Path(tempfile.mkdtemp())
    await _attempt(engine, FileAuthStore(root, "warmup"))
    threads_before, _ = _counts()
    goal = {"reconnects": int(reconnects), "calls": int(calls)}
    counts = {"reconnects": 0, "calls": 0}
    quarter = asyncio.Event()

    def done() -> bool:
        if all(counts[k] * 4 >= goal[k] for k in goal):
            quarter.set()
        return all(counts[k] >= goal[k] for k in goal)

    async def reconnecting(name: str) -> None:
        auth = FileAuthStore(root, name)
        while not done():
            await _attempt(engine, auth)
            counts["reconnects"] += 1

    async def calling(index: int) -> None:
        names = [f"r{i}" for i in range(16)]
        while not done():
            session = engine.sessions.get(names[(counts["calls"] + index) % len(names)])
            slot = session.current if session is not None else None
            if slot is None:
                await asyncio.sleep(0.001)
                continue
            await slot.calls.IsConnected(slot.uuid.encode())
            counts["calls"] += 1

    async def sample() -> int:
        await quarter.wait()  # a quarter of the way: the pools have grown to their size
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
    seen: list[str] = []

    class Recorded(logging.StreamHandler):  # type: ignore[type-arg]
        def emit(self, record: logging.LogRecord) -> None:
            super().emit(record)  # one write of the whole line, then noted as written
            seen.append(self.format(record))

    handler = Recorded(sys.stderr)
    handler.setFormatter(logging.Formatter("go: %(message)s"))
    go_log = logging.getLogger("wagate.engine.neonize.go")
    go_log.addHandler(handler)
    go_log.setLevel(logging.DEBUG)
    nz.capture_go_output()
    nz.aioze_client.gocode.SendMessage(b"nobody", b"\xff", 1, b"", 0)  # Go prints to fd 1
    os.write(2, b"Press Ctrl+C to exit\n")  # what Go's println writes to fd 2 at each link-up
    print("hello from python", flush=True)
    print("python on stderr", file=sys.stderr, flush=True)
    async with asyncio.timeout(10):  # the forwarders read their pipes
        while len(seen) < 2:  # noqa: ASYNC110 - filled by the forwarder threads
            await asyncio.sleep(0.01)
    return {
        "root_handlers_before": before[0],
        "root_handlers_after": after[0],
        "root_level_before": before[1],
        "root_level_after": after[1],
        "go_records": list(seen),
    }


def _main(argv: list[str]) -> None:
    scenario = globals()[f"scenario_{argv[0]}"]
    report = asyncio.run(scenario(*argv[1:]))
    print(json.dumps(report), flush=True)
    threading.Event().wait(0.2)  # let the stdout forwarder flush, if one runs


if __name__ == "__main__":
    _main(sys.argv[1:])
