"""Outbound media between the API's answer and the send: where the bytes wait.

The API must not acknowledge a message whose media could be lost, so the bytes
are made durable before the row is written. Small files ride in the row itself
(base64 in ``messages.payload``: one write, and any worker can read them);
larger ones are written to ``<data dir>/outbox/<session>/<message id>.bin``
(write, fsync, rename) so rows stay small. Either way the payload keeps a
*ref*::

    {"size": 1234, "sha256": "<hex>", "data": "<base64>"}    # inline
    {"size": 1234, "sha256": "<hex>", "file": "s1/3EB0….bin"} # spooled

and the sender drops the bytes once the message is sent or failed. A file
whose row never got written (a crash between the two) is an orphan; the sender
sweeps old orphans at start.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import time
from pathlib import Path
from typing import Any

from wagate.errors import StorageError
from wagate.files import write_atomic

Ref = dict[str, Any]


class SpoolError(StorageError):
    """The bytes a ref names are gone or damaged: the message can never be sent."""


class MediaSpool:
    """Keeps outbound media bytes inline or under ``root``; see the module docstring."""

    def __init__(self, root: Path, *, inline_max_bytes: int) -> None:
        self.root = root
        self.inline_max_bytes = inline_max_bytes

    async def put(self, session_id: str, message_id: str, data: bytes) -> Ref:
        ref: Ref = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if len(data) <= self.inline_max_bytes:
            ref["data"] = base64.b64encode(data).decode("ascii")
            return ref
        relative = f"{session_id}/{message_id}.bin"
        await asyncio.to_thread(write_atomic, self.root / relative, data)
        ref["file"] = relative
        return ref

    async def load(self, ref: Ref) -> bytes:
        if "data" in ref:
            data = base64.b64decode(ref["data"])
        elif "file" in ref:
            try:
                data = await asyncio.to_thread(self._path(ref).read_bytes)
            except OSError as exc:
                raise SpoolError(f"queued media file is unreadable: {exc.strerror}") from None
        else:
            raise SpoolError("queued media has been dropped already")
        if hashlib.sha256(data).hexdigest() != ref.get("sha256"):
            raise SpoolError("queued media does not match its checksum")
        return data

    async def discard(self, ref: Ref) -> None:
        if "file" in ref:
            with contextlib.suppress(OSError, SpoolError):
                await asyncio.to_thread(self._path(ref).unlink, missing_ok=True)

    @staticmethod
    def stripped(ref: Ref) -> Ref:
        """The ref without its bytes: what the row keeps after the send."""
        return {k: v for k, v in ref.items() if k not in ("data", "file")}

    async def files_older_than(self, seconds: float) -> list[tuple[str, str, Path]]:
        """``(session_id, message_id, path)`` of spooled files last written before then."""
        return await asyncio.to_thread(self._files_older_than, seconds)

    def _files_older_than(self, seconds: float) -> list[tuple[str, str, Path]]:
        if not self.root.is_dir():
            return []
        cutoff = time.time() - seconds
        found = []
        for path in self.root.glob("*/*.bin"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    found.append((path.parent.name, path.stem, path))
        return found

    def _path(self, ref: Ref) -> Path:
        path = (self.root / str(ref["file"])).resolve()
        # a payload is data: never let it name a file outside the spool
        if not path.is_relative_to(self.root.resolve()):
            raise SpoolError("queued media names a file outside the outbox")
        return path
