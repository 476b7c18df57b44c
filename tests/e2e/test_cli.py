"""The CLI as a user runs it: sessions commands against a running gateway, clear failures."""

from __future__ import annotations

import json
import signal
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DatabaseFactory
from tests.e2e.conftest import clean_env, free_port, poll, run_cli

pytestmark = pytest.mark.e2e


def test_sessions_commands(databases: DatabaseFactory, tmp_path: Path, procs: Any) -> None:
    port = free_port()
    env = clean_env(
        WAGATE_DATA_DIR=tmp_path / "data", DATABASE_URL=databases.new(), PORT=port, API_KEY="k1"
    )
    procs(["serve", "--engine", "sandbox"], env, "gateway").wait_http(
        f"http://127.0.0.1:{port}/healthz"
    )
    created = run_cli(["sessions", "create", "--id", "cli-1", "--phone", "+972501234567"], env)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "cli-1"

    qr = poll(lambda: _ok(run_cli(["sessions", "qr", "cli-1"], env)))
    assert "2@" in qr.stdout and "█" in qr.stdout  # drawn with block characters

    status = json.loads(run_cli(["sessions", "status", "cli-1"], env).stdout)
    assert (status["id"], status["status"], status["phone"]) == (
        "cli-1",
        "qr_ready",
        "972501234567",
    )

    listed = run_cli(["sessions", "list"], env)
    assert listed.returncode == 0 and "cli-1" in listed.stdout

    scan = run_cli(["sandbox", "scan", "cli-1", "--phone", "972501234567"], env)
    assert scan.returncode == 0, scan.stderr
    poll(lambda: json.loads(run_cli(["sessions", "status", "cli-1"], env).stdout)["isConnected"])

    deleted = run_cli(["sessions", "delete", "cli-1"], env)
    assert deleted.returncode == 0 and "deleted cli-1" in deleted.stdout
    missing = run_cli(["sessions", "status", "cli-1"], env)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: 404: session 'cli-1' not found"


def _ok(result: Any) -> Any:
    return result if result.returncode == 0 else None


def test_a_bad_setting_stops_start_up_with_one_line(tmp_path: Path) -> None:
    env = clean_env(WAGATE_DATA_DIR=tmp_path / "data", WORKER_BACKOFF_MAX_MS="soon")
    result = run_cli(["serve"], env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: invalid setting WORKER_BACKOFF_MAX_MS (got 'soon'): "
        "Input should be a valid integer, unable to parse string as an integer"
    ]


def test_unreachable_gateway_is_a_clear_error(tmp_path: Path) -> None:
    env = clean_env(WAGATE_DATA_DIR=tmp_path / "data", API_KEY="k", PORT=free_port())
    result = run_cli(["sessions", "list"], env)
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach the gateway at http://127.0.0.1:")


def test_migrate(databases: DatabaseFactory, tmp_path: Path) -> None:
    env = clean_env(WAGATE_DATA_DIR=tmp_path / "data", DATABASE_URL=databases.new())
    result = run_cli(["migrate"], env)
    assert result.returncode == 0, result.stderr
    assert "database is up to date" in result.stdout
    fresh = clean_env(WAGATE_DATA_DIR=tmp_path / "fresh")
    assert run_cli(["migrate"], fresh).returncode == 0
    assert (tmp_path / "fresh" / "wagate.db").is_file()


class _Recorder(BaseHTTPRequestHandler):
    """A stand-in gateway that answers every request with ``{}`` and remembers its path."""

    seen: list[str] = []

    def _answer(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        body = b'{"id": "x", "qr": "2@x"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_DELETE = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    "args",
    [
        ["sessions", "delete", "shop/../lo1"],
        ["sessions", "status", "x?y"],
        ["sessions", "qr", "x#y"],
        ["sessions", "status", "abc\n"],
        ["sandbox", "scan", "../lo1", "--phone", "6281234567890"],
    ],
)
def test_a_session_id_is_checked_before_any_request(
    tmp_path: Path, recorder: tuple[str, list[str]], args: list[str]
) -> None:
    url, seen = recorder
    env = clean_env(WAGATE_DATA_DIR=tmp_path / "data", API_KEY="k", WAGATE_URL=url)
    result = run_cli(args, env)
    assert result.returncode == 1
    assert result.stderr.startswith("error: invalid session id "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert seen == []


def test_a_good_session_id_reaches_its_own_path(
    tmp_path: Path, recorder: tuple[str, list[str]]
) -> None:
    url, seen = recorder
    env = clean_env(WAGATE_DATA_DIR=tmp_path / "data", API_KEY="k", WAGATE_URL=url)
    assert run_cli(["sessions", "delete", "shop.1"], env).returncode == 0
    assert run_cli(["sessions", "status", "a..b"], env).returncode == 0
    assert seen == ["DELETE /api/sessions/shop.1", "GET /api/sessions/a..b/status"]


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("AUTH_DIR", "/proc/x", "error: cannot create AUTH_DIR folder /proc/x: "),
        ("WAGATE_DATA_DIR", "{file}", "error: cannot create WAGATE_DATA_DIR folder {file}: "),
        ("SESSIONS_DIR", "{file}/sub", "error: cannot create SESSIONS_DIR folder {file}/sub: "),
    ],
)
def test_a_bad_folder_stops_start_up_with_one_line(
    tmp_path: Path, variable: str, value: str, needle: str
) -> None:
    file = tmp_path / "a-file"
    file.write_text("x")
    env = clean_env(WAGATE_DATA_DIR=tmp_path / "data", PORT=free_port(), API_KEY="k")
    env[variable] = value.format(file=file)
    result = run_cli(["serve", "--engine", "sandbox"], env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(needle.format(file=file)), result.stderr


def test_a_port_in_use_stops_start_up_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_env(WAGATE_DATA_DIR=tmp_path / "data", PORT=port, API_KEY="k")
        result = run_cli(["serve", "--engine", "sandbox"], env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port} (PORT, HOST): address already in use"
    ]


