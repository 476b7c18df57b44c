"""The sandbox network's state file: groups, inboxes, queues and sent ids survive a restart.

Message changes are saved late, on the network's clock; closing flushes them.
"""

from __future__ import annotations

import json

import pytest

from tests.sandbox.support import ALICE, BOB, CAROL, link_auth, online
from wagate.clock import ManualClock
from wagate.domain.group import GroupInfo
from wagate.engine.base import GroupEvent
from wagate.engine.sandbox import SandboxEngine
from wagate.errors import ConfigError
from wagate.sandbox import SandboxLimits, SandboxNetwork
from wagate.testing import eventually


async def test_groups_inboxes_and_queues_survive_a_restart(tmp_path, make_network) -> None:
    state = tmp_path / "state" / "sandbox.json"
    before = await make_network(state_path=state)
    auth = await link_auth(before)
    group = await before.create_group("Kept", BOB, [ALICE, CAROL])
    await before.rename_group(group, "Kept too")
    waiting = await before.phone_send(BOB, ALICE, text="wait for me", msg_id="KEEP-1")
    await before.phone_send(ALICE, CAROL, text="in carol's inbox")
    await before.aclose()

    after = await make_network(state_path=state)
    assert [entry["text"] for entry in await after.inbox(CAROL)] == ["in carol's inbox"]
    assert [entry["id"] for entry in await after.inbox(ALICE)] == [waiting]
    # The sent id is remembered: a resend after the restart is still the same message.
    assert await after.phone_send(BOB, ALICE, text="wait for me", msg_id="KEEP-1") == waiting
    assert len(await after.inbox(ALICE)) == 1
    async with online(SandboxEngine(network=after), auth) as alice:
        created, renamed = [await alice.events.expect(GroupEvent) for _ in range(2)]
        assert (created.change, renamed.name) == ("created", "Kept too")
        assert (await alice.message()).id == waiting
        assert await alice.link.groups() == [
            GroupInfo(
                group, "Kept too", participants=3, owner=f"{BOB}@s.whatsapp.net", announce=False
            )
        ]
    assert not list(state.parent.glob("*.tmp")), "no temporary file is left behind"


async def test_message_writes_are_coalesced_and_flushed_on_close(
    tmp_path, make_network, clock: ManualClock
) -> None:
    state = tmp_path / "sandbox.json"
    network = await make_network(state_path=state, limits=SandboxLimits(save_delay_s=60))
    for n in range(50):
        await network.phone_send(BOB, ALICE, text=str(n))
    await clock.wait_for_sleepers()
    assert clock.sleeps == [60], "fifty changes, one delayed save"
    await clock.advance(59)
    assert not state.exists(), "nothing written yet: the delay has not passed"
    await network.aclose()
    saved = json.loads(state.read_text())
    assert saved["version"] == 2 and len(saved["mail"]["inboxes"][ALICE]) == 50


async def test_the_delay_writes_without_a_close(tmp_path, make_network, clock: ManualClock):
    state = tmp_path / "sandbox.json"
    network = await make_network(state_path=state)  # the default delay: 0.2 s
    await network.phone_send(BOB, ALICE, text="soon")
    await clock.wait_for_sleepers()
    await clock.advance(0.1)
    assert not state.exists()
    await clock.advance(0.1)
    await eventually(state.exists)
    assert "soon" in state.read_text()
    await network.phone_send(BOB, ALICE, text="and later")
    await clock.wait_for_sleepers()
    await clock.advance(0.2)
    await eventually(lambda: "and later" in state.read_text())


async def test_groups_keep_when_they_were_created(tmp_path, make_network, clock) -> None:
    state = tmp_path / "sandbox.json"
    network = await make_network(state_path=state)
    await clock.advance(3600)
    group = await network.create_group("Dated", BOB, [ALICE])
    (saved,) = json.loads(state.read_text())["groups"].values()
    assert (saved["jid"], saved["created_at"]) == (group, clock.now().isoformat())


async def test_a_version_1_state_file_still_links(tmp_path, make_network, watch) -> None:
    state = tmp_path / "sandbox.json"
    first = await make_network(state_path=state)
    auth = await link_auth(first)
    await first.aclose()
    saved = json.loads(state.read_text())
    state.write_text(json.dumps({"version": 1, "accounts": saved["accounts"]}))
    again = await make_network(state_path=state)
    async with online(SandboxEngine(network=again), auth):
        pass
    assert await again.inbox(ALICE) == []


@pytest.mark.parametrize(
    "payload",
    [
        {"version": 3, "accounts": {}},
        {"version": 2, "accounts": {}, "groups": {"x@g.us": {"unexpected": 1}}},
        {"version": 2, "accounts": {}, "mail": {"inboxes": []}},
        [1, 2, 3],
    ],
)
async def test_an_unreadable_state_file_is_a_config_error(payload, tmp_path) -> None:
    state = tmp_path / "sandbox.json"
    state.write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match="sandbox.json"):
        SandboxNetwork(state_path=state)
