"""The send endpoints are documented in the OpenAPI schema, with their bodies and examples."""

from __future__ import annotations

from tests.outbound.conftest import Rig


async def test_send_bodies_are_documented(rig: Rig) -> None:
    r = await rig.api.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    ours = paths["/api/sessions/{session_id}/messages"]["post"]
    content = ours["requestBody"]["content"]
    schema = content["application/json"]["schema"]
    assert {"to", "type", "text", "media", "location", "contact", "reaction"} <= set(
        schema["properties"]
    )
    assert "image" in schema["properties"]["type"]["enum"]
    assert "$ref" not in str(schema)  # nested bodies are inlined, so the doc stands alone
    assert {"text", "image by URL", "reaction"} <= set(content["application/json"]["examples"])
    assert "file" in content["multipart/form-data"]["schema"]["properties"]
    assert {"201", "200", "409", "422"} <= set(ours["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in ours["parameters"])
    seed = paths["/session/{session_id}/send"]["post"]["requestBody"]["content"]
    assert {"to", "type", "message"} <= set(seed["application/json"]["schema"]["properties"])
    assert "get" in paths["/session/{session_id}/messages"]
    assert "get" in paths["/api/sessions/{session_id}/messages/{message_id}"]
