"""Media on the sandbox network: uploads and downloads in chunks, sha256, limits, restarts."""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.sandbox.support import ALICE, BOB, link_auth, online
from wagate.domain.message import MediaRef, MessageKind, Outgoing, OutgoingMedia
from wagate.engine.sandbox import SandboxEngine
from wagate.engine.sandbox.link import DOWNLOAD_CHUNK, UPLOAD_CHUNK
from wagate.errors import InvalidInput, NotFound
from wagate.sandbox import SandboxLimits, create_app

BIG = os.urandom(UPLOAD_CHUNK * 2 + 12_345)  # three chunks each way


async def test_media_round_trip_over_a_real_websocket(network, serve_app) -> None:
    served = await serve_app(create_app(network))
    engine = SandboxEngine(url=served.ws())
    auth = await link_auth(network, engine=engine)
    await network.add_phone(BOB)
    async with online(engine, auth) as alice:
        image = OutgoingMedia(BIG, "image/jpeg", filename="big.jpg", width=800, height=600)
        result = await alice.link.send(Outgoing(BOB, MessageKind.IMAGE, text="look", media=image))
        (entry,) = await network.inbox(BOB)
        assert entry["id"] == result.id and entry["sha256"] == hashlib.sha256(BIG).hexdigest()
        assert (entry["size"], entry["width"], entry["height"]) == (len(BIG), 800, 600)
        assert (entry["mimetype"], entry["filename"], entry["text"]) == (
            "image/jpeg",
            "big.jpg",
            "look",
        )
        assert await network.blob(entry["media_handle"]) == BIG

        reply = os.urandom(DOWNLOAD_CHUNK + 7)
        await network.phone_send(
            BOB, ALICE, media=reply, mimetype="application/zip", filename="z.zip"
        )
        await alice.receipt()
        event = await alice.message()
        assert event.kind is MessageKind.DOCUMENT and event.media is not None
        media = event.media
        assert (media.size, media.filename, media.mimetype) == (
            len(reply),
            "z.zip",
            "application/zip",
        )
        assert media.sha256 == hashlib.sha256(reply).hexdigest()
        chunks = [chunk async for chunk in alice.link.download(media)]
    assert len(chunks) == 2 and b"".join(chunks) == reply


async def test_the_same_bytes_are_stored_once(network) -> None:
    await network.add_phone(ALICE)
    for _ in range(2):
        await network.phone_send(BOB, ALICE, media=b"same", mimetype="image/png")
    first, second = await network.inbox(ALICE)
    assert first["media_handle"] == second["media_handle"] == hashlib.sha256(b"same").hexdigest()


@pytest.mark.parametrize("handle", ["0" * 64, "../../etc/passwd", "", "A" * 64])
async def test_unknown_media_is_not_found(handle: str, network, engine) -> None:
    auth = await link_auth(network)
    async with online(engine, auth) as alice:
        ref = MediaRef(MessageKind.IMAGE, handle={"blob": handle})
        with pytest.raises(NotFound):
            _ = [chunk async for chunk in alice.link.download(ref)]
        with pytest.raises(NotFound, match="handle"):
            _ = [chunk async for chunk in alice.link.download(MediaRef(MessageKind.IMAGE))]
    with pytest.raises(NotFound):
        await network.blob(handle)


async def test_media_over_the_network_limit_is_invalid_input(make_network) -> None:
    network = await make_network(limits=SandboxLimits(max_media_bytes=UPLOAD_CHUNK + 10))
    engine = SandboxEngine(network=network)
    auth = await link_auth(network)
    await network.add_phone(BOB)
    async with online(engine, auth) as alice:
        too_big = OutgoingMedia(b"x" * (UPLOAD_CHUNK + 11), "video/mp4")
        with pytest.raises(InvalidInput) as refused:
            await alice.link.send(Outgoing(BOB, MessageKind.VIDEO, media=too_big))
        assert refused.value.field == "media" and "limit" in refused.value.message
        assert await alice.text(BOB, "the link lives on")
    with pytest.raises(InvalidInput, match="limit"):
        await network.phone_send(BOB, ALICE, media=b"x" * (UPLOAD_CHUNK + 11), mimetype="video/mp4")


async def test_an_empty_media_is_refused(network, engine) -> None:
    auth = await link_auth(network)
    await network.add_phone(BOB)
    async with online(engine, auth) as alice:
        with pytest.raises(InvalidInput):
            await alice.link.send(
                Outgoing(BOB, MessageKind.IMAGE, media=OutgoingMedia(b"", "image/png"))
            )


async def test_blobs_survive_a_restart_next_to_the_state_file(tmp_path, make_network) -> None:
    state = tmp_path / "sandbox.json"
    before = await make_network(state_path=state)
    await before.add_phone(ALICE)
    await before.phone_send(BOB, ALICE, media=BIG, mimetype="image/jpeg")
    await before.aclose()
    (blob,) = (tmp_path / "sandbox-blobs").iterdir()
    assert blob.name == hashlib.sha256(BIG).hexdigest()
    after = await make_network(state_path=state)
    (entry,) = await after.inbox(ALICE)
    assert await after.blob(entry["media_handle"]) == BIG


async def test_without_a_folder_memory_is_bounded(make_network) -> None:
    network = await make_network(limits=SandboxLimits(blob_memory_bytes=10))
    await network.add_phone(ALICE)
    await network.phone_send(BOB, ALICE, media=b"first blob", mimetype="image/png")
    await network.phone_send(BOB, ALICE, media=b"second blob", mimetype="image/png")
    first, second = await network.inbox(ALICE)
    assert await network.blob(second["media_handle"]) == b"second blob"
    with pytest.raises(NotFound):
        await network.blob(first["media_handle"])
