"""What the Server page shows: version, uptime, the settings in force (no secrets) and the
hardware as ``shipyard hw`` sees it (probed once, on first request, off the event loop)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import platform
import time
from pathlib import Path
from typing import Any

from shipyard import __version__
from shipyard.config import ServerConfig
from shipyard.types import JSONObject, JSONValue

__all__ = ["SECRET_WORDS", "HardwareCache", "public_settings", "server_info"]

#: A setting whose name contains one of these is shown as "(set)" or null, never its value.
SECRET_WORDS = ("key", "secret", "token", "password", "credential")


def public_settings(config: ServerConfig) -> JSONObject:
    """Every server setting in force, JSON-ready, with secret ones replaced by ``"(set)"``."""
    out: JSONObject = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if any(word in field.name.lower() for word in SECRET_WORDS):
            out[field.name] = "(set)" if value else None
        elif isinstance(value, Path):
            out[field.name] = str(value)
        elif isinstance(value, tuple):
            out[field.name] = [str(v) for v in value]
        elif value is None or isinstance(value, bool | int | float | str):
            out[field.name] = value
        else:
            out[field.name] = str(value)
    return out


class HardwareCache:
    """``shipyard hw``'s report of this machine, probed at most once per server."""

    def __init__(self) -> None:
        self._report: dict[str, Any] | None = None
        self._lock: asyncio.Lock | None = None

    async def get(self) -> dict[str, Any]:
        """The report (``HardwareReport.to_dict()`` plus ``probed_at``), probing on first use."""
        if self._report is not None:
            return self._report
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._report is None:
                self._report = await asyncio.to_thread(_probe)
        return self._report


def _probe() -> dict[str, Any]:
    from shipyard.hardware import probe

    report = probe().to_dict()
    report["probed_at"] = _iso(time.time())
    return report


def server_info(
    config: ServerConfig, extensions: list[str], started: float, hardware: dict[str, Any]
) -> JSONObject:
    """The ``GET /ui/api/server`` answer (``started``: Unix time the server started)."""
    shown: list[JSONValue] = list(extensions)
    return {
        "name": "shipyard",
        "version": __version__,
        "extensions": shown,
        "started_at": _iso(started),
        "uptime_s": round(max(0.0, time.time() - started), 3),
        "python": platform.python_version(),
        "settings": public_settings(config),
        "hardware": hardware,
    }


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="seconds")
