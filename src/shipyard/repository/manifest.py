"""The completion marker of a version in an object store: ``<version>/.shipyard-complete``.

Object stores have no atomic folder rename, so a version is published file by file and the
marker is written LAST. It is a JSON manifest of every file in the version (size and SHA-256),
so the reader knows the version is whole and can verify what it downloaded. A version folder
without a marker is a partial upload and is never served.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Any

from shipyard.errors import ConfigError

__all__ = ["MARKER", "build_manifest", "file_digest", "manifest_files", "verify_file"]

#: The marker file's name inside a version folder.
MARKER = ".shipyard-complete"
_FORMAT = 1
_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """Return the SHA-256 of the file at ``path`` as hex."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def build_manifest(version_dir: Path) -> bytes:
    """Return the marker's bytes for the files under ``version_dir`` (the marker excluded)."""
    files = {}
    for path in sorted(p for p in version_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(version_dir).as_posix()
        if rel == MARKER:
            continue
        files[rel] = {"size": path.stat().st_size, "sha256": file_digest(path)}
    return (json.dumps({"format": _FORMAT, "files": files}, indent=1) + "\n").encode()


def manifest_files(data: bytes, where: str) -> dict[str, dict[str, Any]]:
    """Return the ``{relative path: {size, sha256}}`` a marker lists; ConfigError if malformed.

    ``where`` names the marker in messages. Paths that could leave the version folder
    (absolute, ``..``) are refused.
    """
    try:
        document = json.loads(data)
        files = document["files"]
        if not isinstance(files, dict):
            raise TypeError("files is not a table")
        for rel, entry in files.items():
            parts = PurePosixPath(rel).parts
            if not parts or rel.startswith("/") or ".." in parts or rel == MARKER:
                raise ValueError(f"bad file path {rel!r}")
            if not isinstance(entry.get("size"), int) or not isinstance(entry.get("sha256"), str):
                raise TypeError(f"{rel}: size and sha256 are required")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ConfigError(
            f"{where} is not a valid Shipyard marker ({exc}); republish the version"
        ) from exc
    return files


def verify_file(path: Path, entry: dict[str, Any], where: str) -> None:
    """Raise ConfigError unless the file at ``path`` has the size and SHA-256 of ``entry``."""
    size = path.stat().st_size
    if size != entry["size"]:
        raise ConfigError(
            f"{where}: downloaded {size} bytes, the marker says {entry['size']}; "
            "the upload is damaged: republish the version"
        )
    if file_digest(path) != entry["sha256"]:
        raise ConfigError(
            f"{where}: SHA-256 differs from the marker's; the upload is damaged: republish it"
        )
