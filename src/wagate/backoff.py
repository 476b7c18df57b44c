"""Reconnect delays (seed 003): ``min(MAX, BASE·2^n) + jitter(0..J)``, a pure function."""

from __future__ import annotations

import random
from dataclasses import dataclass

_MAX_EXPONENT = 32  # 2**32 · base is past any sane maximum; keeps the float finite


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay policy; ``attempt`` counts from 0 for the first retry."""

    base_s: float
    max_s: float
    jitter_s: float = 0.5

    def delay(self, attempt: int, rng: random.Random) -> float:
        exp = min(max(attempt, 0), _MAX_EXPONENT)
        return float(min(self.max_s, self.base_s * 2**exp) + rng.uniform(0.0, self.jitter_s))

    def bounds(self, attempt: int) -> tuple[float, float]:
        """The smallest and largest delay ``delay`` can return for ``attempt``."""
        exp = min(max(attempt, 0), _MAX_EXPONENT)
        low = min(self.max_s, self.base_s * 2**exp)
        return low, low + self.jitter_s
