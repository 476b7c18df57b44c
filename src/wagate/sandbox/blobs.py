"""Media blobs on the sandbox network: the bytes behind every image, voice note and document.

A blob is named by the hex SHA-256 of its bytes, which is also the handle a
receiver downloads it by (the same bytes sent twice are stored once). Blobs are
kept in memory up to a byte budget, least recently used dropped first, and,
when the network has a state file, also as files in a folder beside it, so a
restarted network still serves downloads. Without a folder, a blob dropped
from memory is gone: downloading it is :class:`~wagate.errors.NotFound`.

An :class:`Upload` collects the chunks a client sends before a message that
refers to the blob; it refuses to grow past the network's media size limit.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from pathlib import Path

from wagate.errors import InvalidInput, NotFound
from wagate.files import write_atomic

_HANDLE = re.compile(r"[0-9a-f]{64}")


class MediaTooLarge(InvalidInput):
    """The media is larger than the network accepts."""

    code = "media_too_large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__("media", f"media of {size} bytes is larger than the limit of {limit}")


def check_handle(handle: str) -> str:
    """A handle is 64 lowercase hex digits; anything else (a path, say) names no blob."""
    if not _HANDLE.fullmatch(handle):
        raise NotFound(f"no media blob {handle[:80]!r}")
    return handle


class BlobStore:
    """Blobs by handle: an LRU in memory, and files under ``folder`` when there is one."""

    def __init__(self, folder: Path | None, *, memory_bytes: int, max_bytes: int) -> None:
        self._folder = folder
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._memory_bytes = memory_bytes
        self._held = 0
        self.max_bytes = max_bytes

    def put(self, data: bytes) -> str:
        """Store ``data``; return its handle."""
        if len(data) > self.max_bytes:
            raise MediaTooLarge(len(data), self.max_bytes)
        if not data:
            raise InvalidInput("media", "media must not be empty")
        handle = hashlib.sha256(data).hexdigest()
        if self._folder is not None and not self._path(handle).exists():
            write_atomic(self._path(handle), data)
        self._remember(handle, data)
        return handle

    def size(self, handle: str) -> int:
        """The size of a stored blob; :class:`NotFound` if there is none."""
        data = self._memory.get(check_handle(handle))
        if data is not None:
            return len(data)
        try:
            return self._path(handle).stat().st_size
        except OSError:
            raise NotFound(f"no media blob {handle}") from None

    def read(self, handle: str, offset: int = 0, size: int | None = None) -> bytes:
        """``size`` bytes from ``offset`` (all of it when None); :class:`NotFound` if unknown."""
        data = self._memory.get(check_handle(handle))
        end = None if size is None else offset + size
        if data is not None:
            self._memory.move_to_end(handle)
            return data[offset:end]
        try:
            with self._path(handle).open("rb") as fh:
                fh.seek(offset)
                return fh.read() if size is None else fh.read(size)
        except OSError:
            raise NotFound(f"no media blob {handle}") from None

    def _path(self, handle: str) -> Path:
        if self._folder is None:
            # Memory was the only copy: an OSError like a missing file, for the callers above.
            raise FileNotFoundError(handle)
        return self._folder / handle

    def _remember(self, handle: str, data: bytes) -> None:
        if handle in self._memory:
            self._memory.move_to_end(handle)
            return
        self._memory[handle] = data
        self._held += len(data)
        while self._held > self._memory_bytes and len(self._memory) > 1:
            _, dropped = self._memory.popitem(last=False)
            self._held -= len(dropped)


class Upload:
    """Chunks of one blob on their way in, checked against the size limit as they come."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: list[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._limit:
            raise MediaTooLarge(self.size, self._limit)
        self._chunks.append(chunk)

    def data(self) -> bytes:
        return b"".join(self._chunks)
