"""A control plane's fleet parts, built from settings: the worker registry and the admin users.

The control role's composition root builds them with these functions, and
``wagate admin`` uses them alone. The JWT secret is ``JWT_SECRET``, else one
generated on first start and kept under ``DATA_DIR`` (as the API key is); every
control replica must sign with the same secret, so a fleet sets ``JWT_SECRET``.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import httpx

from wagate.clock import Clock, SystemClock
from wagate.control.admins import AdminAuth
from wagate.control.registry import Drain, WorkerRegistry
from wagate.domain.admin import AdminUser
from wagate.errors import ConfigError, InvalidInput
from wagate.files import write_atomic
from wagate.settings import Settings, variable
from wagate.storage.db import Database, create_engine, migrate
from wagate.storage.repos.admins import AdminRepo
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.workers import MonitorSwitch, WorkerRepo

log = logging.getLogger(__name__)


def worker_registry(
    db: Database,
    clock: Clock,
    settings: Settings,
    http: httpx.AsyncClient,
    *,
    on_drain: Drain | None = None,
) -> WorkerRegistry:
    """The registry over ``db``; ``http`` (the caller's, closed by it) probes workers."""
    return WorkerRegistry(
        WorkerRepo(db, clock),
        MonitorSwitch(db, clock),
        AuditRepo(db, clock),
        clock,
        settings.cluster,
        http,
        on_drain=on_drain,
    )


def admin_auth(db: Database, clock: Clock, settings: Settings) -> AdminAuth:
    """Admin users over ``db``, signing with ``JWT_SECRET`` (or the one kept under DATA_DIR)."""
    secret = load_or_create_jwt_secret(settings)
    return AdminAuth(AdminRepo(db, clock), clock, secret=secret, ttl=settings.cluster.jwt_ttl)


async def ensure_configured_admin(auth: AdminAuth, settings: Settings) -> AdminUser | None:
    """Create (or update) ``WAGATE_ADMIN_USER`` with ``WAGATE_ADMIN_PASSWORD`` when both are set."""
    user, password = settings.admin_user, settings.admin_password
    if user is None and password is None:
        return None
    if user is None:
        raise ConfigError(
            f"{variable('admin_password')} is set but {variable('admin_user')} is not"
        )
    if password is None:
        raise ConfigError(
            f"{variable('admin_user')} is set but {variable('admin_password')} is not"
        )
    try:
        saved = await auth.ensure_user(user, password)
    except InvalidInput as exc:
        field = "admin_user" if exc.field == "username" else "admin_password"
        raise ConfigError(f"{variable(field)}: {exc.message}") from None
    log.info("admin user %s is configured from the environment", saved.username)
    return saved


async def create_admin_user(
    settings: Settings, username: str, password: str, *, update: bool = False
) -> AdminUser:
    """``wagate admin create-user``: migrate the database, then add the user (or update it)."""
    url = settings.sqlalchemy_url
    await migrate(url)
    db, clock = Database(create_engine(url)), SystemClock()
    try:
        # no token is signed here: any secret will do
        secret = secrets.token_urlsafe(32)
        auth = AdminAuth(AdminRepo(db, clock), clock, secret=secret, ttl=settings.cluster.jwt_ttl)
        if update:
            return await auth.ensure_user(username, password)
        return await auth.create_user(username, password)
    finally:
        await db.aclose()


def load_or_create_jwt_secret(settings: Settings) -> str:
    """``JWT_SECRET``; else the secret stored under the data dir, made on first start."""
    if settings.jwt_secret:
        return settings.jwt_secret
    path: Path = settings.jwt_secret_file
    try:
        return _stored_or_new_secret(path)
    except OSError as exc:
        raise ConfigError(
            f"cannot keep the generated JWT secret in {path} ({variable('data_dir')}): "
            f"{exc.strerror or type(exc).__name__}; set {variable('jwt_secret')} "
            "or make the folder writable"
        ) from None


def _stored_or_new_secret(path: Path) -> str:
    if path.exists():
        secret = path.read_text("utf-8").strip()
        if len(secret) >= 32:
            return secret
    secret = secrets.token_urlsafe(48)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (secret + "\n").encode("utf-8"), mode=0o600)
    log.info("generated a JWT secret in %s", path)
    return secret
