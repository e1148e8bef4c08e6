"""Repository locations, the completion marker and the cache's local side (no store needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shipyard.config import ServerConfig
from shipyard.errors import ConfigError
from shipyard.repository.manifest import MARKER, build_manifest, manifest_files, verify_file
from shipyard.repository.remote import RemoteStore
from shipyard.repository.stores import LocalStore, is_url, open_store


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("s3://bucket/prefix", True),
        ("gs://bucket", True),
        ("memory://repo", True),
        ("models", False),
        ("/abs/models", False),
        ("file:///abs/models", False),
        (Path("s3:/bucket"), False),
    ],
)
def test_is_url_tells_stores_from_folders(location: str | Path, expected: bool) -> None:
    """Store URLs are recognised by their scheme; folders (and file://) are local."""
    assert is_url(location) is expected


def test_open_store_keeps_a_folder_local(tmp_path: Path) -> None:
    """A folder opens as a LocalStore whose root is the folder and whose sync does nothing."""
    store = open_store(str(tmp_path))
    assert store == LocalStore(tmp_path)
    assert store.sync() == []


def test_open_store_caches_each_url_in_its_own_folder(tmp_path: Path) -> None:
    """Two URLs get two cache folders under cache_dir; the same URL always the same one."""
    first = open_store("s3://bucket/a", tmp_path)
    second = open_store("s3://bucket/b", tmp_path)
    assert isinstance(first, RemoteStore)
    assert first.root.parent == tmp_path
    assert first.root != second.root
    assert open_store("s3://bucket/a/", tmp_path).root == first.root


def test_server_config_keeps_a_url_and_reads_cache_dir(tmp_path: Path) -> None:
    """repository stays a URL string (not a collapsed Path); cache_dir comes from env too."""
    config = ServerConfig.resolve(
        env={"SHIPYARD_CACHE_DIR": str(tmp_path)}, flags={"repository": "s3://b/models"}
    )
    assert config.repository == "s3://b/models"
    assert config.cache_dir == tmp_path
    assert ServerConfig.resolve(env={}, flags={"repository": "models"}).repository == Path("models")


def test_manifest_lists_every_file_with_size_and_digest(tmp_path: Path) -> None:
    """The marker lists each file of the version (not itself) with its size and SHA-256."""
    (tmp_path / "model.onnx").write_bytes(b"abc")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "vocab.txt").write_bytes(b"x")
    (tmp_path / MARKER).write_bytes(b"old")
    files = manifest_files(build_manifest(tmp_path), "here")
    assert sorted(files) == ["model.onnx", "sub/vocab.txt"]
    assert files["model.onnx"]["size"] == 3
    verify_file(tmp_path / "model.onnx", files["model.onnx"], "here")


@pytest.mark.parametrize("path", ["../escape", "/etc/passwd", MARKER, "a/../../b"])
def test_manifest_refuses_paths_that_leave_the_version(path: str) -> None:
    """A marker naming a path outside its version folder is refused, naming the marker."""
    body = f'{{"files": {{"{path}": {{"size": 1, "sha256": "00"}}}}}}'.encode()
    with pytest.raises(ConfigError, match=re.escape("s3://b/m/1/.shipyard-complete")):
        manifest_files(body, "s3://b/m/1/.shipyard-complete")


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"files": {"a": {"size": "1"}}}'])
def test_malformed_marker_is_a_clear_error(body: bytes) -> None:
    """A marker that is not a valid manifest is refused with the advice to republish."""
    with pytest.raises(ConfigError, match="republish"):
        manifest_files(body, "where")


def test_verify_file_refuses_other_content(tmp_path: Path) -> None:
    """A downloaded file whose size or digest differs from the marker's is refused."""
    path = tmp_path / "model.onnx"
    path.write_bytes(b"abc")
    entry = manifest_files(build_manifest(tmp_path), "m")["model.onnx"]
    path.write_bytes(b"abd")
    with pytest.raises(ConfigError, match="SHA-256"):
        verify_file(path, entry, "s3://b/m/1/model.onnx")
    path.write_bytes(b"abcd")
    with pytest.raises(ConfigError, match="4 bytes"):
        verify_file(path, entry, "s3://b/m/1/model.onnx")
