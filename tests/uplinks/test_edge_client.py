"""Seed 001's worker-proxy as an edge worker calls it: headers, answers, failures, queued bodies."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from wagate.domain.message import ContactCard, Location, MessageKind, OutgoingMedia, Quote
from wagate.uplinks.edge import (
    EdgeClient,
    EdgeRefused,
    EdgeUnavailable,
    QueuedMessage,
    read_queued,
    recipient_jid,
)

SECRET = "s3cret"
PHONE = "6281234567890"
JID = f"{PHONE}@s.whatsapp.net"
EDGE_LOG = "wagate.uplinks.edge"


class Proxy:
    """A worker-proxy behind ``httpx.MockTransport``: keeps each request, answers with ``reply``."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.reply: Callable[[httpx.Request], httpx.Response] = lambda _: httpx.Response(204)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.reply(request)

    def answers(self, status: int = 200, **kwargs: Any) -> None:
        self.reply = lambda _: httpx.Response(status, **kwargs)

    def raises(self, error: type[httpx.TransportError]) -> None:
        def reply(request: httpx.Request) -> httpx.Response:
            raise error("down", request=request)

        self.reply = reply


@pytest.fixture
def proxy() -> Proxy:
    return Proxy()


@pytest.fixture
async def edge(proxy: Proxy) -> AsyncIterator[EdgeClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(proxy.handle)) as client:
        yield EdgeClient("http://proxy.test/api/", SECRET, "w1", client=client)


async def queued_from(edge: EdgeClient, proxy: Proxy, *items: Any) -> list[QueuedMessage]:
    proxy.answers(json=list(items))
    messages: list[QueuedMessage] = await edge.queued("i1")
    return messages


def one(item: dict[str, Any]) -> QueuedMessage:
    message = read_queued(item)
    assert message is not None
    return message


# --- the calls ---------------------------------------------------------------------------


async def test_every_call_carries_the_secret_and_the_worker_id(
    edge: EdgeClient, proxy: Proxy
) -> None:
    await edge.instances(2)
    await edge.update_status({"instanceId": "i1", "status": "CONNECTED"})
    await edge.queued("i1")
    await edge.post("/mark-sent", {"messageId": "m1"})
    await edge.post("/inbound", {"instanceId": "i1"})
    assert [(r.method, r.url.path) for r in proxy.requests] == [
        ("GET", "/api/disconnected-instances"),
        ("POST", "/api/update-status"),
        ("GET", "/api/queued-messages"),
        ("POST", "/api/mark-sent"),
        ("POST", "/api/inbound"),
    ]
    for request in proxy.requests:
        assert request.headers["Authorization"] == f"Bearer {SECRET}"
        assert request.headers["X-Wagate-Worker"] == "w1"


async def test_the_instances_call_sends_its_limit_and_the_queue_its_instance(
    edge: EdgeClient, proxy: Proxy
) -> None:
    await edge.instances(3)
    await edge.queued("inst 7")
    assert proxy.requests[0].url.params["limit"] == "3"
    assert proxy.requests[1].url.params["instanceId"] == "inst 7"


async def test_posts_send_their_body_as_json_and_any_2xx_takes_them(
    edge: EdgeClient, proxy: Proxy
) -> None:
    proxy.answers(200, text="OK")
    await edge.update_status({"instanceId": "i1", "qr": "2@abc"})
    await edge.post("/inbound", {"text": "héllo 👋"})
    bodies = [json.loads(r.content) for r in proxy.requests]
    assert bodies == [{"instanceId": "i1", "qr": "2@abc"}, {"text": "héllo 👋"}]
    assert proxy.requests[0].headers["Content-Type"] == "application/json"


# --- /disconnected-instances ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        ["a", "b"],
        {"data": ["a", "b"]},
        {"instances": ["a", "b"]},
        [{"id": "a"}, {"instanceId": "b"}],
        {"data": [{"instance_id": "a"}, {"id": "b", "name": "second"}]},
        [" a ", {"id": " b"}],
    ],
)
async def test_instances_are_read_in_every_spelling(
    edge: EdgeClient, proxy: Proxy, body: Any
) -> None:
    proxy.answers(json=body)
    assert await edge.instances(5) == ["a", "b"]


async def test_instances_listed_twice_are_kept_once_in_first_order_numbers_as_text(
    edge: EdgeClient, proxy: Proxy
) -> None:
    proxy.answers(json=["b", {"id": 7}, "b", {"instance_id": "7"}, {"instanceId": 8}])
    assert await edge.instances(5) == ["b", "7", "8"]


