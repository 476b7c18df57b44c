"""How every benchmark ends: its figures as a table, and as JSON under ``bench/results/``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def report(name: str, result: dict[str, Any]) -> Path:
    width = max(map(len, result), default=0) + 2
    for key, value in result.items():
        shown = f"{value:,.2f}" if isinstance(value, float) else value
        print(f"{key:{width}} {shown}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}-{int(time.time())}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out}")
    return out
