"""``wagate sandbox send | inbox | group create | group rename`` against a running sandbox."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import Result
from starlette.applications import Starlette
from starlette.routing import Mount
from typer.testing import CliRunner

from tests.sandbox.support import ALICE, BOB, CAROL, Served, jid
from wagate.cli import app
from wagate.sandbox import create_app

TOKEN = "sandbox-token"
# Variables a developer's shell may carry that would point the CLI elsewhere.
_CLEARED = ("WAGATE_SANDBOX_URL", "WAGATE_SANDBOX_KEY", "WAGATE_URL", "WAGATE_API_KEY")


class Cli:
    """Runs the CLI in a thread, so the server in this event loop keeps serving."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.env: dict[str, str | None] = dict.fromkeys(_CLEARED)
        self.env |= {"WAGATE_DATA_DIR": str(tmp_path / "data"), **env}

    async def __call__(self, *args: str) -> Result:
        runner = CliRunner()
        return await asyncio.to_thread(runner.invoke, app, list(args), env=self.env)


@pytest.fixture
async def sandbox(network, serve_app) -> Served:
    return await serve_app(create_app(network, control_token=TOKEN))


@pytest.fixture
def cli(sandbox: Served, tmp_path: Path) -> Cli:
    return Cli(tmp_path, SANDBOX_URL=sandbox.base, SANDBOX_KEY=TOKEN, API_KEY="gateway-key")


async def test_send_a_text_then_read_the_inbox(cli, network) -> None:
    sent = await cli("sandbox", "send", "--from", BOB, "--to", ALICE, "--text", "hi from the cli")
    assert sent.exit_code == 0, sent.output
    msg_id = sent.stdout.strip()
    (entry,) = await network.inbox(ALICE)
    assert entry["id"] == msg_id and entry["text"] == "hi from the cli"

    await network.phone_send(CAROL, ALICE, text="second ✓")
    listed = await cli("sandbox", "inbox", f"+{ALICE}")
    assert listed.exit_code == 0, listed.output
    lines = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(m["id"], m["from"]) for m in lines][0] == (msg_id, jid(BOB))
    assert lines[1]["text"] == "second ✓"


async def test_send_a_file_with_a_caption(cli, network, tmp_path) -> None:
    picture = tmp_path / "cat.png"
    picture.write_bytes(b"\x89PNG" + bytes(64))
    sent = await cli(
        "sandbox", "send", "--from", BOB, "--to", ALICE, "--media", str(picture), "--caption", "cat"
    )
    assert sent.exit_code == 0, sent.output
    (entry,) = await network.inbox(ALICE)
    assert (entry["kind"], entry["mimetype"], entry["filename"], entry["text"]) == (
        "image",
        "image/png",
        "cat.png",
        "cat",
    )
    assert await network.blob(entry["media_handle"]) == picture.read_bytes()


async def test_create_and_rename_a_group_then_send_into_it(cli, network) -> None:
    created = await cli(
        "sandbox",
        "group",
        "create",
        "CLI group",
        "--owner",
        BOB,
        "--member",
        ALICE,
        "--member",
        CAROL,
    )
    assert created.exit_code == 0, created.output
    group = created.stdout.strip()
    assert group.endswith("@g.us")
    renamed = await cli("sandbox", "group", "rename", group, "Renamed")
    assert renamed.exit_code == 0 and "Renamed" in renamed.stdout
    sent = await cli("sandbox", "send", "--from", BOB, "--to", group, "--text", "all of you")
    assert sent.exit_code == 0, sent.output
    for member in (ALICE, CAROL):
        (entry,) = await network.inbox(member)
        assert entry["chat"] == group and entry["text"] == "all of you"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("sandbox", "send", "--from", BOB, "--to", ALICE), "either --text"),
        (
            ("sandbox", "send", "--from", BOB, "--to", ALICE, "--text", "a", "--caption", "c"),
            "--media",
        ),
        (("sandbox", "send", "--from", "bob", "--to", ALICE, "--text", "x"), "422"),
        (("sandbox", "group", "rename", "120363000000000000@g.us", "x"), "404"),
        (("sandbox", "inbox", "not-a-phone"), "422"),
    ],
)
async def test_mistakes_are_one_clear_line(args, message, cli) -> None:
    result = await cli(*args)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.output


async def test_without_sandbox_url_the_gateway_mount_is_used(network, serve_app, tmp_path) -> None:
    gateway = Starlette(routes=[Mount("/sandbox", app=create_app(network, control_token="gw"))])
    served = await serve_app(gateway)
    cli = Cli(tmp_path, WAGATE_URL=served.base, API_KEY="gw")
    sent = await cli("sandbox", "send", "--from", BOB, "--to", ALICE, "--text", "via the gateway")
    assert sent.exit_code == 0, sent.output
    listed = await cli("sandbox", "inbox", ALICE)
    assert json.loads(listed.stdout)["text"] == "via the gateway"
    wrong = Cli(tmp_path, WAGATE_URL=served.base, API_KEY="nope")
    refused = await wrong("sandbox", "inbox", ALICE)
    assert refused.exit_code == 1 and "401" in refused.stderr
