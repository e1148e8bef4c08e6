"""The evidence a version carries (``report.json``), as the server reads it at load time.

``convert``, ``optimize`` and ``tune`` write ``<model>/<version>/report.json``. The server does
not need it to serve, but an int8 version records the CPU its weights were chosen for
(``optimization.int8``, see :func:`shipyard.optimize.quantize.choose_int8`). Served on another
kind of CPU it may lose accuracy or speed, so loading it yields a warning (never a failure).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipyard.hardware import CpuInfo, int8_mismatch

__all__ = ["REPORT_FILE", "load_warnings", "read_report"]

REPORT_FILE = "report.json"


def read_report(version_dir: Path) -> dict[str, Any] | None:
    """The version's ``report.json`` as a dict; None when it is absent or not a JSON object."""
    try:
        data = json.loads((version_dir / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load_warnings(report: Mapping[str, Any] | None, cpu: CpuInfo) -> tuple[str, ...]:
    """What a server on ``cpu`` should warn about when it loads the version of ``report``."""
    if report is None:
        return ()
    optimization = report.get("optimization")
    int8 = optimization.get("int8") if isinstance(optimization, Mapping) else None
    if not isinstance(int8, Mapping):
        return ()
    mismatch = int8_mismatch(int8, cpu)
    return (mismatch,) if mismatch else ()
