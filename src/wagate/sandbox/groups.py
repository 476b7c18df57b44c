"""Groups on the sandbox network: their JIDs, subjects and members.

A :class:`GroupBook` is state only (the ``groups`` section of the state file);
telling members' devices about changes is the post office's job. Members are
account phones (digits); the owner is always a member.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from wagate.clock import Clock
from wagate.errors import InvalidInput, NotFound
from wagate.sandbox.state import StateFile

MAX_SUBJECT = 100  # WhatsApp's limit on a group's name
MAX_MEMBERS = 1_024


def check_subject(name: object, field: str = "name") -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_SUBJECT:
        raise InvalidInput(field, f"{field} must be a non-empty string of at most {MAX_SUBJECT}")
    return name.strip()


def _new_group_jid() -> str:
    # WhatsApp's current group ids: 120363 and twelve more digits.
    return "120363" + "".join(str(secrets.randbelow(10)) for _ in range(12)) + "@g.us"


@dataclass(slots=True)
class Group:
    """One group: its JID, subject, owner and member phones."""

    jid: str
    name: str
    owner: str
    members: list[str] = field(default_factory=list)
    created_at: str = ""

    def info(self) -> dict[str, Any]:
        """The group as the ``groups`` op lists it."""
        return {
            "jid": self.jid,
            "name": self.name,
            "participants": len(self.members),
            "owner": f"{self.owner}@s.whatsapp.net",
            "announce": False,
        }


class GroupBook:
    """Every group on the network, by JID; ``clock`` stamps when each was created."""

    def __init__(self, state: StateFile, clock: Clock) -> None:
        self._state = state
        self._clock = clock
        self._groups: dict[str, Group] = state.load("groups", _groups, {})
        state.register("groups", self._dump)

    def get(self, jid: str) -> Group | None:
        return self._groups.get(jid)

    def require(self, jid: str) -> Group:
        group = self._groups.get(jid)
        if group is None:
            raise NotFound(f"no group {jid[:80]!r}")
        return group

    def of(self, phone: str) -> list[Group]:
        """The groups ``phone`` is a member of, oldest first."""
        return [group for group in self._groups.values() if phone in group.members]

    def create(self, name: str, owner: str, members: Iterable[str]) -> Group:
        everyone = list(dict.fromkeys([owner, *members]))  # once each, owner first
        if len(everyone) > MAX_MEMBERS:
            raise InvalidInput("members", f"a group has at most {MAX_MEMBERS} members")
        jid = _new_group_jid()
        while jid in self._groups:
            jid = _new_group_jid()
        created_at = self._clock.now().isoformat()
        group = Group(jid, check_subject(name), owner, everyone, created_at)
        self._groups[jid] = group
        self._state.save_now()
        return group

    def rename(self, jid: str, name: str) -> Group:
        group = self.require(jid)
        group.name = check_subject(name)
        self._state.save_now()
        return group

    def add(self, jid: str, phones: Iterable[str]) -> Group:
        group = self.require(jid)
        members = list(dict.fromkeys([*group.members, *phones]))
        if len(members) > MAX_MEMBERS:
            raise InvalidInput("members", f"a group has at most {MAX_MEMBERS} members")
        group.members = members
        self._state.save_now()
        return group

    def remove(self, jid: str, phones: Iterable[str]) -> Group:
        group = self.require(jid)
        gone = set(phones)
        if group.owner in gone:
            raise InvalidInput("members", "the owner cannot be removed from the group")
        group.members = [phone for phone in group.members if phone not in gone]
        self._state.save_now()
        return group

    def _dump(self) -> dict[str, Any]:
        return {jid: asdict(group) for jid, group in self._groups.items()}


def _groups(raw: dict[str, Any]) -> dict[str, Group]:
    return {jid: Group(**value) for jid, value in raw.items()}
