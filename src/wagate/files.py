"""Files that survive a crash: written whole or not at all, the rename itself made durable."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1024 * 1024


def write_atomic(path: Path, data: bytes | BinaryIO, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` (bytes, or a binary file read to its end).

    Written to a temporary file in the same folder, fsynced, renamed over
    ``path``, then the folder is fsynced: after a crash ``path`` holds the old
    content or the new, never a part, and a completed write is not undone by
    losing the rename. ``mode`` sets the new file's permissions (e.g. ``0o600``).
    Blocking: call it from a thread in async code.
    """
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, bytes | bytearray | memoryview):
                fh.write(data)
            else:
                shutil.copyfileobj(data, fh, _CHUNK)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(folder)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def fsync_dir(folder: Path) -> None:
    """Make the folder's entries (a rename, a new or removed file) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_tree(folder: Path) -> None:
    """Remove ``folder`` and everything in it, then make the removal durable; absent is fine."""
    if not folder.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        fsync_dir(folder.parent)
