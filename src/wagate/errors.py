"""wagate's error tree, split by what the caller should do about it.

::

    WagateError
    ├── RequestError            fix the request (4xx)
    │   ├── InvalidInput        a field is malformed            → 422
    │   ├── Unauthorized        missing or wrong API key        → 401
    │   ├── NotFound            no such session/resource        → 404
    │   └── Conflict            the request clashes with state  → 409
    ├── StorageError            raised by storage/, translated once there (``storage/db.py``)
    │   ├── StorageUnavailable  the database cannot be reached right now: retry later
    │   └── StaleLease          this process no longer owns the session: stop it   → 409
    ├── WorkerUnavailable       the session's worker cannot be reached: retry later → 503
    ├── NotConfigured           this process lacks the setting a request needs      → 503
    ├── EngineError             raised by an engine adapter, translated once there
    │   ├── TransientError      retry later with backoff (connection lost, timeouts)
    │   │   └── ProxyFailure    the session's proxy failed; retry, ideally via another proxy
    │   ├── RelinkRequired      the device was logged out; a new QR/pair code is needed
    │   └── AccountBlocked      banned or replaced; an operator must act
    └── ConfigError             start-up configuration is invalid; one line names the variable

Foreign exceptions (websockets, neonize, SQLAlchemy, httpx) are translated into
this tree at the adapter that meets them. The HTTP layer maps the tree to
status codes in one table (``wagate.api.errors``).
"""

from __future__ import annotations


class WagateError(Exception):
    """Base of every error wagate raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class RequestError(WagateError):
    """The caller must change the request."""

    code = "bad_request"


class InvalidInput(RequestError):
    """A field of the request is malformed; ``field`` names it."""

    code = "invalid_input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Unauthorized(RequestError):
    code = "unauthorized"


class NotFound(RequestError):
    code = "not_found"


class Conflict(RequestError):
    code = "conflict"


class StorageError(WagateError):
    """Raised by :mod:`wagate.storage`; never a driver's exception."""

    code = "storage_error"


class StorageUnavailable(StorageError):
    """The database (or its connection) failed in a way worth retrying later."""

    code = "storage_unavailable"


class StaleLease(StorageError):
    """An owner-only write carried a fencing token that is no longer the session's.

    Another process owns the session now (this one was paused, partitioned or
    too slow to renew): the caller must stop the session's connection, and
    never retry the write.
    """

    code = "stale_lease"


class WorkerUnavailable(WagateError):
    """The worker that owns a session (or should) cannot be reached right now."""

    code = "worker_unavailable"


class NotConfigured(WagateError):
    """A feature the request needs is off on this process; the message names the setting."""

    code = "not_configured"


class EngineError(WagateError):
    """Raised by an engine adapter; never a foreign exception."""

    code = "engine_error"


class TransientError(EngineError):
    """Worth retrying with backoff."""

    code = "connection_lost"


class ProxyFailure(TransientError):
    code = "proxy_error"


class RelinkRequired(EngineError):
    code = "logged_out"


class AccountBlocked(EngineError):
    code = "banned"


class ConfigError(WagateError):
    """Configuration cannot be used; the message is one line naming the variable."""

    code = "config_error"
