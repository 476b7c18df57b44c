"""The house's layering is a checked contract (``lint-imports``, configured in pyproject.toml)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(src: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        env=env,
        cwd=src.parent,
        timeout=120,
    )


def test_the_code_keeps_every_contract() -> None:
    result = _lint(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("domain/session.py", "import wagate.worker.host", "Layers"),
        ("storage/repos/sessions.py", "from wagate.webhooks import events", "Layers"),
        ("webhooks/events.py", "import wagate.outbound.queue", "Webhooks import only"),
        ("sandbox/network.py", "import wagate.engine.base", "The sandbox network"),
        ("ingest/pipeline.py", "import sqlalchemy", "Only storage imports"),
        ("control/cache.py", "import redis", "Only storage imports"),
    ],
)
def test_a_violating_import_breaks_the_check(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    src = tmp_path / "src"
    shutil.copytree(
        ROOT / "src" / "wagate", src / "wagate", ignore=shutil.ignore_patterns("__pycache__")
    )
    target = src / "wagate" / module
    target.write_text(target.read_text("utf-8") + f"\n{line}  # noqa\n", "utf-8")
    result = _lint(src)
    assert result.returncode != 0, result.stdout
    broken = [text for text in result.stdout.splitlines() if text.endswith("BROKEN")]
    assert any(text.startswith(contract) for text in broken), result.stdout
