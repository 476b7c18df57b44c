from __future__ import annotations

import pytest

from wagate.domain import session as d
from wagate.domain.session import DisconnectKind, Recovery, SessionState


def test_every_state_has_transitions_and_seed_words() -> None:
    for state in SessionState:
        assert state in d.TRANSITIONS
        for table in (d.SEED_004, d.SEED_002, d.SEED_001, d.SEED_003):
            assert state in table


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (SessionState.CREATED, SessionState.CONNECTING, True),
        (SessionState.CONNECTING, SessionState.QR, True),
        (SessionState.QR, SessionState.CONNECTED, True),
        (SessionState.CONNECTED, SessionState.RECONNECTING, True),
        (SessionState.RECONNECTING, SessionState.CONNECTING, True),
        (SessionState.LOGGED_OUT, SessionState.CONNECTING, True),
        (SessionState.CREATED, SessionState.CONNECTED, False),
        (SessionState.CONNECTED, SessionState.QR, False),
        (SessionState.STOPPED, SessionState.CONNECTED, False),
        (SessionState.FAILED, SessionState.CONNECTED, False),
    ],
)
def test_transitions(current: SessionState, target: SessionState, allowed: bool) -> None:
    assert d.can_transition(current, target) is allowed
    if allowed:
        assert d.check_transition(current, target) is target
    else:
        with pytest.raises(d.IllegalTransition):
            d.check_transition(current, target)


def test_every_state_can_be_stopped_or_is_stopped() -> None:
    for state in SessionState:
        assert state is SessionState.STOPPED or d.can_transition(state, SessionState.STOPPED)


@pytest.mark.parametrize(
    ("kind", "recovery", "state"),
    [
        (DisconnectKind.CONNECTION_LOST, Recovery.RECONNECT, SessionState.RECONNECTING),
        (DisconnectKind.PROXY_ERROR, Recovery.RECONNECT_NEW_PROXY, SessionState.RECONNECTING),
        (DisconnectKind.LOGGED_OUT, Recovery.RELINK, SessionState.LOGGED_OUT),
        (DisconnectKind.REPLACED, Recovery.FAIL, SessionState.FAILED),
        (DisconnectKind.BANNED, Recovery.FAIL, SessionState.FAILED),
        (DisconnectKind.QR_TIMEOUT, Recovery.STOP, SessionState.STOPPED),
        (DisconnectKind.CLIENT_OUTDATED, Recovery.FAIL, SessionState.FAILED),
    ],
)
def test_recovery_per_kind(kind: DisconnectKind, recovery: Recovery, state: SessionState) -> None:
    assert d.recovery_for(kind) == (recovery, state)


def test_every_disconnect_kind_has_a_recovery() -> None:
    assert set(d.RECOVERY) == set(DisconnectKind)


def test_only_logged_out_and_failed_need_an_operator() -> None:
    assert {s for s in SessionState if s.needs_operator} == {
        SessionState.LOGGED_OUT,
        SessionState.FAILED,
    }


@pytest.mark.parametrize(
    ("state", "s004", "s002", "s001", "s003", "ready"),
    [
        (SessionState.CREATED, "pending", "disconnected", "DISCONNECTED", "disconnected", False),
        (SessionState.CONNECTING, "pending", "connecting", "CONNECTING", "connecting", False),
        (SessionState.QR, "qr_ready", "qr_required", "CONNECTING", "connecting", False),
        (SessionState.CONNECTED, "connected", "connected", "CONNECTED", "connected", True),
        (
            SessionState.RECONNECTING,
            "disconnected",
            "connecting",
            "DISCONNECTED",
            "disconnected",
            False,
        ),
        (
            SessionState.STOPPED,
            "disconnected",
            "disconnected",
            "DISCONNECTED",
            "disconnected",
            False,
        ),
        (
            SessionState.LOGGED_OUT,
            "disconnected",
            "disconnected",
            "DISCONNECTED",
            "disconnected",
            False,
        ),
        (SessionState.FAILED, "failed", "disconnected", "DISCONNECTED", "disconnected", False),
    ],
)
def test_seed_vocabularies(
    state: SessionState, s004: str, s002: str, s001: str, s003: str, ready: bool
) -> None:
    assert d.SEED_004[state] == s004
    assert d.SEED_002[state] == s002
    assert d.SEED_001[state] == s001
    assert d.SEED_003[state] == s003
    assert d.seed_000(state) == d.Seed000Flags(is_ready=ready, is_connected=ready)


def test_seed_words_stay_inside_each_seeds_alphabet() -> None:
    assert set(d.SEED_004.values()) <= {
        "pending",
        "qr_ready",
        "connected",
        "disconnected",
        "failed",
    }
    assert set(d.SEED_002.values()) <= {"disconnected", "connecting", "qr_required", "connected"}
    assert set(d.SEED_001.values()) <= {"DISCONNECTED", "CONNECTING", "CONNECTED"}
    assert set(d.SEED_003.values()) <= {"connecting", "connected", "disconnected"}


def test_health_buckets() -> None:
    assert d.health_bucket(SessionState.CONNECTED) == "connected"
    assert d.health_bucket(SessionState.QR) == "connecting"
    assert d.health_bucket(SessionState.CONNECTING) == "connecting"
    assert d.health_bucket(SessionState.RECONNECTING) == "reconnecting"
    assert d.health_bucket(SessionState.STOPPED) is None


def test_a_change_crosses_processes_as_json_and_back() -> None:
    import json
    from datetime import UTC, datetime

    change = d.SessionChange(
        "s1", SessionState.QR, d.ChangeKind.QR, datetime(2026, 1, 1, tzinfo=UTC), {"qr": "2@A"}
    )
    message = json.loads(json.dumps(d.change_message(change)))
    assert message == {
        "sessionId": "s1",
        "state": "qr",
        "kind": "qr",
        "at": "2026-01-01T00:00:00+00:00",
        "data": {"qr": "2@A"},
    }
    assert d.change_from_message(message) == change


@pytest.mark.parametrize(
    "message",
    [
        {},
        {"sessionId": "s1", "state": "nope", "kind": "qr", "at": "2026-01-01T00:00:00+00:00"},
        {"sessionId": "s1", "state": "qr", "kind": "qr", "at": "2026-01-01T00:00:00"},
        {"sessionId": "s1", "state": "qr", "kind": "qr", "at": 5},
        {
            "sessionId": "s1",
            "state": "qr",
            "kind": "qr",
            "at": "2026-01-01T00:00:00+00:00",
            "data": [1],
        },
    ],
)
def test_anything_else_is_not_a_change(message: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="not a session change"):
        d.change_from_message(message)