async def test_an_instance_without_a_readable_id_is_skipped_and_logged(
    edge: EdgeClient, proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    proxy.answers(json=[{"name": "x"}, {"id": "  "}, "", {"id": ["a"]}, "ok"])
    with caplog.at_level(logging.WARNING, logger=EDGE_LOG):
        assert await edge.instances(5) == ["ok"]
    skipped = [r for r in caplog.records if "cannot read an instance id" in r.getMessage()]
    assert len(skipped) == 4


async def test_an_item_neither_text_nor_object_is_skipped_and_logged(
    edge: EdgeClient, proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    proxy.answers(json=[None, ["x"], "ok"])
    with caplog.at_level(logging.WARNING, logger=EDGE_LOG):
        assert await edge.instances(5) == ["ok"]
    assert sum("cannot read an instance id" in r.getMessage() for r in caplog.records) == 2


@pytest.mark.parametrize(
    ("answer", "logged"),
    [
        ({"json": {"error": None}}, True),
        ({"json": "busy"}, True),
        ({"json": 42}, True),
        ({"json": {"data": "a"}}, True),
        ({"json": {}}, False),
        ({"text": "not json"}, False),
        ({"content": b""}, False),
    ],
)
async def test_an_answer_of_no_known_shape_is_no_instances_logged_unless_empty(
    edge: EdgeClient,
    proxy: Proxy,
    caplog: pytest.LogCaptureFixture,
    answer: dict[str, Any],
    logged: bool,
) -> None:
    proxy.answers(**answer)
    with caplog.at_level(logging.WARNING, logger=EDGE_LOG):
        assert await edge.instances(5) == []
    assert any("cannot read the answer" in r.getMessage() for r in caplog.records) is logged


# --- the claim TTL -------------------------------------------------------------------------


async def test_the_claim_ttl_header_is_read_in_seconds_and_kept(
    edge: EdgeClient, proxy: Proxy
) -> None:
    assert edge.claim_ttl_s is None
    proxy.answers(json=[], headers={"X-Wagate-Claim-Ttl-Ms": "1500"})
    await edge.instances(1)
    assert edge.claim_ttl_s == 1.5
    proxy.answers(json=[])
    await edge.instances(1)
    assert edge.claim_ttl_s == 1.5


@pytest.mark.parametrize("value", [b"soon", b"-5", b"1.5", b""])
async def test_a_claim_ttl_that_is_not_a_count_of_ms_is_ignored(
    edge: EdgeClient, proxy: Proxy, value: bytes
) -> None:
    proxy.answers(json=[], headers=[(b"X-Wagate-Claim-Ttl-Ms", value)])
    assert await edge.instances(1) == []
    assert edge.claim_ttl_s is None


async def test_a_claim_ttl_of_non_ascii_digits_is_ignored(edge: EdgeClient, proxy: Proxy) -> None:
    # b"\xb2" is "²" in Latin-1: str.isdigit() says yes, int() says no
    proxy.answers(json=["a"], headers=[(b"X-Wagate-Claim-Ttl-Ms", b"\xb2")])
    assert await edge.instances(1) == ["a"]
    assert edge.claim_ttl_s is None


# --- failures ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 425, 429])
async def test_a_5xx_408_or_429_is_worth_trying_again(
    edge: EdgeClient, proxy: Proxy, status: int
) -> None:
    proxy.answers(status, json={"error": "busy"})
    with pytest.raises(EdgeUnavailable) as caught:
        await edge.post("/inbound", {})
    assert str(status) in caught.value.message and "busy" in caught.value.message


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_secret_is_tried_again_and_logged_as_an_error(
    edge: EdgeClient, proxy: Proxy, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    proxy.answers(status, json={"error": "wrong worker secret"}, headers={"X-Wagate-Error": "x"})
    with pytest.raises(EdgeUnavailable) as caught:
        await edge.post("/inbound", {})
    assert "wrong worker secret (x)" in caught.value.message
    assert any(r.levelname == "ERROR" and "WORKER_SECRET" in r.message for r in caplog.records)


@pytest.mark.parametrize("status", [400, 404, 409, 410, 413, 422])
async def test_another_4xx_is_refused_for_good(edge: EdgeClient, proxy: Proxy, status: int) -> None:
    proxy.answers(status, json={"error": "no such instance"})
    with pytest.raises(EdgeRefused) as caught:
        await edge.queued("i1")
    assert caught.value.status == status
    assert "/queued-messages: no such instance" in caught.value.message


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ({"json": {"message": "bad body"}}, "bad body"),
        ({"json": {"detail": "bad body", "error": 3}}, "bad body"),
        ({"text": "plain refusal"}, "plain refusal"),
        ({}, "Conflict"),
    ],
)
async def test_a_refusal_says_what_the_worker_proxy_said(
    edge: EdgeClient, proxy: Proxy, answer: dict[str, Any], said: str
) -> None:
    proxy.answers(409, **answer)
    with pytest.raises(EdgeRefused) as caught:
        await edge.update_status({})
    assert said in caught.value.message


@pytest.mark.parametrize(
    "error", [httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.ReadError]
)
async def test_no_answer_is_worth_trying_again(
    edge: EdgeClient, proxy: Proxy, error: type[httpx.TransportError]
) -> None:
    proxy.raises(error)
    with pytest.raises(EdgeUnavailable) as caught:
        await edge.instances(1)
    assert caught.value.message.startswith("/disconnected-instances: ")
    if issubclass(error, httpx.TimeoutException):
        assert "no answer in time" in caught.value.message


# --- /queued-messages ----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["to", "phone", "number", "jid", "chatId", "remoteJid"])
async def test_the_recipient_is_read_in_every_spelling(
    edge: EdgeClient, proxy: Proxy, key: str
) -> None:
    [message] = await queued_from(edge, proxy, {"id": "m1", key: PHONE, "text": "hi"})
    assert message.outgoing is not None and message.outgoing.to == JID


@pytest.mark.parametrize("key", ["text", "body", "message", "content"])
def test_the_text_is_read_in_every_spelling(key: str) -> None:
    message = one({"id": "m1", "to": PHONE, key: "hello"})
    assert message.outgoing is not None
    assert (message.outgoing.kind, message.outgoing.text) == (MessageKind.TEXT, "hello")


async def test_queued_messages_come_in_a_wrapper_and_numeric_ids_as_text(
    edge: EdgeClient, proxy: Proxy
) -> None:
    proxy.answers(json={"messages": [{"id": 42, "to": PHONE, "text": "hi"}]})
    [message] = await edge.queued("i1")
    assert message.id == "42" and message.outgoing is not None


async def test_a_queued_message_without_an_id_is_skipped_and_logged(
    edge: EdgeClient, proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    items = [{"to": PHONE, "text": "a"}, {"id": " ", "to": PHONE}, "m9", None]
    with caplog.at_level(logging.WARNING, logger=EDGE_LOG):
        got = await queued_from(edge, proxy, *items, {"messageId": "m2", "to": PHONE, "text": "b"})
    assert [m.id for m in got] == ["m2"]
    assert sum("cannot read a message id" in r.getMessage() for r in caplog.records) == 4


def test_media_in_base64_is_decoded_with_its_caption_and_names() -> None:
    media = {"base64": "aGk=", "mimetype": "image/png", "filename": "a.png"}
    item = {"id": "m1", "to": PHONE, "type": "image", "caption": "look", "text": "no"}
    message = one({**item, "media": media})
    assert message.outgoing is not None and message.media_url is None
    assert message.outgoing.kind is MessageKind.IMAGE
    assert message.outgoing.text == "look"
    assert message.outgoing.media == OutgoingMedia(b"hi", "image/png", "a.png")


@pytest.mark.parametrize(
    "media", ["data:image/jpeg;base64,aGk=", {"base64": "data:image/jpeg;base64,aGk="}]
)
def test_a_data_url_gives_the_bytes_and_the_mimetype(media: Any) -> None:
    message = one({"id": "m1", "to": PHONE, "type": "image", "media": media})
    assert message.outgoing is not None
    assert message.outgoing.media == OutgoingMedia(b"hi", "image/jpeg", None)


def test_media_without_a_type_is_a_document_of_unknown_format() -> None:
    message = one({"id": "m1", "to": PHONE, "message": "see", "media": {"data": "aGk="}})
    assert message.outgoing is not None
    assert message.outgoing.kind is MessageKind.DOCUMENT and message.outgoing.text == "see"
    assert message.outgoing.media == OutgoingMedia(b"hi", "application/octet-stream", None)


@pytest.mark.parametrize(
    "spelling",
    [{"mediaUrl": "https://x.test/a.jpg"}, {"media": "https://x.test/a.jpg"}],
)
def test_media_by_url_is_left_to_fetch(spelling: dict[str, Any]) -> None:
    message = one({"id": "m1", "to": PHONE, "type": "image", "caption": "c", **spelling})
    assert message.outgoing is not None and message.outgoing.media is None
    assert message.outgoing.kind is MessageKind.IMAGE and message.outgoing.text == "c"
    assert message.media_url == "https://x.test/a.jpg"


def test_a_location_is_read_with_its_short_spellings() -> None:
    location = {"lat": "-6.2", "lng": 106.8, "name": "Monas", "address": "Jakarta"}
    message = one({"id": "m1", "to": PHONE, "type": "location", "location": location})
    assert message.outgoing is not None
    assert message.outgoing.location == Location(-6.2, 106.8, "Monas", "Jakarta")


def test_a_vcard_is_a_contact() -> None:
    contact = {"displayName": "Ann", "number": "+62 811"}
    message = one({"id": "m1", "to": PHONE, "type": "vcard", "contact": contact})
    assert message.outgoing is not None and message.outgoing.kind is MessageKind.CONTACT
    assert message.outgoing.contact == ContactCard("Ann", "+62 811", None)


def test_a_reaction_names_the_message_it_reacts_to() -> None:
    message = one({"id": "m1", "to": PHONE, "type": "reaction", "text": "👍", "reactTo": "3EB0A"})
    assert message.outgoing is not None and message.outgoing.kind is MessageKind.REACTION
    assert (message.outgoing.text, message.outgoing.react_to) == ("👍", "3EB0A")


def test_a_reply_quotes_its_message_and_ptt_is_a_voice_note() -> None:
    text = one({"id": "m1", "to": PHONE, "text": "yes", "quotedId": "3EB0Q"})
    voice = one({"id": "m2", "to": PHONE, "type": " PTT ", "mediaUrl": "https://x.test/v.ogg"})
    assert text.outgoing is not None and text.outgoing.quote == Quote("3EB0Q")
    assert voice.outgoing is not None and voice.outgoing.kind is MessageKind.VOICE


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ({"text": "hi"}, "no recipient"),
        ({"to": "", "text": "hi"}, "no recipient"),
        ({"to": "someone", "text": "hi"}, "neither a JID nor a phone number"),
        ({"to": PHONE, "type": "image", "media": {"base64": "@@not"}}, "not valid base64"),
        ({"to": PHONE, "type": "image", "media": "data:image/png;base64,%%"}, "not valid base64"),
        ({"to": PHONE}, "text message without text"),
        ({"to": PHONE, "type": "text", "text": ""}, "text message without text"),
        ({"to": PHONE, "type": "carrier-pigeon", "text": "hi"}, "unknown message type"),
        ({"to": PHONE, "type": "image", "caption": "c"}, "image message without media"),
        ({"to": PHONE, "type": "location"}, "without location"),
        ({"to": PHONE, "type": "location", "location": {"lat": "n"}}, "numeric latitude"),
        ({"to": PHONE, "type": "contact", "contact": {"phone": "1"}}, "without contact"),
        ({"to": PHONE, "type": "reaction", "text": "👍"}, "without reactTo"),
    ],
)
def test_a_body_that_cannot_be_sent_comes_back_with_its_problem(
    item: dict[str, Any], problem: str
) -> None:
    message = one({"id": "m1", **item})
    assert message.id == "m1" and message.outgoing is None
    assert message.problem is not None and problem in message.problem


def test_the_kind_other_is_an_unknown_type_as_everywhere_else() -> None:
    # the API refuses "other" (outbound.rules.KINDS); so do neonize and the sandbox, later
    message = one({"id": "m1", "to": PHONE, "type": "other", "text": "hi"})
    assert message.outgoing is None
    assert message.problem is not None and "unknown message type" in message.problem


# --- recipients ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "jid"),
    [
        (PHONE, JID),
        (" +62 812-3456-7890 ", JID),
        ("(62) 812 3456 7890", JID),
        ("12345", "12345@s.whatsapp.net"),
        ("1" * 20, "1" * 20 + "@s.whatsapp.net"),
        ("120363025@g.us", "120363025@g.us"),
        (" 1234@lid ", "1234@lid"),
    ],
)
def test_a_recipient_is_a_jid_as_it_is_or_a_phone_number(to: str, jid: str) -> None:
    assert recipient_jid(to) == jid


@pytest.mark.parametrize("to", ["1234", "1" * 21, "62-abc", "", "+", "٦٢٨١٢٣٤٥٦"])
def test_a_recipient_neither_jid_nor_phone_is_refused(to: str) -> None:
    with pytest.raises(ValueError, match="neither a JID nor a phone number"):
        recipient_jid(to)
