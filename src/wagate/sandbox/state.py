"""The sandbox network's state file: every section in one JSON document, written atomically.

Each part of the network (accounts, groups, mail) registers a section with a
function that dumps it. :meth:`StateFile.save_now` writes every section at once
(write a temporary file, fsync, rename, fsync the folder), so a crash leaves the
old file or the new one, never half of one.

Links are saved at once (a linked gateway must reconnect without a new QR);
messages come often, so they use :meth:`StateFile.save_soon`, which coalesces
the writes of ``delay_s`` (on the network's clock) into one. Closing flushes. A
crash can lose the last ``delay_s`` of messages, never a link.

Version 1 files (accounts only) are read as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from wagate.clock import Clock
from wagate.errors import ConfigError
from wagate.files import write_atomic

log = logging.getLogger(__name__)

T = TypeVar("T")

_VERSION = 2
_READABLE = frozenset({1, 2})

# What a malformed section raises while being parsed.
SECTION_ERRORS = (ValueError, KeyError, TypeError, AttributeError)


class StateFile:
    """The JSON state of one network, or nothing at all when ``path`` is None."""

    def __init__(self, path: Path | None, *, delay_s: float, clock: Clock) -> None:
        self.path = path
        self._delay_s = delay_s
        self._clock = clock
        self._dumps: dict[str, Callable[[], Any]] = {}
        self._loaded = _read(path) if path is not None and path.exists() else {}
        self._flush: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def blob_folder(self) -> Path | None:
        """Where media blobs live: a folder next to the state file."""
        return None if self.path is None else self.path.parent / f"{self.path.stem}-blobs"

    def load(self, name: str, parse: Callable[[Any], T], default: T) -> T:
        """Parse the saved section ``name``; a malformed one is a :class:`ConfigError`."""
        raw = self._loaded.get(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except SECTION_ERRORS as exc:
            raise ConfigError(f"sandbox state file {self.path} is unreadable: {exc!r}") from exc

    def register(self, name: str, dump: Callable[[], Any]) -> None:
        self._dumps[name] = dump

    def save_now(self) -> None:
        if self.path is None:
            return
        payload = {"version": _VERSION, **{name: dump() for name, dump in self._dumps.items()}}
        write_atomic(self.path, json.dumps(payload, indent=1).encode("utf-8"))

    def save_soon(self) -> None:
        """Save within ``delay_s``; many calls in that time make one write."""
        if self.path is None or (self._flush is not None and not self._flush.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None  # called outside the network's loop: nothing to coalesce with
        if self._closed or loop is None:
            self.save_now()
            return
        self._flush = loop.create_task(self._later(), name="sandbox-save")
        self._flush.add_done_callback(_log_failure)

    async def _later(self) -> None:
        await self._clock.sleep(self._delay_s)
        try:
            self.save_now()
        except OSError:
            # The next change tries again; the network keeps serving meanwhile.
            log.exception("cannot save the sandbox state to %s", self.path)

    async def aclose(self) -> None:
        """Write what is pending; later changes are written at once."""
        self._closed = True
        flush, self._flush = self._flush, None
        if flush is not None and not flush.done():
            flush.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flush
            self.save_now()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("saving the sandbox state failed", exc_info=task.exception())


def _read(path: Path) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text("utf-8"))
        if not isinstance(payload, dict) or payload.get("version") not in _READABLE:
            raise ValueError("not a sandbox state file of a known version")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"sandbox state file {path} is unreadable: {exc}") from exc
    return payload
