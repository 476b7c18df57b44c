"""``wagate``: serve the gateway, run the sandbox network, act as the phone, manage sessions,
rebuild Redis."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import segno
import typer
from rich.console import Console
from rich.table import Table

from wagate.errors import ConfigError, RequestError, StorageError
from wagate.ids import SESSION_ID_RULE, is_session_id
from wagate.settings import Settings, load_settings, variable

app = typer.Typer(
    help="wagate: a self-hosted, multi-session WhatsApp gateway.", no_args_is_help=True
)
sandbox_app = typer.Typer(help="The sandbox WhatsApp network: run it, or act as a phone on it.")
sessions_app = typer.Typer(help="Manage sessions on a running gateway.", no_args_is_help=True)
admin_app = typer.Typer(help="The admin API's users (a control plane's).", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
redis_app = typer.Typer(help="Redis, a fleet's cache and bus.", no_args_is_help=True)
app.add_typer(sessions_app, name="sessions")
app.add_typer(redis_app, name="redis")
app.add_typer(admin_app, name="admin")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def _fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(1)


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        _fail(exc.message)


# --- serve / migrate ------------------------------------------------------------------


def _run_role(role: str, settings: Settings) -> None:
    """Run ``wagate.roles.<role>`` until a signal; a start-up error is one line, exit 1."""
    module = importlib.import_module(f"wagate.roles.{role}")  # loads only what the role needs
    try:
        asyncio.run(module.run(settings))
    except ConfigError as exc:
        _fail(exc.message)
    except KeyboardInterrupt:
        pass


@app.command()
def serve(
    engine: Annotated[str | None, typer.Option(help="sandbox or neonize")] = None,
    port: Annotated[
        int | None, typer.Option(help="HTTP port (default PORT, else WORKER_PORT, else 8080)")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1)")] = None,
) -> None:
    """Run the gateway: control plane + an embedded worker (SQLite + local files by default)."""
    settings = _settings(engine=engine, port=port, host=host)
    _run_role("serve", settings)


@app.command()
def worker(
    engine: Annotated[str | None, typer.Option(help="sandbox or neonize")] = None,
    port: Annotated[
        int | None, typer.Option(help="HTTP port (default PORT, else WORKER_PORT, else 8080)")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1)")] = None,
    session: Annotated[
        str | None,
        typer.Option(help="Run this one session only (seed 004's isolation; SESSION_ID)"),
    ] = None,
    uplink: Annotated[
        str | None,
        typer.Option(
            help="fleet (seed 002: a control plane and the shared database) or edge (seed 001: "
            "a worker-proxy at EDGE_BASE_URL); default edge when EDGE_BASE_URL is set and "
            "DATABASE_URL is not"
        ),
    ] = None,
) -> None:
    """Run a worker: of a fleet (seed 002), or an edge worker for a worker-proxy (seed 001)."""
    if uplink is not None and uplink not in ("fleet", "edge"):
        _fail(f"--uplink must be fleet or edge, not {uplink!r}")
    settings = _settings(engine=engine, port=port, host=host, session_id=session, uplink=uplink)
    from wagate.roles.edge import wants_edge

    _run_role("edge" if wants_edge(settings) else "worker", settings)


@app.command()
def control(
    port: Annotated[int | None, typer.Option(help="HTTP port (default PORT, else 8080)")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1)")] = None,
) -> None:
    """Run a control plane replica of a fleet: the API, the registry, the scheduler."""
    settings = _settings(port=port, host=host)
    _run_role("control", settings)


@app.command()
def migrate() -> None:
    """Apply database migrations (``wagate serve`` also does this at start)."""
    settings = _settings()
    from wagate.storage.db import migrate as run_migrations

    try:
        asyncio.run(run_migrations(settings.sqlalchemy_url))
    except ConfigError as exc:
        _fail(exc.message)
    out.print("database is up to date")


# --- admin users ----------------------------------------------------------------------


@admin_app.command("create-user")
def admin_create_user(
    username: str,
    password: Annotated[
        str | None, typer.Option(help="The password (default: asked for, hidden)")
    ] = None,
    update: Annotated[
        bool, typer.Option("--update", help="Set the password of an existing user")
    ] = False,
) -> None:
    """Add a user of the admin API (migrates the database at DATABASE_URL first)."""
    settings = _settings()
    if settings.database_url is None:
        _fail(f"set {variable('database_url')}: admin users live in the control plane's database")
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    from wagate.roles.registry import create_admin_user

    try:
        user = asyncio.run(create_admin_user(settings, username, password, update=update))
    except (ConfigError, RequestError) as exc:
        hint = " (add --update to set its password)" if exc.code == "admin_exists" else ""
        _fail(exc.message + hint)
    out.print(f"admin user {user.username} is ready")


# --- sandbox --------------------------------------------------------------------------


@sandbox_app.callback(invoke_without_command=True)
def sandbox(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Bind address")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Port (default SANDBOX_PORT, 8090)")] = None,
    state: Annotated[Path | None, typer.Option(help="State file (linked devices)")] = None,
    key: Annotated[
        str | None, typer.Option(help="Key its control API and websocket want (SANDBOX_KEY)")
    ] = None,
) -> None:
    """Run the sandbox WhatsApp network as a server (when no subcommand is given)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = _settings()
    from wagate.clock import SystemClock
    from wagate.sandbox import SandboxNetwork, SandboxTimings
    from wagate.sandbox.server import run_server

    view = settings.sandbox
    network = SandboxNetwork(
        timings=SandboxTimings(
            qr_first_s=view.qr_first_s, qr_next_s=view.qr_next_s, qr_count=view.qr_count
        ),
        state_path=state or view.state_file,
        clock=SystemClock(),
    )
    from wagate.logs import configure
    from wagate.serving import bind

    configure(settings.log_level)
    token = key or view.key
    source = "--port" if port else "WAGATE_SANDBOX_PORT"
    port = port or view.port
    try:
        sock = bind(host, port, source)
    except ConfigError as exc:
        _fail(exc.message)
    with sock:
        try:
            serving = run_server(
                network,
                host,
                port,
                control_token=token,
                sock=sock,
                ws_ping_interval_s=view.ws_ping_interval_s,
                ws_ping_timeout_s=view.ws_ping_timeout_s,
            )
            asyncio.run(serving)
        except KeyboardInterrupt:
            pass


