"""The admin API's users (seed 002: "Admin operations require JWT token from user login").

Passwords are hashed with argon2id (``argon2-cffi``) in a thread, so a login
never stalls the event loop. A login answers one message for an unknown user
and a wrong password alike, after the same work (an unknown user's password is
checked against a stand-in hash). Tokens are HS256 JWTs (``sub``, ``iat``,
``exp``) signed with ``JWT_SECRET``; their times come from the injected clock.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from wagate.clock import Clock
from wagate.domain.admin import AdminUser
from wagate.errors import ConfigError, InvalidInput, Unauthorized
from wagate.storage.repos.admins import AdminRepo

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
ISSUER = "wagate"
MIN_PASSWORD = 8
MAX_PASSWORD = 1_024
MIN_SECRET_BYTES = 32  # RFC 7518 §3.2: an HS256 key as long as the hash
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_WRONG = "wrong username or password"


@dataclass(frozen=True, slots=True)
class Login:
    username: str
    token: str
    expires_at: datetime


class AdminAuth:
    """Admin users, their passwords and their tokens."""

    def __init__(
        self,
        admins: AdminRepo,
        clock: Clock,
        *,
        secret: str,
        ttl: timedelta,
        hasher: PasswordHasher | None = None,
    ) -> None:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes long")
        self._admins = admins
        self._clock = clock
        self._secret = secret
        self.ttl = ttl
        self._hasher = hasher or PasswordHasher()
        self._stand_in: str | None = None  # checked for unknown users: the same work either way

    async def create_user(self, username: str, password: str) -> AdminUser:
        """A new user; 409 ``admin_exists`` when the name is taken."""
        return await self._admins.create(_username(username), await self._hash(password))

    async def ensure_user(self, username: str, password: str) -> AdminUser:
        """Create the user, or set its password when it exists (``WAGATE_ADMIN_USER`` at start)."""
        return await self._admins.save(_username(username), await self._hash(password))

    async def login(self, username: str, password: str) -> str:
        """A token for the user; 401 when the name or the password is wrong (never saying which)."""
        return (await self.sign_in(username, password)).token

    async def sign_in(self, username: str, password: str) -> Login:
        """:meth:`login`, with the token's end."""
        user = await self._admins.get(username) if _USERNAME.fullmatch(username) else None
        stored = user.password_hash if user is not None else await self._stand_in_hash()
        matches = await self._verify(stored, password)
        if user is None or not matches:
            raise Unauthorized(_WRONG)
        await self._rehash_if_needed(user, password)
        now = self._clock.now()
        expires = int((now + self.ttl).timestamp())
        claims = {"sub": user.username, "iss": ISSUER, "iat": int(now.timestamp()), "exp": expires}
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        log.info("admin %s signed in", user.username)
        return Login(user.username, token, datetime.fromtimestamp(expires, UTC))

    async def verify(self, token: str) -> str:
        """The user a token was given to; 401 when it is invalid, expired or its user is gone."""
        claims = self._claims(token)
        if self._clock.now().timestamp() >= claims["exp"]:
            raise Unauthorized("the token has expired; sign in again")
        username = claims["sub"]
        if await self._admins.get(username) is None:
            raise Unauthorized("the token's user does not exist")
        return str(username)

    def _claims(self, token: str) -> dict[str, Any]:
        try:
            # expiry is checked against the injected clock, not the system's
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={
                    "require": ["sub", "iat", "exp"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidTokenError:
            raise Unauthorized("invalid token") from None
        if not isinstance(claims["sub"], str) or not isinstance(claims["exp"], int | float):
            raise Unauthorized("invalid token")
        return claims

    async def _hash(self, password: str) -> str:
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise InvalidInput(
                "password", f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters"
            )
        return await asyncio.to_thread(self._hasher.hash, password)

    async def _verify(self, stored: str, password: str) -> bool:
        try:
            return await asyncio.to_thread(self._hasher.verify, stored, password)
        except VerifyMismatchError:
            return False
        except (InvalidHashError, VerificationError):
            log.error("an admin user's stored password hash is unusable; set the password again")
            return False

    async def _stand_in_hash(self) -> str:
        if self._stand_in is None:
            self._stand_in = await asyncio.to_thread(self._hasher.hash, "stand-in password")
        return self._stand_in

    async def _rehash_if_needed(self, user: AdminUser, password: str) -> None:
        if self._hasher.check_needs_rehash(user.password_hash):
            await self._admins.update(user.username, await self._hash(password))


def _username(value: str) -> str:
    if _USERNAME.fullmatch(value) is None:
        raise InvalidInput(
            "username",
            "a username has 1-64 characters from A-Z a-z 0-9 _ . @ -, "
            "starting with a letter or digit",
        )
    return value
