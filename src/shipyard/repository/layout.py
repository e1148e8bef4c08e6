"""The on-disk layout: ``<repo>/<name>/model.toml`` and ``<repo>/<name>/<version>/model.*``.

Names are ``[A-Za-z0-9_.-]+`` of at most 255 characters and never a path; versions are
positive integers. Folders whose name starts with a dot are ignored: that is where a version is
written before it is published by an atomic rename.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from shipyard.config import ModelConfig, load_model_config
from shipyard.errors import ConfigError, InvalidInputError, NotFoundError

__all__ = [
    "CONFIG_FILENAME",
    "MAX_NAME_LENGTH",
    "Fingerprint",
    "ModelSource",
    "check_model_name",
    "parse_version",
    "scan_repository",
]

CONFIG_FILENAME = "model.toml"
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
#: The longest model name: a folder name of 255 bytes is the limit of common filesystems.
MAX_NAME_LENGTH = 255
#: A version folder's name: a positive integer in ASCII digits, no leading zero.
_VERSION = re.compile(r"[1-9][0-9]*")


def parse_version(text: str) -> int | None:
    """The version ``text`` names (``"3"`` → 3), or None for anything else (``"03"``, ``"³"``)."""
    return int(text) if _VERSION.fullmatch(text) else None


def check_model_name(name: str) -> str:
    """Return ``name`` if it is a valid model name, else raise InvalidInputError."""
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInputError(
            f"invalid model name {name[:32]!r}... ({len(name)} characters): at most "
            f"{MAX_NAME_LENGTH} are allowed"
        )
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise InvalidInputError(
            f"invalid model name {name!r}: use letters, digits, '_', '.' and '-' only"
        )
    return name


@dataclass(frozen=True, slots=True)
class ModelSource:
    """A model folder in the repository."""

    name: str
    path: Path

    def versions(self) -> list[int]:
        """The published versions on disk, ascending."""
        try:
            children = list(self.path.iterdir())
        except OSError as exc:
            raise ConfigError(
                f"cannot read model folder {self.path}: {exc.strerror or exc}"
            ) from exc
        found = []
        for child in children:
            version = parse_version(child.name)
            if version is not None and child.is_dir():
                found.append(version)
        return sorted(found)

    def version_dir(self, version: int) -> Path:
        """The folder of ``version``."""
        return self.path / str(version)

    def config(self) -> ModelConfig:
        """The model's configuration (defaults when there is no model.toml)."""
        return load_model_config(self.name, self.path / CONFIG_FILENAME)

    def fingerprint(self) -> Fingerprint:
        """What the model folder holds now: its ``model.toml``'s digest and, per published
        version, each file's path, size and modification time. Equal fingerprints mean
        nothing a load reads has changed (what a repository poller compares)."""
        try:
            config = hashlib.sha256((self.path / CONFIG_FILENAME).read_bytes()).hexdigest()
        except OSError:
            config = ""
        versions = []
        for version in self.versions():
            files = []
            folder = self.version_dir(version)
            for path in sorted(folder.rglob("*")):
                try:
                    info = path.stat()
                except OSError:  # removed while we looked: the next look sees it gone
                    continue
                if path.is_file():
                    files.append((str(path.relative_to(folder)), info.st_size, info.st_mtime_ns))
            versions.append((version, tuple(files)))
        return Fingerprint(config, tuple(versions))


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A model folder's contents, as :meth:`ModelSource.fingerprint` saw them."""

    #: SHA-256 of ``model.toml`` ("" without one).
    config: str
    #: Per published version: its files as (relative path, size, mtime in ns).
    versions: tuple[tuple[int, tuple[tuple[str, int, int], ...]], ...]


def scan_repository(root: Path) -> dict[str, ModelSource]:
    """Return every model folder under ``root`` by name; raise ConfigError if root is unusable."""
    if not root.is_dir():
        raise ConfigError(
            f"model repository {root} does not exist or is not a folder; "
            "create it with <repo>/<model-name>/<version>/model.onnx inside"
        )
    models = {}
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith(".") and _NAME.fullmatch(child.name):
            models[child.name] = ModelSource(child.name, child)
    return models


def find_model(root: Path, name: str) -> ModelSource:
    """Return the model folder ``name`` under ``root`` or raise NotFoundError."""
    check_model_name(name)
    path = root / name
    if not path.is_dir():
        raise NotFoundError(f"model {name!r} is not in the repository {root}")
    return ModelSource(name, path)
