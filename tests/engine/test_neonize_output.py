"""The filters that keep Go's prints out of the process's output (engine/neonize/_go_output.py).

Their end-to-end behaviour on the real library (fds 1 and 2 captured, a Go
crash report kept whole) is in test_neonize_offline.py; here the pieces run
on plain pipes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from wagate.engine.neonize import _go_output as go_output

CHATTER = go_output.STDOUT_CHATTER


def test_go_lines_are_chatter_and_the_rest_passes() -> None:
    lines = go_output.Lines(CHATTER)
    passed, chatter = lines.feed(b"hello\nLogin event: success\nSendMessage: Error x\nbye\n")
    assert (passed, chatter) == (
        b"hello\nbye\n",
        [b"Login event: success", b"SendMessage: Error x"],
    )


def test_a_partial_line_passes_at_once_unless_it_may_be_chatter() -> None:
    lines = go_output.Lines(CHATTER)
    assert lines.feed(b"progress 10%") == (b"progress 10%", [])
    # the rest of that line is never taken for chatter, whatever it says
    assert lines.feed(b" Login event: no\nLog") == (b" Login event: no\n", [])
    assert lines.feed(b"in event: success\n") == (b"", [b"Login event: success"])
    assert lines.feed(b"Login event: cut") == (b"", [])
    assert lines.flush() == (b"", [b"Login event: cut"])


@pytest.fixture
def pipes() -> Iterator[list[int]]:
    opened: list[int] = []
    yield opened
    for fd in opened:
        try:
            os.close(fd)
        except OSError:
            continue


def test_the_forwarder_keeps_draining_after_its_output_breaks(pipes: list[int]) -> None:
    source_read, source_write = os.pipe()
    out_read, out_write = os.pipe()
    pipes += [source_read, source_write, out_write]
    os.close(out_read)  # the log collector went away: writing to out_write is EPIPE
    chatter: list[bytes] = []
    forwarder = threading.Thread(
        target=go_output.forward,
        args=(source_read, out_write, chatter.append, CHATTER),
        daemon=True,
    )
    forwarder.start()
    # Far more than a pipe holds: if nobody drained it, these writes would block for good,
    # as Go's would (it prints to fd 1 in SendMessage's error path and in the QR loop).
    payload = (b"python line\n" + b"SendMessage: Error unmarshaling JID\n") * 20_000
    writer = threading.Thread(target=_write_all, args=(source_write, payload), daemon=True)
    writer.start()
    writer.join(timeout=30)
    assert not writer.is_alive(), "writes blocked: the forwarder stopped draining its pipe"
    os.close(source_write)
    pipes.remove(source_write)
    forwarder.join(timeout=10)
    assert not forwarder.is_alive()
    assert len(chatter) == 20_000


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        return
