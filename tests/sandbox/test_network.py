"""The frame protocol seen from a raw channel: handshake errors, op table, listings."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest

from tests.sandbox.support import closed, hello, recv
from wagate.clock import ManualClock
from wagate.sandbox import SandboxNetwork, SandboxTimings
from wagate.sandbox.connection import Connection
from wagate.sandbox.transport import Frame, MemoryChannel

PHONE = "15550001111"


@pytest.mark.parametrize(
    ("first", "code"),
    [
        ({"op": "logout"}, "bad_hello"),
        (hello(session=""), "bad_hello"),
        (hello(session=7), "bad_hello"),
        (hello(creds={"phone": PHONE}), "bad_hello"),
        (hello(creds="yes"), "bad_hello"),
        (hello(pair_phone="call me"), "bad_hello"),
    ],
)
async def test_a_bad_hello_is_refused_and_closed(first: Frame, code: str, network) -> None:
    channel = network.open_channel()
    await channel.send(first)
    answer = await recv(channel)
    assert answer["ev"] == "error" and answer["code"] == code and answer["message"]
    await closed(channel)


async def test_silence_instead_of_hello_times_out(network, clock: ManualClock) -> None:
    channel = network.open_channel()
    await clock.wait_for_sleepers()
    await clock.advance(network.timings.hello_timeout_s - 0.1)
    assert clock.sleeping == 1, "still waiting for the hello"
    await clock.advance(0.1)
    assert (await recv(channel))["code"] == "hello_timeout"
    await closed(channel)


async def test_a_hello_in_time_is_not_timed_out(network, clock: ManualClock) -> None:
    channel = network.open_channel()
    await channel.send(hello())
    assert (await recv(channel))["ev"] == "qr"
    await clock.advance(network.timings.hello_timeout_s + 1)  # past the hello's horizon
    await channel.send({"op": "teleport"})
    assert (await recv(channel))["code"] == "unknown_op", "the connection lives on"
    (info,) = await network.connections()
    assert info.state == "pairing"
    await channel.close()


async def test_unknown_ops_and_bad_frames_get_errors_but_keep_the_connection(network) -> None:
    channel = network.open_channel()
    await channel.send(hello())
    assert (await recv(channel))["ev"] == "qr"
    await channel.send({"op": "teleport"})
    assert (await recv(channel))["code"] == "unknown_op"
    await channel.send({"no_op": True})
    assert (await recv(channel))["code"] == "unknown_op"
    (info,) = await network.connections()
    assert info.state == "pairing"
    await channel.close()


async def test_new_ops_plug_into_the_table(network) -> None:
    seen: list[tuple[int, Frame]] = []

    async def echo(conn: Connection, frame: Frame) -> None:
        seen.append((conn.id, frame))
        await conn.send({"ev": "echo", "text": frame.get("text")})

    network.register_op("echo", echo)
    channel = network.open_channel()
    await channel.send(hello())
    await recv(channel)  # the first QR
    await channel.send({"op": "echo", "text": "hi"})
    assert await recv(channel) == {"ev": "echo", "text": "hi"}
    assert [frame for _, frame in seen] == [{"op": "echo", "text": "hi"}]
    await channel.close()


async def test_connections_list_sessions_clients_and_phones(network) -> None:
    channel = network.open_channel()
    await channel.send(hello(pair_phone=PHONE))
    qr = await recv(channel)
    assert (await recv(channel))["ev"] == "pair_code"
    (before,) = await network.connections()
    assert (before.session, before.client, before.phone, before.state) == (
        "s1",
        "gw-1",
        None,
        "pairing",
    )
    await network.scan(qr["code"], PHONE)
    paired = await recv(channel)
    connected = await recv(channel)
    assert paired["ev"] == "paired" and set(paired["creds"]) >= {"phone", "device_id", "secret"}
    assert connected["ev"] == "connected"
    (after,) = await network.connections()
    assert (after.phone, after.state, after.jid) == (PHONE, "connected", connected["jid"])
    (account,) = await network.accounts()
    assert account.devices[0].online and account.devices[0].name == "wagate"
    await channel.close()


async def test_a_peer_that_vanishes_is_forgotten(network) -> None:
    channel = network.open_channel()
    await channel.send(hello())
    await recv(channel)
    await channel.close()
    async with asyncio.timeout(5):  # the network notices the close on its own task
        await network.wait_connections(lambda live: not live)


async def test_closing_the_network_drops_everyone(network) -> None:
    channel = network.open_channel()
    await channel.send(hello())
    await recv(channel)
    await network.aclose()
    await closed(channel)
    assert await network.connections() == []


async def test_an_outage_refuses_with_unavailable(network) -> None:
    await network.set_outage(True)
    assert network.is_down
    channel = network.open_channel()
    answer = await recv(channel)
    assert answer["code"] == "unavailable"
    await closed(channel)


async def test_serving_a_network_of_its_own_default_timings() -> None:
    timings = SandboxNetwork().timings
    assert (timings.qr_first_s, timings.qr_next_s, timings.qr_count) == (60.0, 20.0, 6)
    assert timings.hello_timeout_s == 10.0 and timings == SandboxTimings()


async def test_drop_closes_without_any_frame(network) -> None:
    channel = network.open_channel()
    await channel.send(hello())
    await recv(channel)
    assert await network.fault("drop", session="s1") == 1
    await closed(channel)


async def test_other_faults_say_why_before_closing(network) -> None:
    channel = network.open_channel()
    await channel.send(hello())
    await recv(channel)
    await network.fault("replaced", session="s1")
    answer = await recv(channel)
    assert answer["ev"] == "disconnected" and answer["kind"] == "replaced" and answer["reason"]
    await closed(channel)


async def test_wait_connections_wakes_on_changes(network) -> None:
    waiter = asyncio.create_task(network.wait_connections(lambda live: len(live) == 2))
    channels = [network.open_channel() for _ in range(2)]
    for index, channel in enumerate(channels):
        await channel.send(hello(session=f"s{index}"))
    async with asyncio.timeout(5):
        live = await waiter
    assert sorted(info.session for info in live) == ["s0", "s1"]
    for channel in channels:
        await channel.close()


# --- messaging frames -------------------------------------------------------------------


async def logged_in(network) -> MemoryChannel:
    """A raw channel, linked to PHONE by a scan and past its ``connected`` frame."""
    channel = network.open_channel()
    await channel.send(hello())
    await network.scan((await recv(channel))["code"], PHONE)
    assert (await recv(channel))["ev"] == "paired"
    assert (await recv(channel))["ev"] == "connected"
    return channel


async def test_requests_before_login_are_refused_with_their_rid(network) -> None:
    channel = network.open_channel()
    await channel.send(hello())
    await recv(channel)  # a QR
    await channel.send({"op": "groups", "rid": "r1"})
    answer = await recv(channel)
    assert (answer["ev"], answer["rid"], answer["code"]) == ("error", "r1", "not_logged_in")
    await channel.close()


async def test_answers_carry_the_rid_and_refusals_name_the_field(network) -> None:
    channel = await logged_in(network)
    await channel.send({"op": "groups", "rid": "a"})
    assert await recv(channel) == {"ev": "ack", "rid": "a", "groups": []}
    await channel.send({"op": "send", "rid": "b", "to": PHONE, "kind": "gif", "text": "x"})
    refused = await recv(channel)
    assert (refused["rid"], refused["code"], refused["field"]) == ("b", "invalid_input", "kind")
    await channel.send({"op": "send", "rid": "c", "to": "15559990000", "kind": "text", "text": "x"})
    assert (await recv(channel))["code"] == "not_found"
    await channel.send({"op": "download", "rid": "d", "blob": "../../x", "offset": 0})
    assert (await recv(channel))["code"] == "not_found"
    await channel.send({"op": "upload", "rid": "e", "upload": "u1", "data": "%%%", "last": True})
    assert (await recv(channel))["field"] == "data"
    await channel.close()


async def test_an_upload_then_a_send_then_the_events_with_queue_numbers(network) -> None:
    channel = await logged_in(network)
    await network.phone_send("15550002222", PHONE, text="first")
    event = await recv(channel)
    assert (event["ev"], event["q"], event["text"]) == ("message", 1, "first")
    await channel.send({"op": "handled", "q": 1})
    data = base64.b64encode(b"0123456789").decode()
    for rid, chunk, last in (("u1", data[:8], False), ("u2", data[8:], True)):
        await channel.send(
            {"op": "upload", "rid": rid, "upload": "up", "data": chunk, "last": last}
        )
    assert (await recv(channel))["received"] == 6
    stored = await recv(channel)
    assert stored["handle"] == hashlib.sha256(b"0123456789").hexdigest() and stored["size"] == 10
    media = {"blob": stored["handle"], "mimetype": "application/pdf", "filename": "d.pdf"}
    send = {"op": "send", "rid": "s", "to": "15550002222", "kind": "document", "media": media}
    await channel.send(send)
    ack = await recv(channel)
    receipt = await recv(channel)
    assert ack["rid"] == "s" and receipt == {
        "ev": "receipt",
        "q": 2,
        "chat": "15550002222@s.whatsapp.net",
        "ids": [ack["id"]],
        "status": "delivered",
        "ts": receipt["ts"],
        "by": None,
    }
    await channel.send(
        {"op": "download", "rid": "d", "blob": stored["handle"], "offset": 4, "size": 3}
    )
    chunk = await recv(channel)
    assert (base64.b64decode(chunk["data"]), chunk["total"]) == (b"456", 10)
    await channel.close()
