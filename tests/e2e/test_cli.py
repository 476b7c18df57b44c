"""The CLI as a user runs it: sessions commands against a running gateway, clear failures."""

from __future__ import annotations

import json
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
