"""Object storage behind one interface: a local folder (default), S3-compatible, or memory.

Keys are ``/``-separated relative paths (``wa-media/<sha256>/original.jpg``).
Writes take a local file (the ingest pipeline streams media to a temporary
file while hashing it) so an upload never holds a whole file in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, Protocol, Self

from wagate.errors import ConfigError, NotFound, TransientError
from wagate.files import write_atomic
from wagate.settings import StorageSettings

CHUNK = 256 * 1024


class BlobStore(Protocol):
    """Where media objects live."""

    name: str

    async def put_file(self, key: str, path: Path, content_type: str) -> None: ...

    async def exists(self, key: str) -> bool: ...

    def open(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes in chunks; :class:`~wagate.errors.NotFound` if absent."""
        ...

    async def delete(self, key: str) -> None: ...

    async def aclose(self) -> None: ...


def check_key(key: str) -> str:
    """Keys are relative and never climb (``..``): no object escapes its store."""
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts or "\\" in key:
        raise ValueError(f"invalid object key {key!r}")
    return key


class LocalBlobStore:
    """Objects as files under ``root``; writes land atomically (temp file, then rename)."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        await asyncio.to_thread(self._copy, path, self._path(key))

    @staticmethod
    def _copy(src: Path, dest: Path) -> None:
        with src.open("rb") as inp:
            write_atomic(dest, inp)

    async def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    async def open(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            fh = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise NotFound(f"object {key!r} not found") from None
        try:
            while chunk := await asyncio.to_thread(fh.read, CHUNK):
                yield chunk
        finally:
            fh.close()

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    async def aclose(self) -> None:
        return None


class MemoryBlobStore:
    """In-memory twin for tests; ``fail_puts`` makes the next N uploads fail transiently."""

    name = "memory"

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.fail_puts = 0
        self.puts = 0

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        self.puts += 1
        if self.fail_puts > 0:
            self.fail_puts -= 1
            raise TransientError("storage unavailable (test)")
        self.objects[check_key(key)] = (await asyncio.to_thread(path.read_bytes), content_type)

    async def exists(self, key: str) -> bool:
        return key in self.objects

    async def open(self, key: str) -> AsyncIterator[bytes]:
        if key not in self.objects:
            raise NotFound(f"object {key!r} not found")
        data = self.objects[key][0]
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    async def aclose(self) -> None:
        return None


class S3BlobStore:
    """An S3-compatible bucket (AWS S3, MinIO, Supabase Storage) through aiobotocore."""

    name = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        access_key: str | None,
        secret_key: str | None,
        region: str | None = None,
        create_bucket: bool = True,
    ) -> None:
        self.bucket = bucket
        self._config = {
            "endpoint_url": endpoint_url,
            "aws_access_key_id": access_key,
            "aws_secret_access_key": secret_key,
            "region_name": region or "us-east-1",
        }
        self._create_bucket = create_bucket
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def __aenter__(self) -> Self:
        from aiobotocore.session import get_session

        self._client = await self._stack.enter_async_context(
            get_session().create_client("s3", **self._config)
        )
        if self._create_bucket:
            await self._ensure_bucket()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            await self._client.head_bucket(Bucket=self.bucket)
        except ClientError:
            try:
                await self._client.create_bucket(Bucket=self.bucket)
            except ClientError as exc:
                raise ConfigError(f"cannot use bucket {self.bucket!r}: {_code(exc)}") from None

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        body = await asyncio.to_thread(open, path, "rb")
        try:
            await self._client.put_object(
                Bucket=self.bucket, Key=check_key(key), Body=body, ContentType=content_type
            )
        except (ClientError, BotoCoreError) as exc:
            raise TransientError(f"upload of {key!r} failed: {_code(exc)}") from None
        finally:
            body.close()

    async def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            await self._client.head_object(Bucket=self.bucket, Key=check_key(key))
        except ClientError:
            return False
        return True

    async def open(self, key: str) -> AsyncIterator[bytes]:
        from botocore.exceptions import ClientError

        try:
            response = await self._client.get_object(Bucket=self.bucket, Key=check_key(key))
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                raise NotFound(f"object {key!r} not found") from None
            raise TransientError(f"download of {key!r} failed: {_code(exc)}") from None
        async with response["Body"] as stream:
            while chunk := await stream.read(CHUNK):
                yield chunk

    async def delete(self, key: str) -> None:
        await self._client.delete_object(Bucket=self.bucket, Key=check_key(key))

    async def aclose(self) -> None:
        await self._stack.aclose()


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", type(exc).__name__))
    return type(exc).__name__


def blob_store(settings: StorageSettings) -> LocalBlobStore | S3BlobStore:
    """The configured store (not yet opened: S3 needs ``async with``)."""
    if settings.blob_backend == "s3":
        return S3BlobStore(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            region=settings.s3_region,
        )
    return LocalBlobStore(settings.media_root)
