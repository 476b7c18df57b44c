"""``linkPreview``: wagate fetches the page when the text is sent and carries the card along."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from tests.outbound.conftest import ALICE, Rig, RigFactory, SandboxRigFactory
from tests.outbound.samples import JPEG, PNG
from tests.outbound.web import Answer, Site, serve
from wagate.domain.message import LinkPreview, Outgoing
from wagate.outbound.link_preview import first_url, read_card
from wagate.testing import eventually

ARTICLE = b"""<!doctype html><html><head>
<meta charset="utf-8">
<title>Fallback title</title>
<meta property="og:title" content="Cats &amp; their humans">
<meta property="og:description" content="  A long read
   about cats.  ">
<meta property="og:image" content="/thumb.jpg">
</head><body><p>text</p></body></html>"""
PLAIN = b"""<html><head><title> Just a title </title>
<meta name="description" content="The meta description"></head></html>"""


def page(image: str) -> bytes:
    meta = f'<meta property="og:title" content="T"><meta property="og:image" content="{image}">'
    return f"<head>{meta}</head>".encode()


@pytest.fixture
def site() -> Iterator[Site]:
    with serve(
        {
            "/article": Answer(ARTICLE),
            "/plain": Answer(PLAIN),
            "/thumb.jpg": Answer(JPEG, "image/jpeg"),
            "/big.jpg": Answer(JPEG + bytes(4096), "image/jpeg"),
            "/thumb.png": Answer(PNG, "image/png"),
            "/with-big-image": Answer(page("/big.jpg")),
            "/with-png-image": Answer(page("/thumb.png")),
            "/cat.jpg": Answer(JPEG, "image/jpeg"),
            "/held": Answer(ARTICLE, gated=True),
        }
    ) as running:
        yield running


async def previewed(rig: Rig, text: str) -> Outgoing:
    link = rig.engine.links[-1]
    before = len(link.sent)
    r = await rig.send(text=text, linkPreview=True)
    assert r.status_code == 201, r.text
    await eventually(lambda: len(link.sent) > before, limit_s=30)
    await rig.wait_status(r.json()["id"], "sent", limit_s=30)
    return link.sent[-1]


# a deadline no loaded machine misses on loopback: these tests are about content, not time
LOOSE = {"link_preview_timeout_ms": 60_000, "link_preview_thumbnail_max_bytes": 2048}


async def open_rig(make_rig: RigFactory, **settings: object) -> Rig:
    rig = await make_rig(allow_private_urls=True, **{**LOOSE, **settings})
    await rig.connect()
    return rig


# --- the card -----------------------------------------------------------------------------


async def test_the_card_has_the_pages_open_graph_title_description_and_thumbnail(
    make_rig: RigFactory, site: Site
) -> None:
    rig = await open_rig(make_rig)
    url = f"{site.url}/article"
    out = await previewed(rig, f"look: {url}.")
    assert out.preview == LinkPreview(url, "Cats & their humans", "A long read about cats.", JPEG)
    assert out.text == f"look: {url}."  # the text itself is unchanged


async def test_without_open_graph_the_title_and_meta_description_do(
    make_rig: RigFactory, site: Site
) -> None:
    rig = await open_rig(make_rig)
    out = await previewed(rig, f"{site.url}/plain")
    assert out.preview == LinkPreview(f"{site.url}/plain", "Just a title", "The meta description")


@pytest.mark.parametrize("path", ["/with-big-image", "/with-png-image"])
async def test_a_thumbnail_that_is_too_large_or_not_jpeg_is_left_out(
    make_rig: RigFactory, site: Site, path: str
) -> None:
    rig = await open_rig(make_rig)
    out = await previewed(rig, f"see {site.url}{path}")
    assert out.preview == LinkPreview(f"{site.url}{path}", "T")


@pytest.mark.parametrize("path", ["/missing", "/cat.jpg"])
async def test_a_failed_fetch_or_a_link_to_no_page_sends_the_text_without_a_card(
    make_rig: RigFactory, site: Site, path: str
) -> None:
    rig = await open_rig(make_rig)
    out = await previewed(rig, f"see {site.url}{path}")
    assert (out.text, out.preview, out.link_preview) == (f"see {site.url}{path}", None, True)
    assert site.hits[path] == 1


async def test_a_dead_site_sends_the_text_without_a_card(make_rig: RigFactory) -> None:
    rig = await open_rig(make_rig)
    out = await previewed(rig, "see http://127.0.0.1:9/gone")
    assert out.preview is None


async def test_an_internal_address_is_never_fetched(make_rig: RigFactory, site: Site) -> None:
    rig = await make_rig()  # private URLs not allowed: the default
    await rig.connect()
    out = await previewed(rig, f"see {site.url}/article")
    assert out.preview is None
    assert site.hits["/article"] == 0


async def test_no_card_without_the_flag_or_without_a_link(make_rig: RigFactory, site: Site) -> None:
    rig = await open_rig(make_rig)
    link = rig.engine.links[-1]
    r = await rig.send(text=f"{site.url}/article")
    assert r.status_code == 201
    await previewed(rig, "no link here, just www.example words")
    assert [m.preview for m in link.sent] == [None, None]
    assert site.hits["/article"] == 0


async def test_the_api_answers_before_the_page_is_fetched(make_rig: RigFactory, site: Site) -> None:
    rig = await open_rig(make_rig)
    link = rig.engine.links[-1]
    r = await rig.send(text=f"{site.url}/held", linkPreview=True)
    assert r.status_code == 201, r.text  # while the page is still held back
    assert r.json()["status"] == "queued"
    await eventually(site.waiting.is_set, limit_s=30)
    assert link.sent == []
    site.gate.set()
    await eventually(lambda: len(link.sent) == 1, limit_s=30)
    assert link.sent[0].preview is not None
    assert link.sent[0].preview.title == "Cats & their humans"


async def test_the_sandbox_inbox_shows_the_card(
    make_sandbox_rig: SandboxRigFactory, site: Site
) -> None:
    rig = await make_sandbox_rig(allow_private_urls=True, **LOOSE)
    await rig.link()
    url = f"{site.url}/article"
    r = await rig.api.post(
        "/api/sessions/s1/messages", json={"to": ALICE, "text": f"read {url}", "linkPreview": True}
    )
    assert r.status_code == 201, r.text
    entry = await rig.inbox_entry(ALICE, r.json()["messageId"])
    assert entry["text"] == f"read {url}"
    assert entry["preview"] == {
        "url": url,
        "title": "Cats & their humans",
        "description": "A long read about cats.",
        "thumbnail_sha256": hashlib.sha256(JPEG).hexdigest(),
        "thumbnail_size": len(JPEG),
    }


# --- the pieces ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("see https://example.com/a?b=1.", "https://example.com/a?b=1"),
        (
            "(https://en.wikipedia.org/wiki/Cat_(disambiguation))",
            "https://en.wikipedia.org/wiki/Cat_(disambiguation)",
        ),
        ('"HTTP://Example.com/x", then', "HTTP://Example.com/x"),
        ("first http:// then https://b.example/", "https://b.example/"),
        ("no link, www.example.com only", None),
    ],
)
def test_the_first_link_of_the_text_is_previewed_as_written(text: str, url: str | None) -> None:
    assert first_url(text) == url


def test_a_card_is_read_from_a_page_in_its_own_charset() -> None:
    html = (
        '<meta charset="iso-8859-1"><title>Caf\xe9</title>'
        '<meta name="twitter:image" content="//cdn.example/i.jpg">'
    )
    card = read_card(html.encode("iso-8859-1"), "https://example.com/menu")
    assert (card.title, card.description, card.image) == (
        "Café",
        None,
        "https://cdn.example/i.jpg",
    )
    assert read_card(b"<title>" + b"x" * 500 + b"</title>", "https://e.x/").title == "x" * 299 + "…"
    assert (
        read_card(b'<meta property="og:image" content="javascript:alert(1)">', "https://e.x/").image
        is None
    )
