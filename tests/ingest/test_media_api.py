"""``GET /api/media/{id}``: stored media is never served as something a browser runs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from wagate.roles.serve import Gateway
from wagate.storage.repos.media import MediaRepo


async def _stored(gateway: Gateway, tmp_path: Path, data: bytes, mime: str, ext: str) -> int:
    sha = hashlib.sha256(data).hexdigest()
    key = f"wa-media/{sha}/original.{ext}"
    source = tmp_path / f"upload.{ext}"
    source.write_bytes(data)
    await gateway.blobs.put_file(key, source, mime)
    media = await MediaRepo(gateway.db, gateway.clock).insert_if_absent(
        sha256=sha, mime=mime, size=len(data), storage_path=key
    )
    return media.id


@pytest.mark.parametrize(
    ("mime", "ext", "disposition"),
    [
        ("image/png", "png", "inline"),
        ("video/mp4", "mp4", "inline"),
        ("audio/ogg; codecs=opus", "ogg", "inline"),
        ("image/svg+xml", "svg", "attachment"),
        ("text/html", "html", "attachment"),
        ("application/xhtml+xml", "xhtml", "attachment"),
        ("application/pdf", "pdf", "attachment"),
        ("application/octet-stream", "bin", "attachment"),
    ],
)
async def test_media_is_served_nosniff_and_active_types_as_attachments(
    api: httpx.AsyncClient,
    gateway: Gateway,
    tmp_path: Path,
    mime: str,
    ext: str,
    disposition: str,
) -> None:
    data = b"<svg onload=alert(1)><script>alert(document.cookie)</script></svg>" + ext.encode()
    media_id = await _stored(gateway, tmp_path, data, mime, ext)
    r = await api.get(f"/api/media/{media_id}")
    assert r.status_code == 200 and r.content == data
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-disposition"].split(";", 1)[0] == disposition
