"""A model repository in an object store (``s3://bucket/prefix`` or any fsspec URL).

:class:`RemoteStore` mirrors the store into a local cache folder that has the ordinary
repository layout, so the registry loads from it like from any folder. Only *complete*
versions are mirrored: those whose folder holds the marker :data:`~.manifest.MARKER`, written
last by every publisher. Each file is verified against the marker (size and SHA-256) after
download, and a version appears in the cache by one atomic rename, so a server never loads half
a model. Several processes on one machine may share a cache: a file lock serialises their syncs
and every change to the cache is a rename.

Credentials come from the standard environment and config files of the store's library only
(for S3: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``~/.aws/``,
``AWS_ENDPOINT_URL`` for S3-compatible servers), never from flags.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from shipyard.errors import ConfigError, NotFoundError, ShipyardError
from shipyard.repository.layout import CONFIG_FILENAME, check_model_name, parse_version
from shipyard.repository.manifest import MARKER, build_manifest, manifest_files, verify_file

__all__ = ["RemoteStore"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
#: Per model in the cache: the fingerprints of the model-level files last downloaded.
_STATE = ".shipyard-files.json"
_CREDENTIALS_HINT = (
    "check the credentials in the standard environment (AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) or ~/.aws/credentials, and that they may read it"
)


class RemoteStore:
    """A repository at ``url``, mirrored into ``cache_dir`` (one sub-folder per URL)."""

    def __init__(self, url: str, cache_dir: Path) -> None:
        self.url = url.rstrip("/")
        key = hashlib.sha256(self.url.encode()).hexdigest()[:12]
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.url.split("://", 1)[-1]).strip("-.")[:48]
        #: The local mirror: a folder with the ordinary repository layout.
        self.root = cache_dir / f"{slug}-{key}"
        self._fs: Any = None
        self._base = ""

    def __str__(self) -> str:
        return self.url

    # -- the store ------------------------------------------------------------------------

    def _filesystem(self) -> Any:
        """The fsspec filesystem (created once; listings are never cached)."""
        if self._fs is None:
            try:
                import fsspec  # type: ignore[import-untyped]
            except ImportError as exc:
                raise ConfigError(
                    f"{self.url}: object-store repositories need fsspec: "
                    "pip install 'shipyard[s3]' (s3fs for s3://; gcsfs, adlfs for gs://, az://)"
                ) from exc
            try:
                self._fs, self._base = fsspec.core.url_to_fs(
                    self.url, skip_instance_cache=True, use_listings_cache=False
                )
            except (ImportError, ValueError) as exc:
                raise ConfigError(
                    f"{self.url}: no filesystem for this URL ({exc}); for s3:// install "
                    "'shipyard[s3]'"
                ) from exc
            self._base = self._base.rstrip("/")
        return self._fs

    def _call(self, what: str, call: Callable[[], _T]) -> _T:
        """Run a store call; turn the library's errors into ConfigError naming URL and fix."""
        what = self._url(what)
        try:
            return call()
        except ShipyardError:
            raise
        except PermissionError as exc:
            raise ConfigError(f"{what}: access denied ({exc}); {_CREDENTIALS_HINT}") from exc
        except FileNotFoundError:
            raise
        except Exception as exc:
            names = {cls.__name__ for cls in type(exc).__mro__}
            if "NoCredentialsError" in names:
                raise ConfigError(
                    f"{what}: no credentials found; set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment or ~/.aws/"
                ) from exc
            raise ConfigError(
                f"{what}: {type(exc).__name__}: {exc}; check the URL, the network and "
                "AWS_ENDPOINT_URL (for S3-compatible servers)"
            ) from exc

    def _ls(self, path: str) -> list[dict[str, Any]]:
        fs = self._filesystem()
        entries: list[dict[str, Any]] = self._call(path, partial(fs.ls, path, detail=True))
        return entries

    def _url(self, path: str) -> str:
        return f"{self.url}{path[len(self._base) :]}" if path.startswith(self._base) else path

    def list_models(self) -> list[str]:
        """The model names in the store, sorted; ConfigError if it cannot be listed."""
        self._filesystem()
        try:
            entries = self._ls(self._base)
        except FileNotFoundError as exc:
            raise ConfigError(
                f"model repository {self.url} does not exist (no such bucket or prefix); "
                f"create it, fix the URL, or publish into it (shipyard repo push LOCAL {self.url})"
            ) from exc
        names = []
        for entry in entries:
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if entry["type"] == "directory" and _NAME.fullmatch(name) and name[0] != ".":
                names.append(name)
        return sorted(names)

    def _model_listing(self, name: str) -> tuple[dict[str, str], dict[int, str]]:
        """Model-level files ({relative path: fingerprint}) and version folders of ``name``."""
        fs = self._filesystem()
        folder = f"{self._base}/{name}"
        try:
            entries = self._ls(folder)
        except FileNotFoundError as exc:
            raise NotFoundError(f"model {name!r} is not in the repository {self.url}") from exc
        if not entries:
            raise NotFoundError(f"model {name!r} is not in the repository {self.url}")
        files: dict[str, str] = {}
        versions: dict[int, str] = {}
        for entry in entries:
            path = entry["name"].rstrip("/")
            leaf = path.rsplit("/", 1)[-1]
            if leaf.startswith("."):
                continue
            if entry["type"] == "directory":
                version = parse_version(leaf)
                if version is not None:
                    versions[version] = path
                    continue
                found = self._call(path, partial(fs.find, path, detail=True))
                for sub, info in found.items():
                    files[sub[len(folder) + 1 :]] = _fingerprint(info)
            else:
                files[leaf] = _fingerprint(entry)
        return files, versions

    def _marker(self, version_path: str) -> bytes | None:
        fs = self._filesystem()
        try:
            data: bytes = self._call(version_path, partial(fs.cat_file, f"{version_path}/{MARKER}"))
        except FileNotFoundError:
            return None
        return data

    # -- the cache ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the cache's file lock (blocks while another process or thread syncs)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root.with_name(self.root.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def sync(self, names: tuple[str, ...] | None = None, missing_ok: bool = False) -> list[str]:
        """Mirror ``names`` (None: the whole store) into the cache; return the names that changed.

        Blocking (run it off the event loop). A model gone from the store is removed from the
        cache and raises NotFoundError naming the URL (unless ``missing_ok``, or ``names`` is
        None). Versions without a marker are skipped: a later sync picks them up once their
        marker is there. Store errors raise ConfigError naming the URL and the fix.
        """
        self._filesystem()
        targets = self.list_models() if names is None else [check_model_name(n) for n in names]
        changed: list[str] = []
        with self._locked():
            if names is None:
                for child in self.root.iterdir():
                    if child.is_dir() and child.name[0] != "." and child.name not in targets:
                        _remove_tree(child)
                        changed.append(child.name)
            for name in targets:
                try:
                    if self._sync_model(name):
                        changed.append(name)
                except NotFoundError:
                    if (self.root / name).exists():
                        _remove_tree(self.root / name)
                        changed.append(name)
                    if not missing_ok:
                        raise
        return sorted(set(changed))

    def _sync_model(self, name: str) -> bool:
        fs = self._filesystem()
        files, version_paths = self._model_listing(name)
        local = self.root / name
        local.mkdir(exist_ok=True)
        changed = False
        state_path = local / _STATE
        try:
            state: dict[str, str] = json.loads(state_path.read_text())
        except (OSError, ValueError):
            state = {}
        for rel, fingerprint in sorted(files.items()):
            target = local / rel
            if state.get(rel) == fingerprint and target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}")
            remote = f"{self._base}/{name}/{rel}"
            self._call(self._url(remote), partial(fs.get_file, remote, str(tmp)))
            os.replace(tmp, target)
            state[rel] = fingerprint
            changed = True
        for rel in sorted(set(state) - set(files)):
            with contextlib.suppress(FileNotFoundError):
                (local / rel).unlink()
            del state[rel]
            changed = True
        if changed:
            _write_atomic(state_path, json.dumps(state, indent=1))
        complete: set[int] = set()
        for version, path in sorted(version_paths.items()):
            marker = self._marker(path)
            if marker is None:
                log.info(
                    "%s: version %d has no %s yet (still uploading?): not served",
                    self._url(path),
                    version,
                    MARKER,
                )
                continue
            complete.add(version)
            cached = local / str(version)
            with contextlib.suppress(OSError):
                if (cached / MARKER).read_bytes() == marker:
                    continue
            self._download_version(path, marker, cached)
            changed = True
        for child in local.iterdir():
            number = parse_version(child.name)
            if number is not None and number not in complete:
                _remove_tree(child)
                changed = True
        return changed

    def _download_version(self, path: str, marker: bytes, cached: Path) -> None:
        fs = self._filesystem()
        where = f"{self._url(path)}/{MARKER}"
        listed = manifest_files(marker, where)
        tmp = cached.with_name(f".tmp-{secrets.token_hex(6)}")
        tmp.mkdir()
        try:
            for rel, entry in listed.items():
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                remote = f"{path}/{rel}"
                try:
                    self._call(self._url(remote), partial(fs.get_file, remote, str(target)))
                except FileNotFoundError as exc:
                    raise ConfigError(
                        f"{self._url(remote)} is listed in {where} but missing; republish it"
                    ) from exc
                verify_file(target, entry, self._url(remote))
            (tmp / MARKER).write_bytes(marker)
            if cached.exists():
                _remove_tree(cached)  # republished with other content: replace it
            os.rename(tmp, cached)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("downloaded %s into %s", self._url(path), cached)

    # -- publication ----------------------------------------------------------------------

    def upload_version(self, name: str, model_dir: Path, version: int) -> int:
        """Upload ``model_dir/<version>`` and model.toml; write the marker last; return the
        version number it got (the next free one in the store if ``version`` is taken)."""
        fs = self._filesystem()
        check_model_name(name)
        folder = f"{self._base}/{name}"
        try:
            taken = self._model_listing(name)[1]
        except NotFoundError:
            taken = {}
        source = model_dir / str(version)
        number = max(version, max(taken, default=0) + 1)
        report = source / "report.json"
        if number != version and report.exists():
            document = json.loads(report.read_text(encoding="utf-8"))
            document["version"] = number
            report.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        marker = build_manifest(source)
        target = f"{folder}/{number}"
        for rel in manifest_files(marker, str(source / MARKER)):
            remote = f"{target}/{rel}"
            self._call(self._url(remote), partial(fs.put_file, str(source / rel), remote))
        config = model_dir / CONFIG_FILENAME
        if config.exists():
            remote = f"{folder}/{CONFIG_FILENAME}"
            self._call(self._url(remote), partial(fs.put_file, str(config), remote))
        remote = f"{target}/{MARKER}"
        self._call(self._url(remote), partial(fs.pipe_file, remote, marker))
        log.info("published %s", self._url(target))
        return number

    def push(self, local_root: Path, name: str) -> list[int]:
        """Upload model ``name`` of the local repository ``local_root`` as it is (model-level
        files, then each version not yet complete in the store, marker last); return the
        versions uploaded. A version the store holds with other content is an error."""
        fs = self._filesystem()
        model_dir = local_root / check_model_name(name)
        folder = f"{self._base}/{name}"
        for file in sorted(model_dir.rglob("*")):
            rel = file.relative_to(model_dir)
            if file.is_file() and parse_version(rel.parts[0]) is None and rel.parts[0][0] != ".":
                key = f"{folder}/{rel.as_posix()}"
                self._call(self._url(key), partial(fs.put_file, str(file), key))
        uploaded = []
        for child in sorted(model_dir.iterdir(), key=lambda p: p.name):
            version = parse_version(child.name)
            if version is None or not child.is_dir():
                continue
            marker = build_manifest(child)
            existing = self._marker(f"{folder}/{version}")
            if existing is not None:
                if json.loads(existing)["files"] != json.loads(marker)["files"]:
                    raise ConfigError(
                        f"{self.url}/{name}/{version} already holds other content; publish "
                        "a new version instead of overwriting this one"
                    )
                continue
            for item in manifest_files(marker, str(child / MARKER)):
                remote = f"{folder}/{version}/{item}"
                self._call(self._url(remote), partial(fs.put_file, str(child / item), remote))
            remote = f"{folder}/{version}/{MARKER}"
            self._call(self._url(remote), partial(fs.pipe_file, remote, marker))
            uploaded.append(version)
        return uploaded


def _fingerprint(info: dict[str, Any]) -> str:
    """What tells a changed object from an unchanged one: its ETag, else size and mtime."""
    tag = info.get("ETag") or info.get("etag") or info.get("md5Hash") or ""
    mtime = info.get("LastModified") or info.get("mtime") or info.get("updated") or ""
    return f"{info.get('size')}:{tag or mtime}"


def _remove_tree(path: Path) -> None:
    """Remove ``path`` so that readers see it whole or gone: rename aside, then delete."""
    trash = path.with_name(f".trash-{path.name}-{secrets.token_hex(4)}")
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
