"""Media by URL (fetched from a real local HTTP server), by multipart upload, and the spool."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.outbound.conftest import ALICE, Rig, RigFactory
from wagate.domain.message import MessageKind
from wagate.errors import InvalidInput
from wagate.outbound.media_fetch import MediaFetcher, MediaTooLarge
from wagate.testing import eventually

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
CAP = 4096


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        routes = {
            "/cat.jpg": lambda: self._send(200, JPEG, "image/jpeg"),
            "/report": lambda: self._send(200, b"%PDF-1.4 ...", "application/pdf; charset=binary"),
            "/hop": lambda: self._redirect("/cat.jpg"),
            "/loop": lambda: self._redirect("/loop"),
            "/big": lambda: self._send(200, b"x" * (CAP + 1), "image/jpeg"),
            "/big-chunked": self._chunked,
            "/missing": lambda: self._send(404, b"nope", "text/plain"),
        }
        routes.get(self.path, lambda: self._send(404, b"", "text/plain"))()

    def _send(self, status: int, body: bytes, mime: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", mime)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, to: str) -> None:
        self.send_response(302)
        self.send_header("Location", to)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _chunked(self) -> None:
        # no Content-Length: only counting the streamed bytes can stop this one
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for _ in range(64):
                chunk = b"y" * 1024
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def media_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


async def test_media_by_url_is_fetched_and_sent(make_rig: RigFactory, media_server: str) -> None:
    rig = await make_rig(allow_private_urls=True, send_media_max_bytes=CAP)
    link = await rig.connect()
    r = await rig.send(type="image", media={"url": f"{media_server}/hop"}, caption="cat")
    assert r.status_code == 201, r.text
    await eventually(lambda: len(link.sent) == 1)
    (out,) = link.sent
    assert out.media is not None
    assert (out.media.data, out.media.mimetype, out.media.filename) == (
        JPEG,
        "image/jpeg",
        "cat.jpg",
    )
    r = await rig.send(type="document", media={"url": f"{media_server}/report"})
    assert r.status_code == 201, r.text
    await eventually(lambda: len(link.sent) == 2)
    doc = link.sent[1].media
    assert doc is not None and (doc.mimetype, doc.filename) == ("application/pdf", "report")


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/big", "larger than the limit"),
        ("/big-chunked", "larger than the limit"),
        ("/missing", "HTTP 404"),
        ("/loop", "redirected more than"),
    ],
)
async def test_media_url_failures_name_the_field(
    make_rig: RigFactory, media_server: str, path: str, words: str
) -> None:
    rig = await make_rig(allow_private_urls=True, send_media_max_bytes=CAP)
    await rig.create()
    r = await rig.send(type="image", media={"url": media_server + path})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "media.url"
    assert words in r.json()["error"]["message"]


async def test_a_dead_url_is_a_4xx(make_rig: RigFactory) -> None:
    rig = await make_rig(allow_private_urls=True)
    await rig.create()
    r = await rig.send(type="image", media={"url": "http://127.0.0.1:9/cat.jpg"})
    assert r.status_code == 422
    assert "could not be fetched" in r.json()["error"]["message"]


async def test_every_redirect_hop_is_checked() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/meta-data"})

    fetcher = MediaFetcher(max_bytes=CAP, timeout_s=5, transport=httpx.MockTransport(answer))
    with pytest.raises(InvalidInput) as caught:
        await fetcher.fetch("http://93.184.216.34/cat.jpg", "media.url")
    assert "169.254.169.254" in caught.value.message


class Rebinding(httpx.AsyncHTTPTransport):
    """Connects every request to ``target`` instead: a DNS answer that changed under us."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = httpx.URL(target)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url.copy_with(host=self.target.host, port=self.target.port)
        moved = httpx.Request(
            request.method, url, headers=request.headers, extensions=request.extensions
        )
        return await super().handle_async_request(moved)


async def test_the_connected_address_is_checked_too(media_server: str) -> None:
    # as if DNS said "public" to our check and "127.0.0.1" to the client a moment later
    fetcher = MediaFetcher(max_bytes=CAP * 10, timeout_s=5, transport=Rebinding(media_server))
    with pytest.raises(InvalidInput) as caught:
        await fetcher.fetch("http://93.184.216.34/cat.jpg", "media.url")
    assert "internal address (127.0.0.1)" in caught.value.message


async def test_the_deadline_covers_the_whole_fetch() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()  # never answers: only the deadline ends the fetch
        raise AssertionError("unreachable")

    fetcher = MediaFetcher(max_bytes=CAP, timeout_s=0.05, transport=httpx.MockTransport(slow))
    with pytest.raises(InvalidInput) as caught:
        await fetcher.fetch("http://93.184.216.34/x", "media.url")
    assert "within 0.05s" in caught.value.message
    assert not isinstance(caught.value, MediaTooLarge)


async def test_multipart_upload(rig: Rig) -> None:
    link = await rig.connect()
    r = await rig.api.post(
        "/api/sessions/s1/messages",
        data={"to": ALICE, "type": "document", "caption": "invoice", "mentions": "+6281111111111"},
        files={"file": ("invoice.pdf", b"%PDF-1.7 upload", "application/pdf")},
    )
    assert r.status_code == 201, r.text
    await eventually(lambda: len(link.sent) == 1)
    (out,) = link.sent
    assert out.kind is MessageKind.DOCUMENT and out.text == "invoice"
    assert out.media is not None
    assert (out.media.data, out.media.mimetype, out.media.filename) == (
        b"%PDF-1.7 upload",
        "application/pdf",
        "invoice.pdf",
    )
    assert out.mentions == (f"{ALICE}@s.whatsapp.net",)


async def test_multipart_with_json_fields_and_idempotency(rig: Rig) -> None:
    await rig.create()
    form = {"to": ALICE, "type": "location", "location": '{"latitude": 1.5, "longitude": 2.5}'}
    first = await rig.api.post("/api/sessions/s1/messages", data={**form, "idempotencyKey": "f"})
    again = await rig.api.post("/api/sessions/s1/messages", data={**form, "idempotencyKey": "f"})
    assert (first.status_code, again.status_code) == (201, 200)
    bad = await rig.api.post("/api/sessions/s1/messages", data={**form, "location": "{oops"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "location"


async def test_multipart_upload_too_large(make_rig: RigFactory) -> None:
    rig = await make_rig(send_media_max_bytes=100)
    await rig.create()
    r = await rig.api.post(
        "/api/sessions/s1/messages",
        data={"to": ALICE, "type": "document"},
        files={"file": ("big.bin", b"z" * 101, "application/octet-stream")},
    )
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "file"


async def test_large_media_waits_in_the_outbox_and_is_removed_after_sending(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(outbox_inline_max_bytes=8)
    await rig.create()
    big = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB"
    small = "iVBORw0K"
    queued = [(await rig.send(type="image", media={"base64": b})).json() for b in (big, small)]
    outbox = rig.gateway.settings.data_dir / "outbox" / "s1"
    assert [p.name for p in outbox.iterdir()] == [f"{queued[0]['messageId']}.bin"]
    link = await rig.connect()
    await eventually(lambda: len(link.sent) == 2)
    for q in queued:
        await rig.wait_status(q["id"], "sent")
    assert list(outbox.iterdir()) == []
    row = await rig.gateway.messages.find("s1", str(queued[1]["id"]))
    assert row is not None and row.payload is not None
    assert "data" not in row.payload["media"]  # the bytes are gone from the row too
    assert (await rig.get(queued[0]["id"]))["media"]["size"] > 8
