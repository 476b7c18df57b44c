"""Every route of the OpenAPI schema, given bad values: a 4xx JSON error, never a 5xx.

The walker reads ``app.openapi()``, so a route added later is walked too. For
each operation it sends one bad value at a time (every other input good) in
each path and query parameter and each JSON body field (one level of nesting),
plus a few bad whole bodies. A NUL character (which PostgreSQL cannot store)
must be a 422 naming the field, wherever it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from wagate.engine.base import QRCode
from wagate.roles.serve import Gateway
from wagate.testing import ScriptedEngine

from ..conftest import ClientFactory

NUL = "a\x00b"
ALICE = "6281111111111"
HUGE = 2**63
OVERLONG = "x" * 5_000
HOOK = "https://93.184.216.34/hook"  # a public address: no DNS needed

# path parameters that must name something that exists, so the request reaches the handler
GOOD_PATH = {
    "session_id": "s1",
    "group_id": "g1",
    "message_id": "1",
    "name": "fetch_groups_requested",
    "media_id": "1",
    "delivery_id": "1",
}
# bodies that are valid as they are (the walker spoils one field at a time)
GOOD_BODY: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/api/sessions/{session_id}/messages"): {"to": ALICE, "text": "hi"},
    ("post", "/session/{session_id}/send"): {"to": ALICE, "message": "hi"},
    ("post", "/api/webhooks"): {"url": HOOK, "events": ["*"], "enabled": False},
    ("patch", "/api/sessions/{session_id}/groups/{group_id}"): {"monitor": True},
}
QUERY_BAD = ["9" * 30, str(-HUGE - 1), "-1", "1e400", "abc", OVERLONG]
DATES_BAD = ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "10000-01-01"]
BODY_BAD: list[Any] = [HUGE, -HUGE - 1, 10**30, [], {}, True, 1.5, "", OVERLONG, None]
RAW_BAD = [b"{not json", b"[" * 100_000, b'"' + b"x" * 100 + b'"', b"[]", b"null"]


@dataclass
class Op:
    method: str
    path: str
    params: list[dict[str, Any]]
    body: dict[str, Any] | None  # the JSON body's schema, $refs resolved
    form: dict[str, Any] | None  # the multipart body's schema
    good_path: dict[str, str] = field(default_factory=dict)

    def url(self, path_values: dict[str, str], query: dict[str, str] | None = None) -> str:
        url = self.path
        for name in path_values:
            url = url.replace("{" + name + "}", quote(path_values[name], safe=""))
        if query:
            url += "?" + "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in query.items())
        return url

    def good_body(self) -> dict[str, Any]:
        given = GOOD_BODY.get((self.method, self.path))
        if given is not None:
            return dict(given)
        schema = self.body or {}
        return {name: sample(schema["properties"][name]) for name in schema.get("required", [])}


def resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """``$ref`` and ``anyOf: [X, null]`` resolved to X."""
    while True:
        if "$ref" in schema:
            schema = root["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        elif "anyOf" in schema:
            options = [s for s in schema["anyOf"] if s.get("type") != "null"]
            schema = options[0] if len(options) == 1 else {"anyOf": options}
        else:
            return schema


def sample(schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    return {"integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}.get(
        str(kind), "x"
    )


def operations(root: dict[str, Any], webhook_id: str) -> list[Op]:
    ops = []
    for path, methods in root["paths"].items():
        for method, spec in methods.items():
            content = spec.get("requestBody", {}).get("content", {})
            body = content.get("application/json", {}).get("schema")
            form = content.get("multipart/form-data", {}).get("schema")
            params = (
                [dict(p, schema=resolve(p["schema"], root)) for p in spec["parameters"]]
                if ("parameters" in spec)
                else []
            )
            op = Op(method, path, params, _resolved(body, root), _resolved(form, root))
            op.good_path = {
                p["name"]: GOOD_PATH.get(p["name"], webhook_id if "webhook" in p["name"] else "x")
                for p in params
                if p["in"] == "path"
            }
            ops.append(op)
    return ops


def _resolved(schema: dict[str, Any] | None, root: dict[str, Any]) -> dict[str, Any] | None:
    if schema is None:
        return None
    schema = resolve(schema, root)
    props = {name: resolve(p, root) for name, p in schema.get("properties", {}).items()}
    return {**schema, "properties": props}


@dataclass
class Case:
    """One request with one bad value; ``nul_field`` is the field a NUL was put in."""

    op: Op
    url: str
    json_body: Any = None
    raw: bytes | None = None
    form: dict[str, str] | None = None
    nul_field: str | None = None
    label: str = ""

    async def send(self, api: httpx.AsyncClient) -> httpx.Response:
        if self.form is not None:
            files = {"file": ("a.png", b"\x89PNG\r\n\x1a\n" + b"0" * 64, "image/png")}
            return await api.request(self.op.method, self.url, data=self.form, files=files)
        if self.raw is not None:
            headers = {"Content-Type": "application/json"}
            return await api.request(self.op.method, self.url, content=self.raw, headers=headers)
        if self.json_body is not None:
            return await api.request(self.op.method, self.url, json=self.json_body)
        return await api.request(self.op.method, self.url)


def param_cases(op: Op) -> Iterator[Case]:
    base = op.good_body() if op.body is not None else None
    for p in op.params:
        if p["in"] not in ("path", "query"):
            continue
        kind = p["schema"].get("type")
        values = DATES_BAD if p["schema"].get("format") == "date-time" else QUERY_BAD
        if kind == "string" and p["in"] == "path":
            values = ["9" * 30, OVERLONG]
        for value in [NUL, *values]:
            nul = p["name"] if value == NUL else None
            label = f"{p['in']} {p['name']}={value[:20]!r}"
            if p["in"] == "path":
                url = op.url({**op.good_path, p["name"]: value})
            else:
                url = op.url(op.good_path, {p["name"]: value})
            yield Case(op, url, json_body=base, nul_field=nul, label=label)


def body_cases(op: Op) -> Iterator[Case]:
    if op.body is None:
        return
    url = op.url(op.good_path)
    base = op.good_body()
    for name, prop in op.body.get("properties", {}).items():
        for value in [NUL, *BODY_BAD]:
            yield Case(
                op,
                url,
                json_body={**base, name: value},
                nul_field=name if value == NUL else None,
                label=f"body {name}={str(value)[:20]!r}",
            )
        nested = prop.get("properties", {})
        for sub, sub_schema in nested.items():
            inner = {k: sample(nested[k]) for k in prop.get("required", [])}
            for value in [NUL, HUGE, [], OVERLONG]:
                bad = {**inner, sub: value} if sub_schema.get("type") == "string" else {sub: value}
                yield Case(
                    op,
                    url,
                    json_body={**base, name: bad},
                    nul_field=f"{name}.{sub}" if value == NUL else None,
                    label=f"body {name}.{sub}={str(value)[:20]!r}",
                )
    yield Case(op, url, json_body={**base, "extra\x00key": 1}, nul_field="extra\\0key")
    for raw in RAW_BAD:
        yield Case(op, url, raw=raw, label=f"raw {raw[:20]!r}")


def form_cases(op: Op) -> Iterator[Case]:
    if op.form is None:
        return
    url = op.url(op.good_path)
    for name, prop in op.form.get("properties", {}).items():
        if prop.get("format") == "binary":
            continue
        good = {"to": ALICE, "type": "image"}
        for value in [NUL, OVERLONG, "{", "9" * 30]:
            yield Case(
                op,
                url,
                form={**good, name: value},
                nul_field=name if value == NUL else None,
                label=f"form {name}={value[:20]!r}",
            )


@pytest.fixture
async def client(api_clients: ClientFactory, gateway: Gateway) -> httpx.AsyncClient:
    """Like ``api`` (``gateway.app()``), but a 500 is an answer to look at, not an exception."""
    return await api_clients(gateway, raise_app_exceptions=False)


@pytest.fixture
async def walked(client: httpx.AsyncClient, engine: ScriptedEngine) -> list[Op]:
    """The schema's operations, with a session, a group and a subscription to aim at."""
    engine.add([QRCode("2@a,b,c,d", 60)])
    api = client
    assert (await api.post("/api/sessions/provision", json={"id": "s1"})).status_code == 201
    hook = {"url": HOOK, "events": ["*"], "enabled": False}  # nothing is ever sent to it
    made = await api.post("/api/webhooks", json=hook)
    assert made.status_code == 201, made.text
    root = (await api.get("/openapi.json")).json()
    return operations(root, made.json()["id"])


