"""``GET /api/media/{id}``: a stored media object, streamed to an authorised caller.

Media comes from anyone who can message the account, so its stored type is
not trusted to be harmless: the browser is told not to sniff another type
(``nosniff``), and only types a browser merely displays (raster images, audio,
video) are served inline; anything else (HTML, SVG, XML, PDF, …) is served as
an attachment, so it cannot run script in the API's origin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from wagate.api import deps
from wagate.api.params import RowId
from wagate.errors import NotFound
from wagate.roles.serve import Gateway

router = APIRouter(prefix="/api/media", tags=["media"])

_INLINE_IMAGES = frozenset(
    {"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/avif"}
)


@router.get(
    "/{media_id}",
    summary="Download a stored media file",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def get_media(
    media_id: RowId, gw: Annotated[Gateway, Depends(deps.gateway)]
) -> StreamingResponse:
    media = await gw.ingest.media_repo.get(media_id)
    if media is None:
        raise NotFound(f"media {media_id} not found")
    chunks = gw.blobs.open(media.storage_path)
    first = await _first(chunks)  # a missing object is a 404 before any byte is sent
    name = media.storage_path.rsplit("/", 1)[-1]
    disposition = "inline" if is_inline(media.mime) else "attachment"
    return StreamingResponse(
        _prepend(first, chunks),
        media_type=media.mime,
        headers={
            "Content-Length": str(media.bytes),
            "Content-Disposition": f'{disposition}; filename="{media.sha256[:16]}-{name}"',
            "X-Content-Type-Options": "nosniff",
            "ETag": f'"{media.sha256}"',
            "Cache-Control": "private, max-age=31536000, immutable",
        },
    )


def is_inline(mime: str) -> bool:
    """True for the types a browser only displays; everything else is an attachment."""
    base = mime.split(";", 1)[0].strip().lower()
    return base in _INLINE_IMAGES or base.startswith(("audio/", "video/"))


async def _first(chunks: AsyncIterator[bytes]) -> bytes:
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        return b""
    except NotFound:
        raise NotFound("the media's object is missing from storage") from None


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk
