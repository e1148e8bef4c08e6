"""Where a model repository lives: a local folder or an object store (any fsspec URL).

A REPOSITORY argument is either a path or a URL such as ``s3://bucket/prefix``.
:func:`open_store` turns it into a :class:`RepositoryStore`, whose ``root`` is always a local
folder with the ordinary layout (for a URL: the local cache that
:class:`~shipyard.repository.remote.RemoteStore` mirrors the store into) and whose ``sync``
brings that folder up to date. The registry calls ``sync`` before it (re)loads a model, so a
repository-control ``load`` picks up a version published to the store since; a poller calls
``sync()`` and reloads the models it names.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from shipyard.config.server import is_store_url
from shipyard.errors import ConfigError
from shipyard.repository.layout import parse_version, scan_repository
from shipyard.repository.remote import RemoteStore

__all__ = [
    "LocalStore",
    "Publication",
    "RepositoryStore",
    "default_cache_dir",
    "is_url",
    "open_repository",
    "open_store",
    "publication_repository",
    "push_repository",
]


def is_url(location: str | Path) -> bool:
    """Whether ``location`` is a store URL (``s3://...``) rather than a local path."""
    return isinstance(location, str) and is_store_url(location)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/shipyard/repositories`` (``~/.cache/...`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "shipyard" / "repositories"


class RepositoryStore(Protocol):
    """A repository as the registry sees it: a local folder, and a way to refresh it."""

    @property
    def root(self) -> Path:
        """The local folder with the repository layout that models load from."""
        ...

    def sync(self, names: tuple[str, ...] | None = None, missing_ok: bool = False) -> list[str]:
        """Bring ``root`` up to date for ``names`` (None: all); return the names that changed."""
        ...


@dataclass(frozen=True, slots=True)
class LocalStore:
    """A repository that is already a local folder: nothing to sync."""

    root: Path

    def __str__(self) -> str:
        return str(self.root)

    def sync(self, names: tuple[str, ...] | None = None, missing_ok: bool = False) -> list[str]:
        """Do nothing: the folder is the repository (return no changed names)."""
        return []


def open_store(location: str | Path, cache_dir: Path | None = None) -> RepositoryStore:
    """The store for a REPOSITORY argument: a local folder, or a URL mirrored into
    ``cache_dir`` (default :func:`default_cache_dir`). Nothing is read yet."""
    if is_url(location):
        return RemoteStore(str(location), cache_dir or default_cache_dir())
    text = str(location)
    return LocalStore(Path(text.removeprefix("file://")))


def open_repository(
    location: str | Path, cache_dir: Path | None = None, names: tuple[str, ...] = ()
) -> RepositoryStore:
    """Open the repository at ``location`` and sync ``names`` (or all) into its local root.

    Blocking. Raises ConfigError (naming the folder or URL and the fix) when it is unusable,
    NotFoundError when a named model is not there.
    """
    store = open_store(location, cache_dir)
    store.sync(names or None)
    scan_repository(store.root)
    return store


@dataclass(slots=True)
class Publication:
    """Where an offline step publishes: a local repository, uploaded afterwards for a URL."""

    #: The local repository to publish into.
    root: Path
    #: The store URL (None: ``root`` is the repository itself).
    url: str | None = None
    #: After the upload: ``{local version: (version in the store, its URL)}``.
    uploaded: dict[int, tuple[int, str]] = field(default_factory=dict)

    def describe(self, name: str, version: int, path: Path) -> tuple[int, str]:
        """The published version of ``name`` and where it is (the store URL after upload)."""
        return self.uploaded.get(version, (version, str(path)))


@contextlib.contextmanager
def publication_repository(
    location: str | Path, name: str, cache_dir: Path | None = None
) -> Iterator[Publication]:
    """Yield where to publish model ``name`` for ``location``; for a URL, upload on exit.

    A local path is used as it is. For a URL the model's current files are mirrored into a
    private staging folder first (so the next version number and model.toml are right); every
    version published there is then uploaded, model.toml with it, its marker last. Nothing is
    uploaded when the body raises.
    """
    store = open_store(location, cache_dir)
    if not isinstance(store, RemoteStore):
        yield Publication(store.root)
        return
    store.sync((name,), missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="shipyard-publish-") as tmp:
        stage = Path(tmp)
        cached = store.root / name
        if cached.is_dir():
            shutil.copytree(
                cached, stage / name, ignore=shutil.ignore_patterns(".*"), copy_function=os.link
            )
        before = _versions(stage / name)
        publication = Publication(stage, store.url)
        yield publication
        for version in sorted(_versions(stage / name) - before):
            number = store.upload_version(name, stage / name, version)
            publication.uploaded[version] = (number, f"{store.url}/{name}/{number}")


def push_repository(local: Path, url: str, names: tuple[str, ...] = ()) -> dict[str, list[int]]:
    """Upload the models of the local repository ``local`` (all, or ``names``) to ``url``.

    Versions already complete in the store with the same content are skipped; each uploaded
    version gets its marker last. Returns the versions uploaded per model.
    """
    if not is_url(url):
        raise ConfigError(f"{url} is not a store URL (expected e.g. s3://bucket/prefix)")
    store = RemoteStore(url, default_cache_dir())
    targets = names or tuple(scan_repository(local))
    return {name: store.push(local, name) for name in targets}


def _versions(model_dir: Path) -> set[int]:
    if not model_dir.is_dir():
        return set()
    return {v for p in model_dir.iterdir() if (v := parse_version(p.name)) is not None}