def _problem(case: Case, r: httpx.Response) -> str | None:
    where = f"{case.op.method.upper()} {case.op.path} [{case.label}]: {r.status_code}"
    try:
        body = r.json()
    except json.JSONDecodeError:
        return f"{where} not JSON: {r.text[:120]}"
    if r.status_code >= 500:
        return f"{where} {r.text[:200]}"
    if r.status_code >= 400 and not (body.get("success") is False and "error" in body):
        return f"{where} not an error envelope: {r.text[:200]}"
    if case.nul_field is not None:
        error = body.get("error") if isinstance(body, dict) else None
        got = error.get("field") if isinstance(error, dict) else None
        if r.status_code != 422 or got != case.nul_field:
            return f"{where} NUL in {case.nul_field!r} gave field {got!r}: {r.text[:200]}"
    return None


async def test_every_route_rejects_bad_values_with_a_4xx(
    client: httpx.AsyncClient, walked: list[Op]
) -> None:
    problems = []
    count = 0
    for op in walked:
        for case in [*param_cases(op), *body_cases(op), *form_cases(op)]:
            count += 1
            problem = _problem(case, await case.send(client))
            if problem:
                problems.append(problem)
    assert count > 500  # the walker found the routes
    assert not problems, f"{len(problems)} of {count}:\n" + "\n".join(problems)


async def test_every_string_input_is_walked_with_a_nul(walked: list[Op]) -> None:
    cases = [c for op in walked for c in [*param_cases(op), *body_cases(op), *form_cases(op)]]
    nul_fields = {(c.op.method, c.op.path, c.nul_field) for c in cases if c.nul_field}
    for expected in [
        ("get", "/api/sessions/{session_id}/audit", "event"),
        ("get", "/api/sessions/{session_id}/messages", "chat"),
        ("post", "/api/sessions/provision", "proxy"),
        ("post", "/session/create", "userId"),
        ("post", "/session/create", "sessionName"),
        ("post", "/session/{session_id}/send", "message"),
        ("post", "/session/{session_id}/send", "idempotencyKey"),
        ("post", "/api/sessions/{session_id}/messages", "text"),
        ("post", "/api/sessions/{session_id}/messages", "media.url"),
    ]:
        assert expected in nul_fields
