"""Importing neonize without its side effects; the one place that does ``import neonize``.

Importing neonize loads its Go shared library and, on the way:

- calls ``logging.basicConfig(level=INFO)`` (``neonize/utils/log.py``), which
  would give the root logger a second handler and change its level;
- downloads the library from GitHub when the wheel's copy is missing
  (``neonize/_binder.py``), which must never happen on a gateway;
- Go sees the process's environment as it was when the process started
  (a shared library's runtime takes the ``envp`` of the program's start), so
  ``HTTPS_PROXY``, which whatsmeow honours for sessions without a proxy of
  their own, and ``NEONIZE_BOT_TAG`` (``off`` stops goneonize from adding a
  ``<bot biz_bot="1"/>`` node to direct messages) must be set before wagate
  starts; setting them from Python changes nothing in Go.

Every other module of this package imports neonize through the names here.
Go also prints to the process's stdout (``fmt.Println("Login event:", …)``,
``"SendMessage: Error …"``); :func:`capture_go_stdout` keeps those lines out
of the output a supervisor collects.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import platform
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wagate.errors import ConfigError

log = logging.getLogger(__name__)

NEONIZE_VERSION = "0.5.2"


def _library_path() -> Path:
    """Where neonize's wheel puts its Go library (the name ``utils/platform.py`` computes)."""
    spec = importlib.util.find_spec("neonize")
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"the neonize engine needs the neonize package: pip install neonize=={NEONIZE_VERSION}"
        )
    system = platform.system().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine().lower())
    ext = {"windows": "dll", "darwin": "dylib"}.get(system, "so")
    return Path(spec.origin).parent / f"neonize-{system}-{arch or platform.machine()}.{ext}"


@contextlib.contextmanager
def _root_logger_kept() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@contextlib.contextmanager
def _uname_answered() -> Iterator[None]:
    """Answer neonize's platform probe without a child process.

    ``neonize/utils/platform.py`` runs ``os.popen("uname -a")`` (twice per
    import) and never waits for the child: it stays unreaped with its pipe
    open until something else reaps it, far from here.
    """
    real = os.popen

    def popen(cmd: str, mode: str = "r", buffering: int = -1) -> Any:
        if cmd.strip() == "uname -a":
            return io.StringIO(" ".join(os.uname()))
        return real(cmd, mode, buffering)

    os.popen = popen
    try:
        yield
    finally:
        os.popen = real


def _import_neonize() -> None:
    library = _library_path()
    if not library.is_file():
        raise ConfigError(
            f"neonize's Go library {library.name} is missing from its wheel; reinstall "
            f"neonize=={NEONIZE_VERSION} for this platform (wagate never downloads it)"
        )
    with _root_logger_kept(), _uname_answered():
        import neonize  # noqa: F401  # loads the library

    logging.getLogger("neonize.utils.ffmpeg").setLevel(logging.ERROR)  # we never need ffmpeg


_import_neonize()

# The names the rest of the package uses; imported after the guarded first import.
from neonize import _binder as binder  # noqa: E402
from neonize import exc as neonize_exc  # noqa: E402
from neonize.aioze import client as aioze_client  # noqa: E402
from neonize.aioze import events as aioze_events  # noqa: E402
from neonize.proto import Neonize_pb2 as nproto  # noqa: E402
from neonize.proto.waCommon import WACommon_pb2 as wacommon  # noqa: E402
from neonize.proto.waCompanionReg import WAWebProtobufsCompanionReg_pb2 as wacompanion  # noqa: E402
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wae2e  # noqa: E402
from neonize.utils import enum as nenum  # noqa: E402

NeonizeError: type[Exception] = neonize_exc.NeonizeError

__all__ = [
    "NeonizeError",
    "aioze_client",
    "aioze_events",
    "binder",
    "capture_go_stdout",
    "nenum",
    "nproto",
    "set_log_level",
    "wacommon",
    "wacompanion",
    "wae2e",
]


def set_log_level(level: str) -> None:
    """How much of whatsmeow's own log reaches ours (also what Go bothers to format)."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.WARNING
    # Go reads this logger's level at each connect (``LogLevel.from_logging(log.level)``).
    for name in ("neonize.utils.log", "whatsmeow", "Whatsmeow", "neonize"):
        logging.getLogger(name).setLevel(numeric)


# Lines Go's ``fmt.Println`` writes to fd 1 (neonize's goneonize/main.go).
GO_STDOUT = re.compile(rb"^(Login event:|Pair Code:|SendMessage:)")
_captured = threading.Lock()
_capturing = False


def capture_go_stdout() -> bool:
    """Route fd 1 through a filter that moves Go's prints to a debug logger.

    Everything else written to stdout (Python's own prints) passes through to
    the original stdout unchanged. Once per process; returns False if stdout
    was already captured. Go's runtime errors go to stderr and stay there.
    """
    global _capturing
    with _captured:
        if _capturing:
            return False
        _capturing = True
    with contextlib.suppress(AttributeError, ValueError, OSError):
        sys.stdout.flush()
    original = os.dup(1)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 1)
    os.close(write_end)
    thread = threading.Thread(
        target=_forward_stdout, args=(read_end, original), name="neonize-stdout", daemon=True
    )
    thread.start()
    return True


def _forward_stdout(read_end: int, original: int) -> None:
    go_log = logging.getLogger("wagate.engine.neonize.go")
    pending = b""
    while chunk := os.read(read_end, 65536):
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        passed = [line for line in lines if not _is_go_line(line, go_log)]
        if passed:
            _write_all(original, b"".join(line + b"\n" for line in passed))
    if pending:
        _write_all(original, pending)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _is_go_line(line: bytes, go_log: logging.Logger) -> bool:
    if GO_STDOUT.match(line) is None:
        return False
    go_log.debug("%s", line.decode("utf-8", errors="replace"))
    return True
