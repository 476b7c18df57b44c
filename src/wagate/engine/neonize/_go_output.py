"""Go's prints kept out of the process's output; stdlib only, and also run as a script.

Go writes straight to file descriptors 1 and 2: ``fmt.Println("Login
event:", …)`` and ``"SendMessage: Error …"`` to stdout, the runtime's
``println("Press Ctrl+C to exit")`` to stderr at every link-up, and, when it
dies, its ``fatal error`` / ``panic`` / goroutine dump to stderr.
:func:`forward` copies a pipe to the real stream and hands the lines that are
Go's chatter to a callback instead. It never stops reading: when the real
stream breaks (the log collector went away) the output is dropped, because a
pipe nobody drains blocks every later write to it, Go's threads included.

stderr is forwarded by a child process running this file (``python -I
_go_output.py``), not by a thread: Go prints its crash report just before it
exits the process, and a thread of the dying process loses whatever it had
not copied yet. The child reads until the last writer is gone, so a crash
report always reaches the real stderr, whole; the chatter goes back to the
parent on the child's stdout, which logs it at debug.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

STDOUT_CHATTER = (b"Login event:", b"Pair Code:", b"SendMessage:")
STDERR_CHATTER = (b"Press Ctrl+C to exit",)
CHUNK = 65536


class Lines:
    """Splits a byte stream into what passes and the chatter lines, without holding output back.

    A partial line is held only while it could still turn out to be chatter;
    anything else passes at once (a progress bar, a crash report mid-write).
    """

    def __init__(self, prefixes: tuple[bytes, ...]) -> None:
        self.prefixes = prefixes
        self._pending = b""
        self._mid_line = False  # the start of the current line has passed already

    def feed(self, chunk: bytes) -> tuple[bytes, list[bytes]]:
        data, self._pending = self._pending + chunk, b""
        passed, chatter = bytearray(), list[bytes]()
        if self._mid_line:
            head, newline, data = data.partition(b"\n")
            passed += head + newline
            self._mid_line = not newline
            if self._mid_line:
                return bytes(passed), chatter
        *lines, tail = data.split(b"\n")
        for line in lines:
            if self._is_chatter(line):
                chatter.append(line)
            else:
                passed += line + b"\n"
        if tail and not self._may_be_chatter(tail):
            passed += tail
            self._mid_line = True
        else:
            self._pending = tail
        return bytes(passed), chatter

    def flush(self) -> tuple[bytes, list[bytes]]:
        tail, self._pending = self._pending, b""
        if tail and self._is_chatter(tail):
            return b"", [tail]
        return tail, []

    def _is_chatter(self, line: bytes) -> bool:
        return any(line.startswith(prefix) for prefix in self.prefixes)

    def _may_be_chatter(self, tail: bytes) -> bool:
        return any(p.startswith(tail) or tail.startswith(p) for p in self.prefixes)


def forward(
    read_fd: int, out_fd: int, on_chatter: Callable[[bytes], None], prefixes: tuple[bytes, ...]
) -> None:
    """Copy ``read_fd`` to ``out_fd`` until end of file, chatter lines to ``on_chatter``."""
    lines = Lines(prefixes)
    writable = True
    while True:
        try:
            chunk = os.read(read_fd, CHUNK)
        except OSError:
            return
        passed, chatter = lines.feed(chunk) if chunk else lines.flush()
        for line in chatter:
            try:
                on_chatter(line)
            except Exception:  # noqa: S112 - a failing logger must not stop the draining
                continue
        if passed and writable:
            writable = write_all(out_fd, passed)
        if not chunk:
            return


def write_all(fd: int, data: bytes) -> bool:
    """Write everything; False once ``fd`` is broken (its reader is gone), so writing stops."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            return True  # a non-blocking stream that is full: this chunk is dropped
        except OSError:
            return False
    return True


def _filter_stderr() -> None:
    """The child: stdin is the pipe fd 2 writes to, stdout goes back to the parent."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # only the end of the pipe ends this process
    back = [True]

    def to_parent(line: bytes) -> None:
        if back[0]:
            back[0] = write_all(1, line + b"\n")

    forward(0, 2, to_parent, STDERR_CHATTER)


if __name__ == "__main__":
    _filter_stderr()
