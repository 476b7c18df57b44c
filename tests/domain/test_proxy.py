from __future__ import annotations

import pytest

from wagate.domain.proxy import parse_proxy, redact
from wagate.errors import InvalidInput


def test_parses_socks5h_with_credentials() -> None:
    p = parse_proxy("socks5h://bob:s%40cret@proxy.example:1080")
    assert (p.scheme, p.host, p.port, p.username, p.password) == (
        "socks5h",
        "proxy.example",
        1080,
        "bob",
        "s@cret",
    )
    assert p.redacted() == "socks5h://bob:***@proxy.example:1080"


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("socks5://h:1080", "socks5h://"),
        ("http://h:8080", "socks5h://"),
        ("socks5h://h", "port"),
        ("socks5h://:1080", "host"),
        ("socks5h://h:99999", "valid URL"),
        ("socks5h://h:1080/path", "path"),
    ],
)
def test_rejects(url: str, needle: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_proxy(url)
    assert info.value.field == "proxy"
    assert needle in info.value.message


def test_redact_never_shows_the_password() -> None:
    assert "pw" not in (redact("socks5h://u:pw@h:1") or "")
    assert redact(None) is None
    assert redact("junk") == "<invalid proxy>"
