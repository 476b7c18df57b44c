from __future__ import annotations

import pytest

from wagate.domain.proxy import Proxy, ProxyStatus, parse_proxy, pick_proxy, redact, scrub
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
        ("socks4://h:1080", "socks5h://"),
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


# --- pick_proxy: the pure choice of seed 004's Flow 1 -------------------------------------

ACTIVE, UNCHECKED, BAD = ProxyStatus.ACTIVE, ProxyStatus.UNCHECKED, ProxyStatus.BAD


def _p(id: int, load: int = 0, status: ProxyStatus = ACTIVE) -> Proxy:
    return Proxy(id=id, url=f"socks5h://p{id}:1080", status=status, load=load)


def test_pick_proxy_takes_the_least_loaded() -> None:
    pool = [_p(1, load=3), _p(2, load=1), _p(3, load=2)]
    picked = pick_proxy(pool, 4)
    assert picked is not None and picked.id == 2


def test_pick_proxy_skips_bad_full_and_excluded_proxies() -> None:
    pool = [_p(1, status=BAD), _p(2, load=4), _p(3, load=0), _p(4, load=3)]
    picked = pick_proxy(pool, 4, exclude=["socks5h://p3:1080"])
    assert picked is not None and picked.id == 4


def test_pick_proxy_on_a_tie_prefers_a_checked_healthy_proxy() -> None:
    pool = [_p(1, load=1, status=UNCHECKED), _p(2, load=1, status=ACTIVE)]
    picked = pick_proxy(pool, 4)
    assert picked is not None and picked.id == 2


def test_pick_proxy_on_a_full_tie_takes_the_lowest_id() -> None:
    pool = [_p(7, load=1), _p(3, load=1), _p(5, load=1)]
    picked = pick_proxy(pool, 4)
    assert picked is not None and picked.id == 3


def test_pick_proxy_prefers_fewer_sessions_over_a_healthy_status() -> None:
    pool = [_p(1, load=2, status=ACTIVE), _p(2, load=1, status=UNCHECKED)]
    picked = pick_proxy(pool, 4)
    assert picked is not None and picked.id == 2


@pytest.mark.parametrize(
    "pool",
    [
        [],
        [_p(1, status=BAD), _p(2, load=2)],  # max 2: the usable one is full
        [_p(1, load=5)],  # over capacity
    ],
)
def test_pick_proxy_is_none_when_nothing_fits(pool: list[Proxy]) -> None:
    assert pick_proxy(pool, 2) is None


def test_pick_proxy_is_none_when_the_only_fit_is_excluded() -> None:
    assert pick_proxy([_p(1)], 4, exclude=["socks5h://p1:1080"]) is None


def test_an_unchecked_proxy_is_usable_and_a_bad_one_is_not() -> None:
    assert _p(1, status=UNCHECKED).usable and _p(1, status=ACTIVE).usable
    assert not _p(1, status=BAD).usable


# --- parse_proxy: socks5:// too, nothing else ----------------------------------------------


def test_parses_socks5_too() -> None:
    p = parse_proxy("socks5://u:pw@10.0.0.1:1080")
    assert (p.scheme, p.host, p.port, p.username, p.password) == (
        "socks5",
        "10.0.0.1",
        1080,
        "u",
        "pw",
    )
    assert p.redacted() == "socks5://u:***@10.0.0.1:1080"
    assert redact("socks5://u:pw@10.0.0.1:1080") == "socks5://u:***@10.0.0.1:1080"


@pytest.mark.parametrize("url", ["http://h:8080", "https://u:p@h:443", "socks4://h:1080"])
def test_refuses_other_schemes_naming_the_field(url: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_proxy(url, "url")
    assert info.value.field == "url"
    assert "socks5h://" in info.value.message
    assert url.split(":", 1)[0] in info.value.message  # the scheme it got


def test_scrub_hides_every_proxy_password_in_a_text() -> None:
    text = "proxy socks5h://wa:s3cret@127.0.0.1:1080 failed; socks5://u:p%40ss@h:1 too"
    scrubbed = scrub(text)
    assert "s3cret" not in scrubbed and "p%40ss" not in scrubbed
    assert "socks5h://wa:***@127.0.0.1:1080" in scrubbed and "socks5://u:***@h:1" in scrubbed
    assert scrub("no url here") == "no url here"
