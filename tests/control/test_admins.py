"""Admin users: argon2 hashes, logins that never say which part was wrong, JWTs on the clock."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from argon2 import PasswordHasher

from wagate.clock import ManualClock
from wagate.control.admins import AdminAuth
from wagate.errors import ConfigError, Conflict, InvalidInput, Unauthorized
from wagate.storage.db import Database
from wagate.storage.repos.admins import AdminRepo

SECRET = "s" * 64  # long enough for HS512 too (a forged token below)
TTL = timedelta(hours=1)


class CountingHasher(PasswordHasher):
    """A cheap argon2 hasher that counts its verifications."""

    def __init__(self, **kw: int) -> None:
        super().__init__(**({"time_cost": 1, "memory_cost": 1024, "parallelism": 1} | kw))
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified += 1
        return super().verify(hash, password)


@pytest.fixture
def repo(db: Database, clock: ManualClock) -> AdminRepo:
    return AdminRepo(db, clock)


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def auth(repo: AdminRepo, clock: ManualClock, hasher: CountingHasher) -> AdminAuth:
    return AdminAuth(repo, clock, secret=SECRET, ttl=TTL, hasher=hasher)


async def test_a_user_is_kept_as_an_argon2_hash(auth: AdminAuth, repo: AdminRepo) -> None:
    await auth.create_user("admin", "correct horse")
    user = await repo.get("admin")
    assert user is not None and user.password_hash.startswith("$argon2id$")
    assert "correct horse" not in user.password_hash
    with pytest.raises(Conflict) as caught:
        await auth.create_user("admin", "another password")
    assert caught.value.code == "admin_exists"


async def test_the_real_hasher_is_argon2id(repo: AdminRepo, clock: ManualClock) -> None:
    auth = AdminAuth(repo, clock, secret=SECRET, ttl=TTL)
    await auth.create_user("admin", "correct horse")
    assert await auth.verify(await auth.login("admin", "correct horse")) == "admin"
    user = await repo.get("admin")
    assert user is not None and user.password_hash.startswith("$argon2id$")


@pytest.mark.parametrize(
    ("username", "password", "field"),
    [
        ("admin", "short", "password"),
        ("admin", "x" * 1025, "password"),
        ("", "long enough", "username"),
        ("has space", "long enough", "username"),
        ("x" * 65, "long enough", "username"),
    ],
)
async def test_create_user_refuses_bad_input(
    auth: AdminAuth, username: str, password: str, field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await auth.create_user(username, password)
    assert caught.value.field == field


async def test_login_gives_a_jwt_with_sub_iat_exp(auth: AdminAuth, clock: ManualClock) -> None:
    await auth.create_user("admin", "correct horse")
    signed = await auth.sign_in("admin", "correct horse")
    claims = jwt.decode(signed.token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    now = int(clock.now().timestamp())
    assert (claims["sub"], claims["iat"], claims["exp"]) == ("admin", now, now + 3600)
    assert signed.expires_at == clock.now() + TTL
    assert jwt.get_unverified_header(signed.token)["alg"] == "HS256"


async def test_a_wrong_user_and_a_wrong_password_look_the_same(
    auth: AdminAuth, hasher: CountingHasher
) -> None:
    await auth.create_user("admin", "correct horse")
    answers = []
    for username, password in [("admin", "wrong horse"), ("nobody", "correct horse")]:
        before = hasher.verified
        with pytest.raises(Unauthorized) as caught:
            await auth.login(username, password)
        answers.append(caught.value.message)
        assert hasher.verified == before + 1  # an unknown user costs a hash check too
    assert answers[0] == answers[1]
    with pytest.raises(Unauthorized):
        await auth.login("bad name!", "correct horse")


async def test_a_token_expires_on_the_clock(auth: AdminAuth, clock: ManualClock) -> None:
    await auth.create_user("admin", "correct horse")
    token = await auth.login("admin", "correct horse")
    await clock.advance(3599)
    assert await auth.verify(token) == "admin"
    await clock.advance(1)
    with pytest.raises(Unauthorized) as caught:
        await auth.verify(token)
    assert "expired" in caught.value.message


async def test_forged_and_foreign_tokens_are_refused(auth: AdminAuth, clock: ManualClock) -> None:
    await auth.create_user("admin", "correct horse")
    now = int(clock.now().timestamp())
    good = {"sub": "admin", "iss": "wagate", "iat": now, "exp": now + 60}
    forged = [
        "not a token",
        "",
        jwt.encode(good, "another secret that is long enough!!", algorithm="HS256"),
        jwt.encode(good, SECRET, algorithm="HS512"),
        jwt.encode(good | {"iss": "someone"}, SECRET, algorithm="HS256"),
        jwt.encode({"sub": "admin", "iss": "wagate", "iat": now}, SECRET, algorithm="HS256"),
        jwt.encode(good | {"sub": "nobody"}, SECRET, algorithm="HS256"),
        jwt.encode(good, SECRET, algorithm="HS256")[:-2] + "xx",
        jwt.encode(good, None, algorithm="none"),
    ]
    assert await auth.verify(jwt.encode(good, SECRET, algorithm="HS256")) == "admin"
    for token in forged:
        with pytest.raises(Unauthorized):
            await auth.verify(token)


async def test_ensure_user_creates_then_sets_the_password(auth: AdminAuth) -> None:
    created = await auth.ensure_user("ops", "first password")
    updated = await auth.ensure_user("ops", "second password")
    assert created.id == updated.id
    with pytest.raises(Unauthorized):
        await auth.login("ops", "first password")
    assert await auth.verify(await auth.login("ops", "second password")) == "ops"


async def test_a_hash_made_with_older_parameters_is_renewed_at_login(
    repo: AdminRepo, clock: ManualClock
) -> None:
    old = AdminAuth(repo, clock, secret=SECRET, ttl=TTL, hasher=CountingHasher())
    await old.create_user("admin", "correct horse")
    stronger = CountingHasher(time_cost=2)
    await AdminAuth(repo, clock, secret=SECRET, ttl=TTL, hasher=stronger).login(
        "admin", "correct horse"
    )
    user = await repo.get("admin")
    assert user is not None and not stronger.check_needs_rehash(user.password_hash)


def test_a_short_secret_is_refused(repo: AdminRepo, clock: ManualClock) -> None:
    with pytest.raises(ConfigError):
        AdminAuth(repo, clock, secret="short", ttl=TTL)
