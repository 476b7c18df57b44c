from __future__ import annotations

import pytest

from wagate.settings import load_settings


def test_webhook_settings_read_their_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "WAGATE_WEBHOOK_TIMEOUT_MS": "2500",
        "WAGATE_WEBHOOK_MAX_ATTEMPTS": "4",
        "WAGATE_WEBHOOK_BACKOFF_BASE_MS": "100",
        "WAGATE_WEBHOOK_BACKOFF_MAX_MS": "900",
        "WAGATE_WEBHOOK_JITTER_RATIO": "0",
        "WAGATE_WEBHOOK_CONCURRENCY": "3",
        "WAGATE_WEBHOOK_POLL_MS": "50",
        "WEBHOOK_SECRET": "seed-004",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = load_settings()
    assert (s.webhook_timeout_ms, s.webhook_max_attempts, s.webhook_concurrency) == (2500, 4, 3)
    assert (s.webhook_backoff_base_ms, s.webhook_backoff_max_ms) == (100, 900)
    assert (s.webhook_jitter_ratio, s.webhook_poll_ms, s.webhook_secret) == (0, 50, "seed-004")
    monkeypatch.setenv("WAGATE_WEBHOOK_SECRET", "ours-wins")
    assert load_settings().webhook_secret == "ours-wins"
