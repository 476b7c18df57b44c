"""A real HTTP server on 127.0.0.1 serving fixed answers, counting what it was asked."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GATE_WAIT_S = 30.0  # a gated answer waits at most this long for the test to open the gate


@dataclass(frozen=True)
class Answer:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    gated: bool = False  # held back until the site's gate opens


@dataclass
class Site:
    """What the server answers (by path), what it was asked, and a gate for held answers."""

    routes: dict[str, Answer]
    url: str = ""
    hits: Counter[str] = field(default_factory=Counter)
    gate: threading.Event = field(default_factory=threading.Event)
    waiting: threading.Event = field(default_factory=threading.Event)  # a held request came


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            site.hits[self.path] += 1
            answer = site.routes.get(self.path, Answer(b"not here", "text/plain", 404))
            if answer.gated:
                site.waiting.set()
                site.gate.wait(GATE_WAIT_S)
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(answer.body)

        def log_message(self, *args: Any) -> None:
            return None

    return Handler


@contextlib.contextmanager
def serve(routes: dict[str, Answer]) -> Iterator[Site]:
    site = Site(routes)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    site.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield site
    finally:
        site.gate.set()
        server.shutdown()
        server.server_close()
        thread.join()
