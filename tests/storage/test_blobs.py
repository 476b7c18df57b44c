"""Blob stores: the local folder and a real S3-compatible server (moto's, or CI's)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wagate.errors import NotFound
from wagate.settings import load_settings
from wagate.storage.blobs import BlobStore, LocalBlobStore, S3BlobStore, blob_store, check_key


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
    assert isinstance(blob_store(s.storage), S3BlobStore)
    monkeypatch.setenv("WAGATE_STORAGE", "local")
    assert isinstance(blob_store(load_settings().storage), LocalBlobStore)