class _Gateway:
    """A small client of a running gateway's API, configured like ``serve``."""

    def __init__(self, url: str | None, api_key: str | None) -> None:
        self.settings = _settings()
        s = self.settings
        self.url = (url or s.gateway_url or f"http://{_client_host(s.host)}:{s.port}").rstrip("/")
        self.timeout = s.cli_timeout_ms / 1000
        self.key = api_key or s.api_key or _stored_key(s)
        if not self.key:
            _fail(f"no API key: set API_KEY or pass --api-key (none stored in {s.api_key_file})")

    def call(self, method: str, path: str, **kw: Any) -> Any:
        headers = {"X-Api-Key": self.key or "", "Accept": "application/json"}
        try:
            resp = httpx.request(
                method, self.url + path, headers=headers, timeout=self.timeout, **kw
            )
        except httpx.HTTPError as exc:
            _fail(f"cannot reach the gateway at {self.url}: {exc}")
        return _json_or_fail(resp)

    def sandbox_control(
        self, path: str, body: dict[str, Any] | None = None, *, method: str = "POST"
    ) -> Any:
        """Call the sandbox's control API: ``SANDBOX_URL``'s, else the gateway's ``/sandbox``."""
        s = self.settings
        base = s.sandbox_url.rstrip("/") if s.sandbox_url else self.url + "/sandbox"
        key = s.sandbox_key if s.sandbox_url else self.key
        headers = {"X-Api-Key": key} if key else {}
        try:
            resp = httpx.request(
                method, f"{base}/control{path}", json=body, headers=headers, timeout=self.timeout
            )
        except httpx.HTTPError as exc:
            _fail(f"cannot reach the sandbox at {base}: {exc}")
        return _json_or_fail(resp)


