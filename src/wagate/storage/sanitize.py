"""What the databases accept in text and JSON: inbound strings are cleaned before storing.

PostgreSQL refuses the NUL character in ``text`` and in ``jsonb`` (``\\u0000``),
and no driver can encode a lone UTF-16 surrogate as UTF-8. WhatsApp payloads
can carry both, so every string of an inbound row (keys of JSON objects
included) is cleaned the same way on both databases: NUL removed, lone
surrogates replaced by U+FFFD.
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """``value`` without NUL characters and with lone surrogates replaced."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    return _SURROGATE.sub("\ufffd", value)


def clean(value: Any) -> Any:
    """Strings cleaned by :func:`clean_text`, inside dicts, lists and tuples too."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value
