"""The integration marker really applies: ``-m "not integration"`` selects no integration test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _collect(*args: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode in (0, 5), r.stdout + r.stderr  # 5: nothing collected
    return r.stdout


def test_not_integration_selects_no_integration_test() -> None:
    out = _collect("-m", "not integration", "tests/integration")
    assert "tests/integration/" not in out
    assert "deselected" in out


def test_integration_selects_the_integration_tests() -> None:
    out = _collect("-m", "integration", "tests/integration", "tests/unit/test_rules.py")
    selected = [line for line in out.splitlines() if "::" in line]
    assert selected and all(line.startswith("tests/integration/") for line in selected)
