"""Reading messages, both directions: one message, a filtered history page, seed 002's pages."""

from __future__ import annotations

from dataclasses import replace

from wagate.domain.message import STATUSES, HistoryQuery, Message
from wagate.domain.session import Session
from wagate.errors import InvalidInput, NotFound
from wagate.outbound.rules import recipient_jid
from wagate.storage.repos.messages import MessageRepo
from wagate.storage.repos.sessions import SessionRepo


class MessageService:
    """Message history for every API door (sending is the outbound side's ``SendService``)."""

    def __init__(self, messages: MessageRepo, sessions: SessionRepo) -> None:
        self.messages = messages
        self.sessions = sessions

    async def session(self, session_id: str) -> Session:
        return await self.sessions.require(session_id)

    async def get(self, session_id: str, ident: str) -> Message:
        """A message of the session by our id or its WhatsApp id."""
        await self.session(session_id)
        message = await self.messages.find(session_id, ident.strip())
        if message is None:
            raise NotFound(f"message {ident[:80]!r} not found in session {session_id!r}")
        return message

    async def history(self, session_id: str, query: HistoryQuery) -> list[Message]:
        await self.session(session_id)
        if query.direction not in (None, "in", "out"):
            raise InvalidInput("direction", "direction must be in or out")
        if query.status is not None and query.status not in STATUSES:
            raise InvalidInput("status", f"status must be one of: {', '.join(STATUSES)}")
        if query.chat is not None:
            query = replace(query, chat=_chat_filter(query.chat))
        return await self.messages.history(session_id, query)

    async def page(
        self, session_id: str, limit: int, offset: int
    ) -> tuple[Session, list[Message], int]:
        """Seed 002's pages: the session, ``limit`` messages after ``offset``, and the total."""
        session = await self.session(session_id)
        messages, total = await self.messages.page(session_id, limit, offset)
        return session, messages, total


def _chat_filter(chat: str) -> str:
    try:
        return recipient_jid(chat, "chat")
    except InvalidInput:
        return chat.strip()  # a chat we do not parse (a broadcast list) can still be matched
