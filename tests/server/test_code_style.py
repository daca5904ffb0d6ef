"""The code is formatted by one formatter and passes one linter: ``ruff`` (its settings in
pyproject.toml). A change that is not formatted fails here, in CI, not in review."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_code_is_formatted() -> None:
    done = _ruff("format", "--check", ".")
    assert done.returncode == 0, (
        "run `ruff format .`:\n" + done.stdout[-4000:] + done.stderr[-2000:]
    )


def test_the_code_passes_the_linter() -> None:
    done = _ruff("check", ".")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
