"""Stored media, by id: its row and its bytes from object storage."""

from __future__ import annotations

from collections.abc import AsyncIterator

from wagate.domain.media import Media
from wagate.errors import NotFound
from wagate.storage.blobs import BlobStore
from wagate.storage.repos.media import MediaRepo


class MediaService:
    def __init__(self, media: MediaRepo, blobs: BlobStore) -> None:
        self.media = media
        self.blobs = blobs

    async def open(self, media_id: int) -> tuple[Media, AsyncIterator[bytes]]:
        """The media's row and its bytes, in chunks; NotFound when either is missing.

        The first chunk is read here, so a missing object is a NotFound before
        any byte is sent.
        """
        media = await self.media.get(media_id)
        if media is None:
            raise NotFound(f"media {media_id} not found")
        chunks = self.blobs.open(media.storage_path)
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            first = b""
        except NotFound:
            raise NotFound("the media's object is missing from storage") from None
        return media, _prepend(first, chunks)


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk
