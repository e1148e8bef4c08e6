"""`shipyard ray serve` as the Ray tests run it: one subprocess, its output captured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SHIPYARD = str(Path(sys.executable).parent / "shipyard")


def run_ray_serve(
    args: list[str], env: dict[str, str], timeout_s: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``shipyard ray serve ARGS`` with the cluster's environment ``env`` to completion."""
    return subprocess.run(
        [SHIPYARD, "ray", "serve", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
        check=False,
    )
