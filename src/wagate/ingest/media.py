"""Media ingest (seed 003 §7): stream → sha256 → dedupe → object storage → ``media`` row.

The download is spooled to a temporary file while it is hashed, so memory
stays flat whatever the size, and the size guard stops a download the moment
it passes the limit. Dedupe is by content: a file already stored under its
sha256 is reused, and the unique ``media.sha256`` is the lock across processes
(upload first, then insert-if-absent: a crash never leaves a row without its
object, and two writers racing store the same bytes under the same key).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import mimetypes
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from wagate.domain.media import Media
from wagate.errors import WagateError
from wagate.media_types import detect
from wagate.storage.blobs import BlobStore
from wagate.storage.repos.media import MediaRepo

_HEAD = 8192
_BATCH = 1024 * 1024  # bytes written per thread hop
# seed 003: image/*, video/*, audio/*, application/pdf, application/*zip*; others only if small
_ALLOWED_PREFIXES = ("image/", "video/", "audio/")
_EXTENSIONS = {
    "image/jpeg": "jpg",
    "audio/ogg": "ogg",
    "audio/mpeg": "mp3",
    "video/mp4": "mp4",
    "application/octet-stream": "bin",
    "text/plain": "txt",
}


class MediaRejected(WagateError):
    """The media is not stored; ``code`` says why (``MEDIA_TOO_LARGE``, ``MEDIA_NOT_ALLOWED``)."""


@dataclass(frozen=True, slots=True)
class Spooled:
    path: Path
    sha256: str
    size: int
    head: bytes


@dataclass(frozen=True, slots=True)
class Stored:
    media: Media
    deduped: bool


def is_allowed(mime: str) -> bool:
    return (
        mime.startswith(_ALLOWED_PREFIXES)
        or mime == "application/pdf"
        or (mime.startswith("application/") and "zip" in mime)
    )


def detect_mime(declared: str | None, head: bytes, filename: str | None) -> str:
    """The metadata's mimetype, else the content's magic bytes, else the file extension."""
    if declared:
        return declared.split(";", 1)[0].strip().lower()
    sniffed = detect(head)
    if sniffed is not None:
        return sniffed
    guessed = mimetypes.guess_type(filename or "")[0]
    return guessed or "application/octet-stream"


def extension_for(mime: str, filename: str | None) -> str:
    if mime in _EXTENSIONS:
        return _EXTENSIONS[mime]
    guessed = mimetypes.guess_extension(mime, strict=False)
    if guessed:
        return guessed.lstrip(".")
    suffix = Path(filename or "").suffix.lstrip(".").lower()
    return suffix if suffix.isalnum() and len(suffix) <= 8 else "bin"


async def spool(chunks: AsyncIterator[bytes], limit: int, folder: Path) -> Spooled:
    """Write the stream to a temporary file while hashing it; stop past ``limit`` bytes.

    ``folder`` must exist. The file is written from a thread, a batch of
    chunks at a time, so a slow disk never stalls the event loop.
    """
    fd, name = tempfile.mkstemp(dir=folder, prefix=".spool.")
    digest, size, head = hashlib.sha256(), 0, b""
    batch: list[bytes] = []
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise MediaRejected(
                        f"media is larger than {limit} bytes", code="MEDIA_TOO_LARGE"
                    )
                digest.update(chunk)
                if len(head) < _HEAD:
                    head += chunk[: _HEAD - len(head)]
                batch.append(chunk)
                if sum(map(len, batch)) >= _BATCH:
                    await asyncio.to_thread(out.writelines, batch)
                    batch = []
            await asyncio.to_thread(out.writelines, batch)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise
    return Spooled(Path(name), digest.hexdigest(), size, head)


@dataclass(frozen=True, slots=True)
class MediaMeta:
    """What the message said about its media (seed 003: dimensions come from the payload)."""

    mimetype: str | None = None
    filename: str | None = None
    size: int | None = None
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None


class MediaStore:
    """Stores media once per distinct content."""

    def __init__(
        self,
        repo: MediaRepo,
        blobs: BlobStore,
        *,
        max_bytes: int,
        other_max_bytes: int,
        prefix: str,
        spool_dir: Path,
    ) -> None:
        self.repo = repo
        self.blobs = blobs
        self.max_bytes = max_bytes
        self.other_max_bytes = other_max_bytes
        self.prefix = prefix.strip("/")
        self.spool_dir = spool_dir
        spool_dir.mkdir(parents=True, exist_ok=True)

    def precheck(self, meta: MediaMeta) -> None:
        """Refuse before downloading when the declared size is already too large."""
        if meta.size is not None and meta.size > self.max_bytes:
            raise MediaRejected(
                f"media of {meta.size} bytes exceeds the limit of {self.max_bytes}",
                code="MEDIA_TOO_LARGE",
            )

    def key(self, sha256: str, ext: str) -> str:
        name = f"{sha256}/original.{ext}"
        return f"{self.prefix}/{name}" if self.prefix else name

    async def store(self, chunks: AsyncIterator[bytes], meta: MediaMeta) -> Stored:
        self.precheck(meta)
        spooled = await spool(chunks, self.max_bytes, self.spool_dir)
        try:
            return await self._store_spooled(spooled, meta)
        finally:
            with contextlib.suppress(FileNotFoundError):
                spooled.path.unlink()

    async def _store_spooled(self, spooled: Spooled, meta: MediaMeta) -> Stored:
        existing = await self.repo.by_sha256(spooled.sha256)
        if existing is not None:
            return Stored(existing, deduped=True)
        mime = detect_mime(meta.mimetype, spooled.head, meta.filename)
        if not is_allowed(mime) and spooled.size > self.other_max_bytes:
            raise MediaRejected(
                f"media type {mime} is not on the allow-list and is over "
                f"{self.other_max_bytes} bytes",
                code="MEDIA_NOT_ALLOWED",
            )
        key = self.key(spooled.sha256, extension_for(mime, meta.filename))
        await self.blobs.put_file(key, spooled.path, mime)
        media = await self.repo.insert_if_absent(
            sha256=spooled.sha256,
            mime=mime,
            size=spooled.size,
            storage_path=key,
            width=meta.width,
            height=meta.height,
            duration_s=meta.duration_s,
        )
        return Stored(media, deduped=media.storage_path != key)
