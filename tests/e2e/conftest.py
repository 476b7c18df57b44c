"""Run ``wagate`` as a user would: real processes, real ports, the installed console script."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

WAGATE = str(Path(sys.executable).parent / "wagate")
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**values: Any) -> dict[str, str]:
    """Only what a user's shell would carry, plus the given variables: no WAGATE_* leaks in."""
    env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
    env.update({k: str(v) for k, v in values.items()})
    return env


class Proc:
    """A ``wagate`` process whose output goes to a file the test can read."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.log = log
        self._out = log.open("ab")
        self.popen = subprocess.Popen(
            [WAGATE, *args], env=env, stdout=self._out, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        return self.log.read_text("utf-8", errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            self.popen.wait(timeout=20)
        self._out.close()

    def wait_http(self, url: str, limit_s: float = 30.0) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise AssertionError(f"wagate {self.args} exited:\n{self.output()}")
            try:
                with httpx.Client(timeout=1) as client:
                    if client.get(url).status_code == 200:
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{url} did not answer in {limit_s}s:\n{self.output()}")


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Any]:
    started: list[Proc] = []

    def start(args: list[str], env: dict[str, str], name: str) -> Proc:
        proc = Proc(args, env, tmp_path / f"{name}.log")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill(signal.SIGTERM)


@pytest.fixture
def sandbox_url(tmp_path: Path, procs: Any) -> str:
    """A standalone ``wagate sandbox`` server (its state file in the test's folder)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    net = procs(
        ["sandbox", "--port", str(port), "--state", str(tmp_path / "network.json")],
        clean_env(WAGATE_DATA_DIR=tmp_path / "sandbox-data"),
        "sandbox",
    )
    net.wait_http(f"{url}/healthz")
    return url


@pytest.fixture
def clients() -> Iterator[Any]:
    """Register an httpx client to be closed when the test ends."""
    made: list[httpx.Client] = []

    def keep(client: httpx.Client) -> httpx.Client:
        made.append(client)
        return client

    yield keep
    for client in made:
        client.close()


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WAGATE, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def poll(fn: Any, limit_s: float = 15.0, every: float = 0.05) -> Any:
    """Call ``fn`` until it returns something truthy; return that."""
    deadline = time.monotonic() + limit_s
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"condition not met in {limit_s}s (last: {last!r})")
