"""Messages under ``/api/sessions/{id}/messages``: send (JSON or multipart) and history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from wagate.api.deps import Messages, Sending, SendLimits
from wagate.api.message_body import read_send_body
from wagate.api.message_schemas import MessageListOut, MessageOut, SendMessageIn
from wagate.api.params import RowId, UtcTime
from wagate.domain.message import HistoryQuery

router = APIRouter(prefix="/api/sessions", tags=["messages"])


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=256,
        description="Repeat a request safely: the same key returns the first message (200)",
    ),
]


def inline_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its ``$defs`` expanded in place, for a hand-made body doc."""
    defs = schema.pop("$defs", {})

    def expand(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return expand(defs[ref.rsplit("/", 1)[1]])
            return {key: expand(value) for key, value in node.items()}
        if isinstance(node, list):
            return [expand(value) for value in node]
        return node

    result: dict[str, Any] = expand(schema)
    return result


_EXAMPLES = {
    "text": {"value": {"to": "+6281234567890", "type": "text", "text": "Hello!"}},
    "image by URL": {
        "value": {
            "to": "6281234567890@s.whatsapp.net",
            "type": "image",
            "media": {"url": "https://example.com/cat.jpg"},
            "caption": "a cat",
        }
    },
    "document by base64": {
        "value": {
            "to": "+6281234567890",
            "type": "document",
            "media": {
                "base64": "JVBERi0xLjQK…",
                "mimetype": "application/pdf",
                "filename": "a.pdf",
            },
        }
    },
    "reply in a group, with a mention": {
        "value": {
            "to": "120363012345678901@g.us",
            "text": "@6281234567890 agreed",
            "quotedId": "3EB0C431D5A5F0A1B2C3",
            "mentions": ["+6281234567890"],
            "idempotencyKey": "order-1234-confirmation",
        }
    },
    "location": {
        "value": {
            "to": "+6281234567890",
            "type": "location",
            "location": {"latitude": -6.2, "longitude": 106.8, "name": "Jakarta"},
        }
    },
    "contact card": {
        "value": {
            "to": "+6281234567890",
            "type": "contact",
            "contact": {"name": "Ann", "phone": "+6281200000000"},
        }
    },
    "reaction": {
        "value": {
            "to": "+6281234567890",
            "type": "reaction",
            "reaction": {"messageId": "3EB0C431D5A5F0A1B2C3", "emoji": "👍"},
        }
    },
}

_FORM = {
    "type": "object",
    "required": ["to", "file"],
    "properties": {
        "to": {"type": "string"},
        "type": {"type": "string", "examples": ["image"]},
        "file": {"type": "string", "format": "binary"},
        "caption": {"type": "string"},
        "text": {"type": "string"},
        "mimetype": {"type": "string"},
        "filename": {"type": "string"},
        "quotedId": {"type": "string"},
        "mentions": {"type": "string", "description": "Comma-separated, or repeated"},
        "idempotencyKey": {"type": "string"},
        "location": {"type": "string", "description": "JSON, as in the JSON body"},
        "contact": {"type": "string", "description": "JSON, as in the JSON body"},
        "reaction": {"type": "string", "description": "JSON, as in the JSON body"},
    },
}

SEND_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": inline_schema(SendMessageIn.model_json_schema()),
                "examples": _EXAMPLES,
            },
            "multipart/form-data": {"schema": _FORM},
        },
    }
}


@router.post(
    "/{session_id}/messages",
    status_code=201,
    response_model=MessageOut,
    summary="Send a message (queued durably; sent when the session is connected)",
    openapi_extra=SEND_BODY_DOC,
    responses={
        200: {"model": MessageOut, "description": "A repeat of an idempotency key"},
        409: {"description": "The idempotency key was used for a different message"},
        422: {"description": "A field is invalid; the error names it"},
    },
)
async def send(
    session_id: str,
    request: Request,
    service: Sending,
    limits: SendLimits,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    body, upload = await read_send_body(request, SendMessageIn, limits.media_max_bytes)
    message, created = await service.send(session_id, body.to_request(upload, idempotency_key))
    return JSONResponse(
        MessageOut.of(message).model_dump(mode="json"), status_code=201 if created else 200
    )


@router.get("/{session_id}/messages", summary="Message history, newest first")
async def history(
    session_id: str,
    service: Messages,
    chat: Annotated[str | None, Query(max_length=128, description="Phone or JID")] = None,
    direction: Annotated[str | None, Query(description="in | out")] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    since: Annotated[UtcTime | None, Query(description="From this time (inclusive)")] = None,
    until: Annotated[UtcTime | None, Query(description="Before this time")] = None,
    before: Annotated[RowId | None, Query(description="Cursor: older than this id")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> MessageListOut:
    query = HistoryQuery(
        chat=chat,
        direction=direction,
        status=status,
        since=since,
        until=until,
        before_id=before,
        limit=limit,
    )
    messages = await service.history(session_id, query)
    return MessageListOut(
        messages=[MessageOut.of(m) for m in messages],
        next=messages[-1].id if len(messages) == limit else None,
    )


@router.get("/{session_id}/messages/{message_id}", summary="One message, by our id or WhatsApp's")
async def get_message(session_id: str, message_id: str, service: Messages) -> MessageOut:
    return MessageOut.of(await service.get(session_id, message_id))
