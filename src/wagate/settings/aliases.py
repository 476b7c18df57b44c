"""How a setting is named in the environment: ``WAGATE_<NAME>`` first, then each seed's name."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices


def env(name: str, *seed_names: str) -> Any:
    """A field read from ``WAGATE_<NAME>`` first, then from each seed's name."""
    return AliasChoices(f"WAGATE_{name}", *seed_names)
