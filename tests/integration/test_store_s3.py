"""Model repositories in an object store, against a real S3-compatible server (moto)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from click.testing import CliRunner

from shipyard.cli import main
from shipyard.errors import ConfigError, NotFoundError
from shipyard.repository.manifest import MARKER
from shipyard.repository.publish import publish
from shipyard.repository.remote import RemoteStore
from shipyard.repository.stores import open_repository, publication_repository, push_repository
from shipyard.testing import identity_model, running_server, write_model
from shipyard.types import DataType, TensorSpec
from tests.s3server import S3Server, moto_s3

_SCALE = "[[inputs]]\nname = 'x'\ndatatype = 'FP32'\nshape = [-1, 4]\n"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One moto server (auth on) for the module."""
    with moto_s3(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def aws(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The standard AWS environment pointed at the moto server, with valid credentials."""
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    return s3


@pytest.fixture
def url(aws: S3Server, request: pytest.FixtureRequest) -> str:
    """A fresh prefix in the bucket for this test."""
    return f"s3://{aws.bucket}/{request.node.name.replace('[', '-').rstrip(']')}"


def _local_repo(tmp_path: Path, versions: int = 1) -> Path:
    repo = tmp_path / "local"
    for version in range(1, versions + 1):
        write_model(repo, "m", identity_model(), version=version)
    return repo


def _versions(address: str, name: str = "m") -> list[str]:
    response = httpx.get(f"http://{address}/v2/models/{name}")
    response.raise_for_status()
    versions: list[str] = response.json()["versions"]
    return versions


def _infer(address: str) -> Any:
    client = triton.InferenceServerClient(address)
    data = np.arange(4, dtype=np.float32).reshape(1, 4)
    tensor = triton.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(data)
    result = client.infer("m", [tensor]).as_numpy("OUTPUT0")
    client.close()
    return result


def _upload_without_marker(aws: S3Server, url: str, version: int) -> None:
    key = f"{url.split('/', 3)[3]}/m/{version}/model.onnx"
    aws.client().put_object(  # type: ignore[attr-defined]
        Bucket=aws.bucket, Key=key, Body=identity_model().SerializeToString()
    )


def _write_marker(aws: S3Server, url: str, version: int, body: bytes) -> None:
    key = f"{url.split('/', 3)[3]}/m/{version}/{MARKER}"
    aws.client().put_object(Bucket=aws.bucket, Key=key, Body=body)  # type: ignore[attr-defined]


def test_serve_from_s3_answers_tritonclient(aws: S3Server, url: str, tmp_path: Path) -> None:
    """A repository pushed to S3 is served from its cache; tritonclient gets the right answer."""
    push_repository(_local_repo(tmp_path), url)
    with running_server(url, grpc=False, cache_dir=tmp_path / "cache") as running:
        result = _infer(running.address)
    np.testing.assert_array_equal(result, np.arange(4, dtype=np.float32).reshape(1, 4))


def test_new_version_is_served_after_load_and_partial_upload_is_not(
    aws: S3Server, url: str, tmp_path: Path
) -> None:
    """A reload picks up a version published meanwhile; one without its marker is never served."""
    local = _local_repo(tmp_path)
    push_repository(local, url)
    with running_server(url, grpc=False, cache_dir=tmp_path / "cache") as running:
        assert _versions(running.address) == ["1"]
        write_model(local, "m", identity_model(), version=2)
        push_repository(local, url)
        _upload_without_marker(aws, url, 3)
        response = httpx.post(f"{running.url}/v2/repository/models/m/load")
        assert response.status_code == 200, response.text
        assert _versions(running.address) == ["2"]
        store = running.server.service.registry.store  # type: ignore[union-attr]
        assert store is not None
        assert store.sync() == []  # the poller's call: nothing servable changed
        cache = store.root / "m"
        assert not (cache / "3").exists()
        marker = (cache / "2" / MARKER).read_bytes()  # v3's files are v2's: same manifest
        _write_marker(aws, url, 3, marker)
        assert store.sync() == ["m"]  # now the poller sees it
        response = httpx.post(f"{running.url}/v2/repository/models/m/load")
        assert response.status_code == 200, response.text
        assert _versions(running.address) == ["3"]


def test_deleted_model_is_a_clear_404_and_keeps_serving(
    aws: S3Server, url: str, tmp_path: Path
) -> None:
    """A model deleted from the store: load answers 404 naming the URL; the loaded one serves."""
    push_repository(_local_repo(tmp_path), url)
    with running_server(url, grpc=False, cache_dir=tmp_path / "cache") as running:
        client = aws.client()
        prefix = url.split("/", 3)[3]
        listed = client.list_objects_v2(Bucket=aws.bucket, Prefix=f"{prefix}/m/")  # type: ignore[attr-defined]
        for item in listed["Contents"]:
            client.delete_object(Bucket=aws.bucket, Key=item["Key"])  # type: ignore[attr-defined]
        response = httpx.post(f"{running.url}/v2/repository/models/m/load")
        assert response.status_code == 404
        assert url in response.json()["error"]
        assert _infer(running.address).shape == (1, 4)
        store = running.server.service.registry.store  # type: ignore[union-attr]
        assert store is not None
        assert not (store.root / "m").exists()


def test_wrong_credentials_name_the_url_and_the_fix(
    aws: S3Server, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wrong credentials fail with an error naming the URL and the AWS variables to check."""
    push_repository(_local_repo(tmp_path), url)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(ConfigError) as caught:
        open_repository(url, tmp_path / "cache")
    assert url in caught.value.message
    assert "AWS_SECRET_ACCESS_KEY" in caught.value.message


def test_missing_bucket_names_the_url_and_the_fix(aws: S3Server, tmp_path: Path) -> None:
    """A bucket that does not exist fails with an error naming the URL and what to do."""
    url = "s3://no-such-bucket/models"
    with pytest.raises(ConfigError) as caught:
        open_repository(url, tmp_path / "cache")
    assert url in caught.value.message
    assert "create it" in caught.value.message


def test_damaged_upload_is_refused_and_the_old_version_serves(
    aws: S3Server, url: str, tmp_path: Path
) -> None:
    """A version whose file does not match its marker is refused; the old version keeps serving."""
    push_repository(_local_repo(tmp_path), url)
    with running_server(url, grpc=False, cache_dir=tmp_path / "cache") as running:
        _upload_without_marker(aws, url, 2)
        bad = b'{"format": 1, "files": {"model.onnx": {"size": 3, "sha256": "00"}}}'
        _write_marker(aws, url, 2, bad)
        response = httpx.post(f"{running.url}/v2/repository/models/m/load")
        assert response.status_code == 400
        assert f"{url}/m/2/model.onnx" in response.json()["error"]
        assert _versions(running.address) == ["1"]


def test_missing_model_is_not_found(aws: S3Server, url: str, tmp_path: Path) -> None:
    """Syncing a model the store does not hold raises NotFoundError naming the URL."""
    push_repository(_local_repo(tmp_path), url)
    store = RemoteStore(url, tmp_path / "cache")
    with pytest.raises(NotFoundError, match="s3://"):
        store.sync(("other",))


def test_processes_sharing_a_cache_see_whole_versions(
    aws: S3Server, url: str, tmp_path: Path
) -> None:
    """Several syncs of one cache at once all succeed and leave one whole copy of each version."""
    push_repository(_local_repo(tmp_path, versions=3), url)
    errors: list[BaseException] = []

    def sync() -> None:
        try:
            RemoteStore(url, tmp_path / "cache").sync()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sync) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    root = RemoteStore(url, tmp_path / "cache").root
    assert sorted(p.name for p in (root / "m").iterdir() if not p.name.startswith(".")) == [
        "1",
        "2",
        "3",
    ]
    assert all((root / "m" / v / MARKER).exists() for v in "123")


def test_publish_to_s3_writes_the_next_version_with_its_marker(
    aws: S3Server, url: str, tmp_path: Path
) -> None:
    """Publication to a URL uploads the next version, model.toml and the marker last."""
    push_repository(_local_repo(tmp_path), url)
    _upload_without_marker(aws, url, 2)  # a half-finished upload holds number 2
    spec = TensorSpec("INPUT0", DataType.FP32, (-1, 4))
    out = TensorSpec("OUTPUT0", DataType.FP32, (-1, 4))
    with publication_repository(url, "m", tmp_path / "cache") as target:
        version, path = publish(
            target.root,
            "m",
            {"model.onnx": identity_model().SerializeToString()},
            [spec],
            [out],
            {},
        )
    assert target.describe("m", version, path) == (3, f"{url}/m/3")
    store = RemoteStore(url, tmp_path / "cache2")
    store.sync()
    assert sorted(p.name for p in (store.root / "m").iterdir() if p.name.isdigit()) == ["1", "3"]
    assert '"version": 3' in (store.root / "m" / "3" / "report.json").read_text()
    assert "INPUT0" in (store.root / "m" / "model.toml").read_text()


def test_cli_convert_publishes_to_s3_and_repo_list_reads_it(
    aws: S3Server, url: str, tmp_path: Path
) -> None:
    """`shipyard convert --repo s3://...` publishes a version that `repo list s3://...` shows."""
    source = tmp_path / "model.onnx"
    source.write_bytes(identity_model().SerializeToString())
    runner = CliRunner()
    result = runner.invoke(main, ["convert", str(source), "--name", "m", "--repo", url])
    assert result.exit_code == 0, result.output
    assert f"published {url}/m/1" in result.output
    listed = runner.invoke(main, ["repo", "list", url, "--cache-dir", str(tmp_path / "cache")])
    assert listed.exit_code == 0, listed.output
    assert "READY" in listed.output


def test_cli_wrong_credentials_exit_2_with_the_fix(aws: S3Server, url: str, tmp_path: Path) -> None:
    """`shipyard repo list` with a wrong key exits 2 with one line naming URL and fix."""
    push_repository(_local_repo(tmp_path), url)
    env = aws.env(AWS_ACCESS_KEY_ID="AKIAWRONGWRONGWRONG0", XDG_CACHE_HOME=str(tmp_path))
    done = subprocess.run(
        [str(Path(sys.executable).parent / "shipyard"), "repo", "list", url],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert url in done.stderr
    assert "AWS_ACCESS_KEY_ID" in done.stderr
    assert "Traceback" not in done.stderr
