"""The README's configuration table names every setting and every seed alias."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices

from wagate.settings import Settings

README = Path(__file__).parent.parent / "README.md"


def _names() -> list[str]:
    found = []
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        assert isinstance(alias, AliasChoices)
        found.extend(str(choice) for choice in alias.choices)
    return list(dict.fromkeys(found))


def test_every_setting_is_documented() -> None:
    text = README.read_text("utf-8")
    section = text[text.index("## Configuration") :]
    section = section[: section.index("\n## ", 3)]
    # `WAGATE_X_FIRST_MS` / `_NEXT_MS` rows document their siblings by suffix
    shorthand = set(re.findall(r"`(_[A-Z_]+)`", section))
    missing = []
    for name in _names():
        if f"`{name}`" in section:
            continue
        if any(name.endswith(short) and name.startswith("WAGATE_") for short in shorthand):
            continue
        missing.append(name)
    assert missing == []
