"""How much the sandbox network keeps and accepts, and how long things take on it."""

from __future__ import annotations

from dataclasses import dataclass

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Sizes and caps of the simulated network; every cap drops the oldest entry first.

    ``max_media_bytes`` is larger than the gateway's own guard (25 MB) on
    purpose: tests exercise the gateway's guard, not the network's.
    """

    max_media_bytes: int = 100 * MB
    inbox_size: int = 10_000  # messages kept per account
    queue_size: int = 10_000  # events waiting for one linked device
    sent_ids: int = 10_000  # ids remembered per account, for deduplicating resends
    blob_memory_bytes: int = 256 * MB  # media kept in memory (all of it also on disk, if any)
    uploads_per_connection: int = 4
    save_delay_s: float = 0.2  # message changes are written at most this late


@dataclass(frozen=True, slots=True)
class SandboxTimings:
    """How long things take on the simulated network (WhatsApp's real values by default).

    Every one of them passes on the network's clock.
    """

    qr_first_s: float = 60.0
    qr_next_s: float = 20.0
    qr_count: int = 6
    hello_timeout_s: float = 10.0
