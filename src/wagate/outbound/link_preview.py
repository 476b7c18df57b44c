"""Link previews: the card under a text's first link, built by wagate when the text is sent.

WhatsApp's servers build no previews, and neither does whatsmeow: the sending
phone fetches the page and puts what it found into the message (Baileys and
Evolution API do the same). So when a text asks for ``linkPreview``, the
sender calls :meth:`LinkPreviewer.attach` just before it hands the message to
the engine. The first http(s) link of the text is fetched through the same
guarded client as media URLs (internal addresses refused, every redirect hop
and the connected address checked), under a short deadline, reading only the
head of the page. Its Open Graph tags (else ``<title>`` and the meta
description) give the title and description; ``og:image`` becomes the
thumbnail when it is a JPEG small enough to inline (wagate does not resize
images). Everything here is best effort: whatever fails, the text goes out
without a card.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import re
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from wagate.domain.message import LinkPreview, MessageKind, Outgoing
from wagate.errors import InvalidInput
from wagate.media_types import detect
from wagate.netguard import parse_http_url
from wagate.outbound.media_fetch import MediaBytes, MediaFetcher
from wagate.settings import SendSettings

log = logging.getLogger(__name__)

MAX_TITLE = 300
MAX_DESCRIPTION = 1_000
_URL = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
_TRAILING = ".,;:!?'\""  # punctuation that ends a sentence, not a link
_CHARSET = re.compile(rb"""charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_HTML = frozenset({"text/html", "application/xhtml+xml"})
# the first of these a page has wins
_TITLE_KEYS = ("og:title", "twitter:title")
_DESCRIPTION_KEYS = ("og:description", "twitter:description", "description")
_IMAGE_KEYS = ("og:image", "og:image:url", "og:image:secure_url", "twitter:image")


def first_url(text: str) -> str | None:
    """The first http(s) link in ``text``, exactly as written there (trailing punctuation off)."""
    for match in _URL.finditer(text):
        url = _trim(match.group())
        try:
            parse_http_url(url, "text")
        except InvalidInput:
            continue
        return url
    return None


def _trim(url: str) -> str:
    while url and (url[-1] in _TRAILING or (url[-1] == ")" and url.count("(") < url.count(")"))):
        url = url[:-1]
    return url


@dataclass(frozen=True, slots=True)
class PageCard:
    """What a page says about itself."""

    title: str | None = None
    description: str | None = None
    image: str | None = None  # an absolute http(s) URL


class _Head(HTMLParser):
    """Collects ``<meta>`` tags and the ``<title>`` text; lenient, like every HTML parser."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, str] = {}
        self.title: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag != "meta":
            return
        values = {name.lower(): value for name, value in attrs if value is not None}
        key = (values.get("property") or values.get("name") or "").strip().lower()
        content = values.get("content")
        if key and content and key not in self.meta:
            self.meta[key] = content

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)


def read_card(html: bytes, base_url: str) -> PageCard:
    """The title, description and image URL of a page (or of its first part)."""
    head = _Head()
    head.feed(_decode(html))
    meta = head.meta
    title = _first(meta, _TITLE_KEYS) or "".join(head.title)
    image = _first(meta, _IMAGE_KEYS)
    return PageCard(
        title=_clean(title, MAX_TITLE),
        description=_clean(_first(meta, _DESCRIPTION_KEYS), MAX_DESCRIPTION),
        image=_absolute(image, base_url) if image else None,
    )


def _decode(html: bytes) -> str:
    match = _CHARSET.search(html[:2048])
    encoding = match.group(1).decode("ascii") if match else "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        encoding = "utf-8"
    return html.decode(encoding, errors="replace")


def _first(meta: dict[str, str], keys: tuple[str, ...]) -> str | None:
    return next((meta[key] for key in keys if meta.get(key, "").strip()), None)


def _clean(value: str | None, limit: int) -> str | None:
    text = _SPACE.sub(" ", value or "").strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text or None


def _absolute(url: str, base_url: str) -> str | None:
    joined = urljoin(base_url, url.strip())
    return joined if urlsplit(joined).scheme in ("http", "https") else None


class LinkPreviewer:
    """Builds the link card of texts that ask for one; see the module docstring."""

    def __init__(
        self, pages: MediaFetcher, images: MediaFetcher | None, *, timeout_s: float
    ) -> None:
        self.pages = pages  # reads the head of a page (``truncate=True``)
        self.images = images  # fetches a thumbnail, refusing a large one; None: no thumbnails
        self.timeout_s = timeout_s

    @classmethod
    def of(cls, settings: SendSettings) -> LinkPreviewer:
        timeout_s = settings.link_preview_timeout_s

        def fetcher(max_bytes: int, *, truncate: bool = False) -> MediaFetcher:
            return MediaFetcher(
                max_bytes=max_bytes,
                timeout_s=timeout_s,
                max_redirects=settings.media_fetch_max_redirects,
                allow_private=settings.allow_private_urls,
                truncate=truncate,
            )

        pages = fetcher(settings.link_preview_html_max_bytes, truncate=True)
        thumbnails = settings.link_preview_thumbnail_max_bytes
        return cls(pages, fetcher(thumbnails) if thumbnails else None, timeout_s=timeout_s)

    async def attach(self, message: Outgoing) -> Outgoing:
        """``message`` with its link card, when it asks for one and one can be built."""
        if message.kind is not MessageKind.TEXT or not message.link_preview or message.preview:
            return message
        url = first_url(message.text or "")
        if url is None:
            return message
        preview = await self.preview(url)
        return replace(message, preview=preview) if preview is not None else message

    async def preview(self, url: str) -> LinkPreview | None:
        """The card for ``url``, or None (logged with the host only: URLs may carry secrets)."""
        host = urlsplit(url).hostname
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._build(url)
        except TimeoutError:
            log.info("no link preview for %s: no answer within %gs", host, self.timeout_s)
        except InvalidInput as exc:
            log.info("no link preview for %s: %s", host, exc.message)
        except Exception:  # best effort: a page that breaks us must not stop the text
            log.warning("no link preview for %s: building it failed", host, exc_info=True)
        return None

    async def _build(self, url: str) -> LinkPreview | None:
        page = await self.pages.fetch(url, "the link")
        if page.mimetype is not None and page.mimetype.lower() not in _HTML:
            return None
        card = read_card(page.data, page.url or url)
        if card.title is None and card.description is None:
            return None
        thumbnail = await self._thumbnail(card.image) if card.image else None
        return LinkPreview(url, card.title, card.description, thumbnail)

    async def _thumbnail(self, image_url: str) -> bytes | None:
        if self.images is None:
            return None
        try:
            image: MediaBytes = await self.images.fetch(image_url, "the preview image")
        except InvalidInput as exc:
            log.info("link preview without a thumbnail: %s", exc.message)
            return None
        # WhatsApp inlines JPEG thumbnails; converting other formats needs an image library
        return image.data if detect(image.data) == "image/jpeg" else None