def _json_or_fail(resp: httpx.Response) -> Any:
    try:
        body = resp.json()
    except ValueError:
        body = {"error": {"message": resp.text[:200]}}
    if resp.status_code >= 400:
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        _fail(f"{resp.status_code}: {message or body}")
    return body


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _stored_key(settings: Settings) -> str | None:
    try:
        return settings.api_key_file.read_text("utf-8").strip() or None
    except FileNotFoundError:
        return None


def _session_path(session_id: str, *rest: str) -> str:
    """``/api/sessions/<id>/…``, with the id checked as the API checks it, then quoted."""
    if not is_session_id(session_id):
        _fail(f"invalid session id {session_id[:80]!r}: {SESSION_ID_RULE}")
    return "/".join(["/api/sessions", quote(session_id, safe=""), *rest])


UrlOpt = Annotated[str | None, typer.Option("--url", help="Gateway URL (WAGATE_URL)")]
KeyOpt = Annotated[str | None, typer.Option("--api-key", help="API key (API_KEY)")]


@sandbox_app.command("scan")
def sandbox_scan(
    session_id: str,
    phone: Annotated[str, typer.Option(help="The phone number that scans")],
    push_name: Annotated[str | None, typer.Option(help="The account's display name")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Act as the phone: scan the session's current QR with PHONE's account."""
    gw = _Gateway(url, api_key)
    qr = gw.call("GET", _session_path(session_id, "qr"))["qr"]
    body = {"qr": qr, "phone": phone}
    if push_name:
        body["pushName"] = push_name
    gw.sandbox_control("/scan", body)
    out.print(f"scanned the QR of {session_id} as +{phone.lstrip('+')}")


@sandbox_app.command("fault")
def sandbox_fault(
    kind: Annotated[str, typer.Argument(help="drop|logout|ban|replaced|proxy_error|slow")],
    session: Annotated[str | None, typer.Option(help="Session id")] = None,
    phone: Annotated[str | None, typer.Option(help="Account phone")] = None,
    delay_ms: Annotated[int | None, typer.Option(help="For slow: added latency")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Inject a fault into a session's connection."""
    gw = _Gateway(url, api_key)
    body: dict[str, Any] = {"kind": kind, "session": session, "phone": phone}
    if delay_ms is not None:
        body["delayMs"] = delay_ms
    out.print_json(json.dumps(gw.sandbox_control("/fault", body)))


@sandbox_app.command("send")
def sandbox_send(
    from_phone: Annotated[str, typer.Option("--from", help="The phone that sends")],
    to: Annotated[str, typer.Option("--to", help="A phone, a @lid or a group JID")],
    text: Annotated[str | None, typer.Option(help="The text to send")] = None,
    media: Annotated[
        Path | None, typer.Option(help="A file to send", exists=True, dir_okay=False)
    ] = None,
    caption: Annotated[str | None, typer.Option(help="The caption of --media")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Act as a phone: send a text or a file to a phone or a group; prints the message id."""
    if (text is None) == (media is None) or (caption is not None and media is None):
        _fail("give either --text, or --media with an optional --caption")
    body: dict[str, Any] = {"from": from_phone, "to": to, "text": text}
    if media is not None:
        import base64
        import mimetypes

        body["mediaBase64"] = base64.b64encode(media.read_bytes()).decode("ascii")
        body["mimetype"] = mimetypes.guess_type(media.name)[0] or "application/octet-stream"
        body |= {"filename": media.name, "caption": caption}
    sent = _Gateway(url, api_key).sandbox_control("/send", body)
    typer.echo(sent["id"])


@sandbox_app.command("inbox")
def sandbox_inbox(phone: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Act as a phone: print what PHONE received, one JSON object a line, oldest first."""
    answer = _Gateway(url, api_key).sandbox_control(f"/inbox/{quote(phone, safe='')}", method="GET")
    for message in answer["messages"]:
        typer.echo(json.dumps(message, ensure_ascii=False))


sandbox_group_app = typer.Typer(help="Act as a phone: create and rename groups.")
sandbox_app.add_typer(sandbox_group_app, name="group")


@sandbox_group_app.command("create")
def sandbox_group_create(
    name: str,
    owner: Annotated[str, typer.Option(help="The phone that creates the group")],
    member: Annotated[list[str], typer.Option(help="A member's phone (repeat the option)")],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Create a group NAME owned by --owner with each --member; prints the group JID."""
    body = {"name": name, "owner": owner, "members": member}
    created = _Gateway(url, api_key).sandbox_control("/groups", body)
    typer.echo(created["jid"])


@sandbox_group_app.command("rename")
def sandbox_group_rename(jid: str, name: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Rename the group JID to NAME (its members' sessions see a group update)."""
    _Gateway(url, api_key).sandbox_control(f"/groups/{quote(jid, safe='@')}/rename", {"name": name})
    typer.echo(f"renamed {jid} to {name}")


# --- sessions -------------------------------------------------------------------------


@sessions_app.command("list")
def sessions_list(url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """List sessions."""
    body = _Gateway(url, api_key).call("GET", "/api/sessions")
    table = Table("id", "state", "phone", "name", "disconnect")
    for s in body["sessions"]:
        table.add_row(
            s["id"],
            s["state"],
            s["phoneNumber"] or s["phone"] or "",
            s["waName"] or "",
            s["disconnectKind"] or "",
        )
    out.print(table)


@sessions_app.command("create")
def sessions_create(
    session_id: Annotated[str | None, typer.Option("--id", help="Session id")] = None,
    phone: Annotated[str | None, typer.Option(help="Phone number (sticky proxy key)")] = None,
    proxy: Annotated[str | None, typer.Option(help="socks5h://host:port")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Provision a session and start linking it."""
    body = {k: v for k, v in {"id": session_id, "phone": phone, "proxy": proxy}.items() if v}
    created = _Gateway(url, api_key).call("POST", "/api/sessions/provision", json=body)
    out.print(created["id"])


@sessions_app.command("qr")
def sessions_qr(session_id: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Draw the session's QR in the terminal."""
    qr = _Gateway(url, api_key).call("GET", _session_path(session_id, "qr"))
    segno.make(qr["qr"], error="l").terminal(out=sys.stdout, compact=True)
    out.print(qr["qr"], highlight=False, soft_wrap=True)


@sessions_app.command("status")
def sessions_status(session_id: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Show a session's status as JSON."""
    body = _Gateway(url, api_key).call("GET", _session_path(session_id, "status"))
    out.print_json(json.dumps(body))


@sessions_app.command("delete")
def sessions_delete(session_id: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Log a session out and delete it."""
    _Gateway(url, api_key).call("DELETE", _session_path(session_id))
    out.print(f"deleted {session_id}")


# --- redis ----------------------------------------------------------------------------


@redis_app.command("rebuild")
def redis_rebuild() -> None:
    """Write seed 004's keys into Redis again from the database (Redis is only a cache)."""
    settings = _settings()
    if settings.database_url is None:
        _fail("DATABASE_URL is not set: the sessions are read from that database")
    if settings.cluster.redis_url is None:
        _fail("REDIS_URL is not set: it names the Redis to write")
    try:
        written = asyncio.run(_rebuild_redis(settings, settings.cluster.redis_url))
    except (ConfigError, StorageError) as exc:
        _fail(exc.message)
    out.print(f"wrote the Redis keys of {written} session{'' if written == 1 else 's'}")


async def _rebuild_redis(settings: Settings, redis_url: str) -> int:
    from wagate.clock import SystemClock
    from wagate.control.cache import RedisMirror
    from wagate.storage.db import Database, create_engine
    from wagate.storage.redis import Redis
    from wagate.storage.repos.sessions import SessionRepo

    view = settings.cluster
    db = Database(create_engine(settings.sqlalchemy_url))
    try:
        connecting = Redis.connect(
            redis_url, prefix=view.redis_prefix, timeout_s=view.redis_timeout_s
        )
        async with await connecting as redis:
            return await RedisMirror(SessionRepo(db, SystemClock()), redis).rebuild()
    finally:
        await db.aclose()


def main() -> None:
    app()
