"""Linking on the sandbox network, through the engine: QR rotation, pairing, creds, reconnects.

QR codes rotate on the network's clock: the tests advance a ManualClock through them.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from tests.sandbox.support import hello, recv
from wagate.clock import ManualClock
from wagate.domain.session import DisconnectKind
from wagate.engine.base import AuthStore, Connected, Disconnected, LinkOptions, PairCode, QRCode
from wagate.engine.sandbox import SandboxEngine
from wagate.errors import ConfigError, Conflict, NotFound, TransientError
from wagate.sandbox import SandboxNetwork, SandboxTimings
from wagate.storage.auth_state import FileAuthStore, MemoryAuthStore

PHONE = "15550001111"
NO_OPTIONS = LinkOptions()


async def link_device(
    engine: SandboxEngine, network: SandboxNetwork, auth: AuthStore, watch, phone: str = PHONE
) -> Connected:
    """Link ``auth`` to ``phone`` by scanning the first QR, then close the link."""
    async with engine.link(auth, NO_OPTIONS) as link:
        events = watch(link)
        qr = await events.expect(QRCode)
        await network.scan(qr.code, phone, push_name="Alice")
        connected = await events.expect(Connected)
    async with asyncio.timeout(5):  # the network notices the close on its own task
        await network.wait_connections(lambda live: not live)
    return connected


async def test_six_distinct_qrs_then_qr_timeout(engine, network, watch, clock) -> None:
    async with engine.link(MemoryAuthStore("s1"), NO_OPTIONS) as link:
        events = watch(link)
        qrs = []
        for _ in range(6):
            qrs.append(await events.expect(QRCode))
            await clock.wait_for_sleepers()
            await clock.advance(qrs[-1].ttl_s)
        ended = await events.rest()

    assert ended == [Disconnected(DisconnectKind.QR_TIMEOUT, ended[-1].reason)]
    assert all(qr.code.startswith("2@") and qr.code.count(",") == 3 for qr in qrs)
    refs = {qr.code.split(",")[0] for qr in qrs}
    assert len(refs) == 6, "every rotation must bring a new ref"
    assert len({qr.code.split(",", 1)[1] for qr in qrs}) == 1, "the client keys stay the same"
    assert [qr.ttl_s for qr in qrs] == [60.0] + [20.0] * 5, "WhatsApp's timings by default"
    assert clock.monotonic() == 160.0
    assert await network.connections() == []


async def test_qr_rotation_takes_the_announced_time(make_network, clock: ManualClock) -> None:
    timings = SandboxTimings(qr_first_s=15, qr_next_s=5, qr_count=3)
    channel = (await make_network(timings=timings)).open_channel()
    await channel.send(hello())
    shown = [await recv(channel)]
    for ttl in (15, 5):
        await clock.wait_for_sleepers()
        await clock.advance(ttl - 0.5)
        # A frame after ours would be a QR shown too early: the answer comes first.
        await channel.send({"op": "teleport"})
        assert (await recv(channel))["code"] == "unknown_op"
        await clock.advance(0.5)
        shown.append(await recv(channel))
    assert [(frame["ev"], frame["ttl"]) for frame in shown] == [("qr", 15), ("qr", 5), ("qr", 5)]
    await clock.wait_for_sleepers()
    await clock.advance(5)
    ended = await recv(channel)
    assert (ended["ev"], ended["kind"]) == ("disconnected", "qr_timeout")
    assert clock.monotonic() == 25.0


@pytest.mark.parametrize("store", ["memory", "file"])
async def test_scan_pairs_connects_and_saves_creds(
    store: str, tmp_path: Path, engine, network, watch, clock
) -> None:
    auth = MemoryAuthStore("s1") if store == "memory" else FileAuthStore(tmp_path, "s1")
    async with engine.link(auth, NO_OPTIONS) as link:
        events = watch(link)
        qr = await events.expect(QRCode)
        linked = await network.scan(qr.code, "+1 555 000-1111", push_name="Alice")
        connected = await events.expect(Connected)

    assert linked == {"session": "s1", "phone": PHONE, "jid": f"{PHONE}:1@s.whatsapp.net"}
    (account,) = await network.accounts()
    assert account.devices[0].linked_at == clock.now().isoformat(), "stamped by the clock"
    assert connected.jid == f"{PHONE}:1@s.whatsapp.net"
    assert connected.phone == PHONE and connected.push_name == "Alice"
    assert connected.device_name == "wagate"
    assert connected.lid is not None and re.fullmatch(r"[1-9][0-9]{13}@lid", connected.lid)
    creds = await auth.load("creds")
    assert creds is not None and creds["phone"] == PHONE and creds["engine"] == "sandbox"
    if store == "file":
        assert json.loads((tmp_path / "s1" / "creds.json").read_text()) == creds


async def test_scan_by_ref_alone(engine, network, watch) -> None:
    async with engine.link(MemoryAuthStore("s1"), NO_OPTIONS) as link:
        events = watch(link)
        qr = await events.expect(QRCode)
        await network.scan(qr.code.split(",")[0], PHONE)
        await events.expect(Connected)


async def test_reconnect_with_creds_goes_straight_to_connected(engine, network, watch) -> None:
    auth = MemoryAuthStore("s1")
    first = await link_device(engine, network, auth, watch)
    async with engine.link(auth, NO_OPTIONS) as link:
        again = await watch(link).expect(Connected)
    assert again == first
    (account,) = await network.accounts()
    assert len(account.devices) == 1, "a reconnect must not link another device"


async def test_the_lid_is_stable_and_devices_are_numbered(engine, network, watch) -> None:
    one = await link_device(engine, network, MemoryAuthStore("s1"), watch)
    two = await link_device(engine, network, MemoryAuthStore("s2"), watch)
    assert (one.jid, two.jid) == (f"{PHONE}:1@s.whatsapp.net", f"{PHONE}:2@s.whatsapp.net")
    assert one.lid == two.lid


async def test_linked_devices_survive_a_network_restart(tmp_path: Path, make_network, watch):
    state = tmp_path / "state" / "sandbox.json"
    before = await make_network(state_path=state)
    auth = MemoryAuthStore("s1")
    first = await link_device(SandboxEngine(network=before), before, auth, watch)
    await before.aclose()

    assert (await auth.load("creds"))["secret"] not in state.read_text(), (
        "secrets are stored hashed"
    )
    after = await make_network(state_path=state)
    async with SandboxEngine(network=after).link(auth, NO_OPTIONS) as link:
        assert await watch(link).expect(Connected) == first
    assert not list(state.parent.glob("*.tmp")), "no temporary file is left behind"


async def test_a_corrupt_state_file_is_a_config_error(tmp_path: Path) -> None:
    state = tmp_path / "sandbox.json"
    state.write_text("{not json")
    with pytest.raises(ConfigError, match="sandbox.json"):
        SandboxNetwork(state_path=state)


async def test_unknown_or_expired_qr_is_not_found(engine, network, watch, clock) -> None:
    with pytest.raises(NotFound, match="unknown or expired QR"):
        await network.scan("2@nope,a,b,c", PHONE)
    async with engine.link(MemoryAuthStore("s1"), NO_OPTIONS) as link:
        events = watch(link)
        old = await events.expect(QRCode)
        await clock.wait_for_sleepers()
        await clock.advance(old.ttl_s)
        await events.expect(QRCode)
        with pytest.raises(NotFound):
            await network.scan(old.code, PHONE)


async def test_a_qr_is_scanned_once(engine, network, watch) -> None:
    async with engine.link(MemoryAuthStore("s1"), NO_OPTIONS) as link:
        qr = await watch(link).expect(QRCode)
        await network.scan(qr.code, PHONE)
        with pytest.raises(NotFound):
            await network.scan(qr.code, "15550002222")


async def test_a_qr_with_the_right_ref_but_other_keys_is_refused(engine, network, watch) -> None:
    async with engine.link(MemoryAuthStore("s1"), NO_OPTIONS) as link:
        qr = await watch(link).expect(QRCode)
        with pytest.raises(NotFound):
            await network.scan(qr.code.split(",")[0] + ",x,y,z", PHONE)


async def test_pair_code_flow(engine, network, watch) -> None:
    auth = MemoryAuthStore("s1")
    async with engine.link(auth, LinkOptions(pair_phone="+1 (555) 000-1111")) as link:
        events = watch(link)
        await events.expect(QRCode)
        code = await events.expect(PairCode)
        assert re.fullmatch(r"[1-9A-HJ-NP-TV-Z]{4}-[1-9A-HJ-NP-TV-Z]{4}", code.code)
        linked = await network.pair(code.code.replace("-", "").lower())
        connected = await events.expect(Connected)
    assert linked["phone"] == PHONE and connected.phone == PHONE
    assert (await auth.load("creds")) is not None
    with pytest.raises(NotFound, match="pairing code"):
        await network.pair(code.code)


async def test_logout_verb_unlinks_the_device(engine, network, watch) -> None:
    auth = MemoryAuthStore("s1")
    await link_device(engine, network, auth, watch)
    async with engine.link(auth, NO_OPTIONS) as link:
        events = watch(link)
        await events.expect(Connected)
        await link.logout()
        assert await events.rest() == [
            Disconnected(DisconnectKind.LOGGED_OUT, "logged out by the client")
        ]
    async with engine.link(auth, NO_OPTIONS) as link:
        gone = await watch(link).rest()
    assert [event.kind for event in gone] == [DisconnectKind.LOGGED_OUT]


async def test_a_second_connection_replaces_the_first(engine, network, watch) -> None:
    auth = MemoryAuthStore("s1")
    await link_device(engine, network, auth, watch)
    async with engine.link(auth, NO_OPTIONS) as first:
        first_events = watch(first)
        await first_events.expect(Connected)
        assert (await network.stats())["replacedStreams"] == 0
        async with engine.link(auth, NO_OPTIONS) as second:
            await watch(second).expect(Connected)
            (ended,) = await first_events.rest()
            assert isinstance(ended, Disconnected) and ended.kind is DisconnectKind.REPLACED
            (live,) = await network.connections()
            assert live.state == "connected"
    assert await network.stats() == {"connections": 0, "replacedStreams": 1}


async def test_outage_refuses_new_connections_until_it_ends(engine, network, watch) -> None:
    await network.set_outage(True)
    with pytest.raises(TransientError, match="down"):
        async with engine.link(MemoryAuthStore("s1"), NO_OPTIONS):
            pass
    await network.set_outage(False)
    async with engine.link(MemoryAuthStore("s1"), NO_OPTIONS) as link:
        await watch(link).expect(QRCode)


async def test_banned_phone_cannot_link_a_new_device(engine, network, watch) -> None:
    await link_device(engine, network, MemoryAuthStore("s1"), watch)
    await network.fault("ban", phone=PHONE)
    async with engine.link(MemoryAuthStore("s2"), NO_OPTIONS) as link:
        qr = await watch(link).expect(QRCode)
        with pytest.raises(Conflict, match="banned"):
            await network.scan(qr.code, PHONE)


async def test_closing_the_link_closes_the_connection(engine, network, watch) -> None:
    async with engine.link(MemoryAuthStore("s1"), NO_OPTIONS) as link:
        await watch(link).expect(QRCode)
        assert len(await network.connections()) == 1
    async with asyncio.timeout(5):
        await network.wait_connections(lambda live: not live)
