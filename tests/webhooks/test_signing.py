from __future__ import annotations

import hashlib
import hmac

from wagate.webhooks import sign, signature_header, verify_signature

SECRET = "whsec_test-secret"
BODY = b'{"id":"e1","event":"message.received","data":{"text":"hi"}}'
NOW = 1_767_225_600


def headers(timestamp: int = NOW, secret: str = SECRET, body: bytes = BODY) -> dict[str, str]:
    return {
        "X-Wagate-Timestamp": str(timestamp),
        "X-Wagate-Signature": signature_header(timestamp, body, secret),
    }


def test_a_good_signature_verifies() -> None:
    assert verify_signature(SECRET, headers(), BODY, now=NOW)


def test_signature_is_plain_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == expected
    assert headers()["X-Wagate-Signature"] == f"v1={expected}"


def test_a_tampered_body_fails() -> None:
    assert not verify_signature(SECRET, headers(), BODY.replace(b"hi", b"ho"), now=NOW)


def test_a_wrong_secret_fails() -> None:
    assert not verify_signature("another-secret", headers(), BODY, now=NOW)


def test_a_stale_or_future_timestamp_fails_even_when_correctly_signed() -> None:
    assert verify_signature(SECRET, headers(), BODY, now=NOW + 300)
    assert not verify_signature(SECRET, headers(), BODY, now=NOW + 301)
    assert not verify_signature(SECRET, headers(), BODY, now=NOW - 301)
    assert verify_signature(SECRET, headers(), BODY, now=NOW + 3000, tolerance_s=3600)


def test_a_replayed_request_with_a_fresh_timestamp_fails() -> None:
    replayed = headers() | {"X-Wagate-Timestamp": str(NOW + 1000)}
    assert not verify_signature(SECRET, replayed, BODY, now=NOW + 1000)


def test_any_entry_of_a_rotation_list_may_match() -> None:
    both = signature_header(NOW, BODY, "old-secret", SECRET)
    assert both.count("v1=") == 2
    given = {"X-Wagate-Timestamp": str(NOW), "X-Wagate-Signature": both}
    assert verify_signature(SECRET, given, BODY, now=NOW)
    assert verify_signature("old-secret", given, BODY, now=NOW)
    assert not verify_signature("third-secret", given, BODY, now=NOW)


def test_header_names_match_case_insensitively() -> None:
    lowered = {k.lower(): v for k, v in headers().items()}
    assert verify_signature(SECRET, lowered, BODY, now=NOW)


def test_missing_or_malformed_headers_fail() -> None:
    good = headers()
    assert not verify_signature(SECRET, {}, BODY, now=NOW)
    assert not verify_signature(SECRET, {"X-Wagate-Signature": good["X-Wagate-Signature"]}, BODY)
    assert not verify_signature(SECRET, good | {"X-Wagate-Timestamp": "soon"}, BODY, now=NOW)
    digest = sign(SECRET, NOW, BODY)
    for value in (digest, f"v0={digest}", "v1=", "garbage"):
        assert not verify_signature(SECRET, good | {"X-Wagate-Signature": value}, BODY, now=NOW)


def test_verification_uses_the_real_time_by_default() -> None:
    assert not verify_signature(SECRET, headers(timestamp=1_000), BODY)


def test_only_ascii_digits_make_a_timestamp() -> None:
    arabic_indic = "".join(chr(0x0660 + int(d)) for d in str(NOW))
    assert not verify_signature(SECRET, headers() | {"X-Wagate-Timestamp": arabic_indic}, BODY)
