"""Retry delays, one pure formula for every retry in wagate.

``min(max_s, base_s·2^attempt) + jitter``, where jitter is uniform in
``0..jitter_s`` seconds plus ``0..jitter_ratio`` of the delay. ``attempt``
counts from 0 for the first retry. Sessions reconnect with it (seed 003:
``min(WORKER_BACKOFF_MAX_MS, WORKER_BACKOFF_BASE_MS·2^n) + jitter(0..500 ms)``),
the sender retries sends, webhook deliveries retry, and neonize spaces its dials.
The random source is injected, so tests choose it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_MAX_EXPONENT = 32  # 2**32 · base is past any sane maximum; keeps the float finite


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay policy; see the module docstring."""

    base_s: float
    max_s: float
    jitter_s: float = 0.0
    jitter_ratio: float = 0.0

    def core(self, attempt: int) -> float:
        """The delay of ``attempt`` without jitter."""
        exp = min(max(attempt, 0), _MAX_EXPONENT)
        return float(min(self.max_s, self.base_s * 2**exp))

    def delay(self, attempt: int, rng: random.Random) -> float:
        core = self.core(attempt)
        return core + rng.uniform(0.0, self.jitter_s) + rng.uniform(0.0, core * self.jitter_ratio)

    def bounds(self, attempt: int) -> tuple[float, float]:
        """The smallest and largest delay ``delay`` can return for ``attempt``."""
        low = self.core(attempt)
        return low, low + self.jitter_s + low * self.jitter_ratio
