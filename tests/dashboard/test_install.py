"""``scripts/install-chromium.sh``, which ``make test`` runs before the browser tests: quick
and silent when Chromium is there, one clear error where it cannot install it."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.dashboard.conftest import CHROMIUM, ROOT

SCRIPT = ROOT / "scripts" / "install-chromium.sh"


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_it_returns_at_once_when_chromium_is_installed() -> None:
    """With the browser present the script does nothing and exits 0 (idempotent)."""
    started = time.monotonic()
    result = _run({**os.environ, "CHROMIUM": str(CHROMIUM)})
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert time.monotonic() - started < 10


def test_without_apt_get_it_fails_with_one_clear_line(tmp_path: Path) -> None:
    """Where Chromium is missing and there is no apt-get, it says what to do and exits 1."""
    result = _run({"PATH": str(tmp_path), "CHROMIUM": str(tmp_path / "no-chromium")})
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "SHIPYARD_CHROMIUM" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
