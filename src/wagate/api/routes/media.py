"""``GET /api/media/{id}``: a stored media object, streamed to an authorised caller.

Media comes from anyone who can message the account, so its stored type is
not trusted to be harmless: the browser is told not to sniff another type
(``nosniff``), and only types a browser merely displays (raster images, audio,
video) are served inline; anything else (HTML, SVG, XML, PDF, …) is served as
an attachment, so it cannot run script in the API's origin.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from wagate.api.deps import Media
from wagate.api.params import RowId

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
async def get_media(media_id: RowId, service: Media) -> StreamingResponse:
    media, chunks = await service.open(media_id)
    name = media.storage_path.rsplit("/", 1)[-1]
    disposition = "inline" if is_inline(media.mime) else "attachment"
    return StreamingResponse(
        chunks,
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
