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
``"SendMessage: Error …"``) and stderr (``Press Ctrl+C to exit``);
:func:`capture_go_output` keeps those lines out of the output a supervisor
collects.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import platform
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from wagate.engine.neonize import _go_output as go_output
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
    "capture_go_output",
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


_captured = threading.Lock()
_capturing = False


def capture_go_output() -> bool:
    """Route fds 1 and 2 through filters that move Go's prints to a debug logger.

    Everything else passes to the original streams unchanged: Python's own
    output, and Go's crash reports on stderr (see :mod:`._go_output` for why
    stderr goes through a child process). Once per process; returns False if
    the streams were already captured.
    """
    global _capturing
    with _captured:
        if _capturing:
            return False
        _capturing = True
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.flush()
    go_log = logging.getLogger("wagate.engine.neonize.go")
    _capture_stdout(go_log)
    _capture_stderr(go_log)
    return True


def _capture_stdout(go_log: logging.Logger) -> None:
    original = os.dup(1)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 1)
    os.close(write_end)
    args = (read_end, original, _logger(go_log), go_output.STDOUT_CHATTER)
    threading.Thread(
        target=go_output.forward, args=args, name="neonize-stdout", daemon=True
    ).start()


def _capture_stderr(go_log: logging.Logger) -> None:
    original = os.dup(2)
    read_end, write_end = os.pipe()
    back_read, back_write = os.pipe()
    try:
        os.posix_spawn(
            sys.executable,
            [sys.executable, "-I", go_output.__file__],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, read_end, 0),
                (os.POSIX_SPAWN_DUP2, back_write, 1),
                (os.POSIX_SPAWN_DUP2, original, 2),
            ],
        )
    except OSError as exc:
        for fd in (original, read_end, write_end, back_read, back_write):
            os.close(fd)
        log.warning("cannot filter Go's stderr (%s); its prints stay there", exc)
        return
    for fd in (original, read_end, back_write):
        os.close(fd)
    os.dup2(write_end, 2)
    os.close(write_end)
    args = (back_read, -1, _logger(go_log), (b"",))  # every line back from the child is chatter
    threading.Thread(
        target=go_output.forward, args=args, name="neonize-stderr", daemon=True
    ).start()


def _logger(go_log: logging.Logger) -> Callable[[bytes], None]:
    def chatter(line: bytes) -> None:
        go_log.debug("%s", line.decode("utf-8", errors="replace"))

    return chatter