def test_serve_listens_on_worker_port(tmp_path: Path, procs: Any) -> None:
    port = free_port()
    env = clean_env(WAGATE_DATA_DIR=tmp_path / "data", WORKER_PORT=port, API_KEY="k")
    procs(["serve", "--engine", "sandbox"], env, "gateway").wait_http(
        f"http://127.0.0.1:{port}/healthz"
    )


def test_the_sandbox_server_listens_on_sandbox_port(tmp_path: Path, procs: Any) -> None:
    port = free_port()
    env = clean_env(WAGATE_DATA_DIR=tmp_path / "data", WAGATE_SANDBOX_PORT=port)
    procs(["sandbox"], env, "sandbox").wait_http(f"http://127.0.0.1:{port}/healthz")


def test_sigterm_stops_the_sandbox_server_after_it_saved_the_network(
    tmp_path: Path, procs: Any
) -> None:
    port, state = free_port(), tmp_path / "network.json"
    env = clean_env(
        WAGATE_DATA_DIR=tmp_path / "data",
        WAGATE_SANDBOX_URL=f"http://127.0.0.1:{port}",
        WAGATE_SANDBOX_KEY="net-key",
        API_KEY="net-key",
    )
    server = procs(["sandbox", "--port", str(port), "--state", str(state)], env, "sandbox")
    server.wait_http(f"http://127.0.0.1:{port}/healthz")
    sent = run_cli(
        ["sandbox", "send", "--from", "+15550001111", "--to", "+15550002222", "--text", "kept"], env
    )
    assert sent.returncode == 0, sent.stderr
    server.kill(signal.SIGTERM)  # at once: the network's delayed save is still pending
    assert server.popen.returncode == 0, server.output()
    assert "kept" in state.read_text("utf-8"), "the last change was saved before the exit"


def test_a_sandbox_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_env(WAGATE_DATA_DIR=tmp_path / "data", WAGATE_SANDBOX_PORT=port)
        result = run_cli(["sandbox"], env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port} (WAGATE_SANDBOX_PORT): address already in use"
    ]


def test_sigterm_stops_serve_in_order_and_the_next_start_resumes(
    databases: DatabaseFactory, tmp_path: Path, procs: Any
) -> None:
    port = free_port()
    env = clean_env(
        WAGATE_DATA_DIR=tmp_path / "data", DATABASE_URL=databases.new(), PORT=port, API_KEY="k"
    )
    base = f"http://127.0.0.1:{port}"
    first = procs(["serve", "--engine", "sandbox"], env, "gateway-1")
    first.wait_http(f"{base}/healthz")
    assert run_cli(["sessions", "create", "--id", "term"], env).returncode == 0
    poll(lambda: _ok(run_cli(["sessions", "qr", "term"], env)))
    scan = run_cli(["sandbox", "scan", "term", "--phone", "6281234567890"], env)
    assert scan.returncode == 0, scan.stderr
    poll(lambda: json.loads(run_cli(["sessions", "status", "term"], env).stdout)["isConnected"])

    first.kill(signal.SIGTERM)  # what a service manager sends
    # a clean exit, after the worker drained the session's link (not the signal's default death)
    assert first.popen.returncode == 0, first.output()
    assert "wagate.worker.runner.term: session rests in stopped" in first.output()

    # stopping the process is not stopping the session: the next start resumes it, no new QR
    second = procs(["serve", "--engine", "sandbox"], env, "gateway-2")
    second.wait_http(f"{base}/healthz")
    status = poll(lambda: _connected(run_cli(["sessions", "status", "term"], env)))
    assert status["phoneNumber"] == "6281234567890"


def _connected(result: Any) -> Any:
    status = json.loads(result.stdout) if result.returncode == 0 else {}
    return status if status.get("state") == "connected" else None
