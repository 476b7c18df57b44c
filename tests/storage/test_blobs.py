"""Blob stores: the local folder and a real S3-compatible server (moto's, or CI's)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from wagate.errors import NotFound
from wagate.settings import load_settings
from wagate.storage.blobs import BlobStore, LocalBlobStore, S3BlobStore, blob_store, check_key


@pytest.fixture(scope="session")
def s3_url() -> Iterator[str]:
    """CI's S3 server (``WAGATE_TEST_S3_URL``), or a moto server started for this run."""
    given = os.environ.get("WAGATE_TEST_S3_URL")
    if given:
        yield given
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with httpx.Client(timeout=1) as client:
                client.get(url)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"S3 server at {url} did not start")


@pytest.fixture(params=["local", "s3"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, s3_url: str
) -> AsyncIterator[BlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "media")
        return
    s3 = S3BlobStore(
        bucket=f"wagate-{secrets.token_hex(4)}",
        endpoint_url=s3_url,
        access_key="test",
        secret_key="test",
    )
    async with s3:
        yield s3


async def _read(store: BlobStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.open(key)])


async def test_put_read_exists_delete(store: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    data = os.urandom(700_000)  # several chunks
    src.write_bytes(data)
    key = "wa-media/abc/original.bin"
    assert not await store.exists(key)
    await store.put_file(key, src, "application/octet-stream")
    assert await store.exists(key)
    assert await _read(store, key) == data
    await store.put_file(key, src, "application/octet-stream")  # idempotent overwrite
    await store.delete(key)
    assert not await store.exists(key)
    with pytest.raises(NotFound):
        await _read(store, key)


@pytest.mark.parametrize("key", ["", "/abs", "../up", "a/../../b", "a\\b"])
def test_keys_cannot_escape(key: str) -> None:
    with pytest.raises(ValueError):
        check_key(key)


def test_s3_is_chosen_by_minio_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIO_ENDPOINT", "minio:9000")
    monkeypatch.setenv("MINIO_USE_SSL", "true")
    monkeypatch.setenv("MINIO_BUCKET_NAME", "whatsapp-sessions")
    s = load_settings()
    assert (s.blob_backend, s.s3_endpoint_url, s.s3_bucket) == (
        "s3",
        "https://minio:9000",
        "whatsapp-sessions",
    )
    assert isinstance(blob_store(s), S3BlobStore)
    monkeypatch.setenv("WAGATE_STORAGE", "local")
    assert isinstance(blob_store(load_settings()), LocalBlobStore)
