from __future__ import annotations

import pytest

from wagate.errors import InvalidInput
from wagate.ids import check_session_id, new_session_id, normalize_phone, phone_of_jid


@pytest.mark.parametrize(
    "good", ["a", "user123-personal", "A.b_c-9", "a..b", "x" * 64, new_session_id()]
)
def test_good_session_ids(good: str) -> None:
    assert check_session_id(good) == good


@pytest.mark.parametrize(
    "bad", ["", "-a", ".", "..", ".hidden", "../etc", "a/b", "abc\n", "x" * 65, "a b", "é"]
)
def test_bad_session_ids(bad: str) -> None:
    with pytest.raises(InvalidInput):
        check_session_id(bad)


@pytest.mark.parametrize(
    ("raw", "digits"),
    [
        ("+6281234567890", "6281234567890"),
        ("972 50-123-4567", "972501234567"),
        ("(1) 415 555 0100", "14155550100"),
        ("6281234567890@s.whatsapp.net", "6281234567890"),
    ],
)
def test_phone_normalized(raw: str, digits: str) -> None:
    assert normalize_phone(raw) == digits


@pytest.mark.parametrize("bad", ["", "abc", "+0123456789", "12345", "1" * 16])
def test_bad_phone(bad: str) -> None:
    with pytest.raises(InvalidInput) as info:
        normalize_phone(bad)
    assert info.value.field == "phone"


def test_phone_of_jid() -> None:
    assert phone_of_jid("6281:12@s.whatsapp.net") == "6281"
    assert phone_of_jid("123@lid") is None
